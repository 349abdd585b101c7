//! The CA's revocation list, `DIR/cacrl.pem` (libvirt's name; QEMU's is `ca-crl.pem` in the
//! VNC directory). The CRL file is the only record of what was revoked: each revocation reads
//! the current one back (checking that this CA signed it), keeps its entries with their dates
//! and reasons, adds the new serial, and signs a new CRL with the next CRL number, valid for 30
//! days. A CRL is replaced without `--force`: updating it is what `revoke` is for.

use std::fs;
use std::io;
use std::path::Path;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::Duration;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::ca::{Ca, parse_cert, read_cert_der, subject_of};
use super::files::{self, Output};
use super::{PkiError, Report, date_text, hex};

/// The CRL's file name in the CA directory (and in a `?pkipath=` directory).
pub const CA_CRL: &str = "cacrl.pem";
/// QEMU's name for the CRL in `vnc_tls_x509_cert_dir`.
pub const VNC_CRL: &str = "ca-crl.pem";
/// How long a CRL is current (its nextUpdate). Re-run any revoke to refresh it.
pub const CRL_VALIDITY: Duration = Duration::days(30);

/// `pki revoke`'s arguments.
#[derive(Debug)]
pub struct Revoke<'a> {
    pub ca_dir: &'a Path,
    pub cert: &'a Path,
    pub vnc_dir: Option<&'a Path>,
}

/// What an existing CRL holds that the next one must keep.
#[derive(Debug)]
pub struct Existing {
    pub number: Vec<u8>,
    pub revoked: Vec<RevokedCertParams>,
}

/// `pki revoke --ca-dir DIR CERT [--vnc-dir V]`.
pub fn revoke(args: &Revoke<'_>) -> Result<Report, PkiError> {
    let ca = Ca::load(args.ca_dir)?;
    let der = read_cert_der(args.cert)?;
    let cert = parse_cert(args.cert, &der)?;
    check_issued_by(&ca, args.cert, &der, &cert)?;
    let serial = trim_zeros(cert.raw_serial()).to_vec();
    let subject = subject_of(args.cert, &der)?;

    let crl_path = ca.dir.join(CA_CRL);
    let existing = read_existing(&ca, &crl_path)?;
    let (number, mut revoked) = match existing {
        Some(e) => (increment(e.number), e.revoked),
        None => (vec![1], Vec::new()),
    };
    let now = super::now();
    let already = revoked
        .iter()
        .any(|r| trim_zeros(r.serial_number.as_ref()) == serial.as_slice());
    if !already {
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from_slice(&number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        // The CRL must name the CA's key as the CA certificate does, whatever made the CA.
        key_identifier_method: ca
            .key_id
            .clone()
            .map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified),
    };
    let crl = params.signed_by(&ca.issuer).map_err(|e| match e {
        rcgen::Error::IssuerNotCrlSigner => PkiError::NotCa {
            path: ca.cert_path.clone(),
            reason: "its key usage does not include cRLSign",
        },
        other => other.into(),
    })?;
    let pem = crl.pem()?;
    let mut outputs = vec![Output::public(crl_path.clone(), pem.clone())];
    if let Some(v) = args.vnc_dir {
        outputs.push(Output::public(v.join(VNC_CRL), pem));
    }
    let files = files::write_all(outputs, true)?;

    let status = if already {
        "already revoked; CRL re-signed"
    } else {
        "revoked"
    };
    Ok(Report {
        facts: vec![
            ("Serial", format!("{} ({status})", hex(&serial))),
            ("Subject", subject),
            ("Revoked", params.revoked_certs.len().to_string()),
            ("CRL number", number_text(&number)),
            ("Next update", date_text(params.next_update)),
        ],
        files,
        notes: vec![
            "Servers use the new CRL after vmgate admin reload-tls (or SIGHUP to vmgated); \
             run revoke again before the next update to keep the CRL current."
                .to_owned(),
        ],
    })
}

/// Refuses a certificate this CA did not sign (or the CA's own certificate): its serial would
/// mean nothing in this CA's CRL.
fn check_issued_by(
    ca: &Ca,
    path: &Path,
    der: &[u8],
    cert: &X509Certificate<'_>,
) -> Result<(), PkiError> {
    let ca_cert = parse_cert(&ca.cert_path, &ca.cert_der)?;
    if der == ca.cert_der.as_slice() {
        return Err(PkiError::BadCert {
            path: path.to_owned(),
            reason: "it is the CA certificate itself; make a new CA instead".to_owned(),
        });
    }
    let same_name = cert.issuer().as_raw() == ca_cert.subject().as_raw();
    if !same_name || cert.verify_signature(Some(ca_cert.public_key())).is_err() {
        return Err(PkiError::NotIssuedByCa {
            cert: path.to_owned(),
            ca: ca.cert_path.clone(),
            issuer: cert.issuer().to_string(),
        });
    }
    Ok(())
}

/// The entries and number of the CRL at `path`, if there is one; it must be this CA's.
pub fn read_existing(ca: &Ca, path: &Path) -> Result<Option<Existing>, PkiError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(PkiError::Read {
                path: path.to_owned(),
                err,
            });
        }
    };
    let bad = |reason: String| PkiError::BadCrl {
        path: path.to_owned(),
        reason,
    };
    let der = crl_der(&bytes).map_err(bad)?;
    let (_, crl) = CertificateRevocationList::from_der(&der).map_err(|e| bad(e.to_string()))?;
    let ca_cert = parse_cert(&ca.cert_path, &ca.cert_der)?;
    let ours = crl.issuer().as_raw() == ca_cert.subject().as_raw()
        && crl.verify_signature(ca_cert.public_key()).is_ok();
    if !ours {
        return Err(PkiError::CrlWrongIssuer {
            path: path.to_owned(),
            ca: ca.cert_path.clone(),
        });
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(trim_zeros(r.raw_serial())),
            revocation_time: r.revocation_date.to_datetime(),
            reason_code: r.reason_code().and_then(|(_, code)| reason(code.0)),
            invalidity_date: r.invalidity_date().map(|(_, t)| t.to_datetime()),
        })
        .collect();
    let number = crl
        .crl_number()
        .map_or_else(|| vec![0], |n| n.to_bytes_be());
    Ok(Some(Existing { number, revoked }))
}

/// The DER of the first CRL in a PEM or DER file.
fn crl_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    for pem in Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|e| e.to_string())?;
        if pem.label == "X509 CRL" {
            return Ok(pem.contents);
        }
    }
    Err("no BEGIN X509 CRL block".to_owned())
}

/// RFC 5280's CRLReason codes as rcgen names them; 7 is unassigned.
fn reason(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

/// A big-endian unsigned number plus one.
pub fn increment(mut n: Vec<u8>) -> Vec<u8> {
    for b in n.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return n;
        }
    }
    n.insert(0, 1);
    n
}

/// A DER INTEGER's content bytes without the sign byte(s), for comparing serials.
pub fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A CRL number as certtool and OpenSSL print it: decimal when it fits, else hex.
fn number_text(number: &[u8]) -> String {
    let digits = trim_zeros(number);
    if digits.len() <= 16 {
        let mut n: u128 = 0;
        for &b in digits {
            n = (n << 8) | u128::from(b);
        }
        n.to_string()
    } else {
        format!("0x{}", hex(digits))
    }
}
