//! The certificate authority on disk: `DIR/cacert.pem` and `DIR/cakey.pem` (libvirt's names).
//! `init_ca` makes one; [`Ca::load`] reads one back (ours, or certtool's or OpenSSL's with a
//! PKCS#8 key) and checks that it can sign before anything is issued: the key belongs to the
//! certificate, the certificate is a CA that may sign certificates, and it has not expired.
//! Every certificate gets a fresh random 128-bit serial (RFC 5280 allows up to 20 octets;
//! random serials need no counter file, and revocation finds certificates by serial).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;

use super::files::{self, Output};
use super::{PkiError, Report, absolute, date_text, hex, names};

/// The CA certificate's file name in the CA directory (and in a `?pkipath=` directory).
pub const CA_CERT: &str = "cacert.pem";
/// The CA key's file name in the CA directory.
pub const CA_KEY: &str = "cakey.pem";

/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Certificates start this long before they were made, so a peer whose clock is a little
/// behind does not see them as not yet valid.
pub const BACKDATE: Duration = Duration::hours(1);

/// `pki init-ca`'s arguments.
#[derive(Debug)]
pub struct InitCa<'a> {
    pub dir: &'a Path,
    pub cn: &'a str,
    pub force: bool,
}

/// `pki init-ca --dir DIR [--cn NAME] [--force]`: a self-signed CA that may sign certificates
/// and CRLs, valid for ten years.
pub fn init_ca(args: &InitCa<'_>) -> Result<Report, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = names::cn_subject(args.cn)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let serial = new_serial();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let now = super::now();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key)?;
    let files = files::write_all(
        vec![
            Output::public(args.dir.join(CA_CERT), cert.pem()),
            Output::key(args.dir.join(CA_KEY), key.serialize_pem()),
        ],
        args.force,
    )?;
    let subject = subject_of(&args.dir.join(CA_CERT), cert.der())?;
    let mut notes = vec![format!(
        "Keep {} secret; only cacert.pem goes to servers and clients.",
        absolute(&args.dir.join(CA_KEY))
    )];
    let old_crl = args.dir.join(super::crl::CA_CRL);
    if old_crl.exists() {
        // Signed by the CA just replaced: revoke would refuse to extend it.
        notes.push(format!(
            "{} belongs to the previous CA; remove it (and the certificates that CA issued).",
            absolute(&old_crl)
        ));
    }
    Ok(Report {
        facts: vec![
            ("Subject", subject),
            ("Serial", hex(&serial)),
            ("Valid until", date_text(params.not_after)),
        ],
        files,
        notes,
    })
}

/// A CA read from its directory, ready to sign.
pub struct Ca {
    pub dir: PathBuf,
    pub cert_path: PathBuf,
    /// The certificate file as it is, copied verbatim into the layouts that need it.
    pub cert_file: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub subject: String,
    pub not_after: OffsetDateTime,
    /// The CA's subjectKeyIdentifier, which its CRLs must name as their authority key.
    pub key_id: Option<Vec<u8>>,
    pub issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_path", &self.cert_path)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Reads and checks the CA in `dir`.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let missing = |path: &Path| PkiError::CaMissing {
            path: path.to_owned(),
            dir: dir.to_owned(),
        };
        let cert_file = read_or(&cert_path, || missing(&cert_path))?;
        let cert_der = cert_der_from(&cert_path, &cert_file)?;
        let cert = parse_cert(&cert_path, &cert_der)?;
        let not_ca = |reason| PkiError::NotCa {
            path: cert_path.clone(),
            reason,
        };
        if !cert.is_ca() {
            return Err(not_ca("it has no basicConstraints CA:TRUE"));
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(not_ca("its key usage does not include keyCertSign"));
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after < OffsetDateTime::now_utc() {
            return Err(PkiError::CaExpired {
                path: cert_path,
                date: date_text(not_after),
            });
        }
        let key_text = read_or(&key_path, || missing(&key_path))?;
        let bad_key = |reason: String| PkiError::BadKey {
            path: key_path.clone(),
            reason,
        };
        let key_text = String::from_utf8(key_text).map_err(|_| bad_key("not PEM".to_owned()))?;
        let key = KeyPair::from_pem(&key_text).map_err(|e| bad_key(e.to_string()))?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        let key_id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let subject = subject_of(&cert_path, &cert_der)?;
        let pem = String::from_utf8_lossy(&cert_file);
        let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(|e| PkiError::BadCert {
            path: cert_path.clone(),
            reason: format!("a CA certificate must be PEM ({e})"),
        })?;
        Ok(Ca {
            dir: dir.to_owned(),
            cert_path,
            cert_file,
            cert_der,
            subject,
            not_after,
            key_id,
            issuer,
        })
    }

    /// Signs `params` for `key` with a fresh serial, valid from now for `validity` but never
    /// beyond the CA itself (a certificate outliving its CA only fails later, and confusingly).
    pub fn sign(
        &self,
        params: &mut CertificateParams,
        key: &KeyPair,
        validity: Duration,
    ) -> Result<(Certificate, [u8; 16]), PkiError> {
        let serial = new_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = super::now();
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        params.use_authority_key_identifier_extension = true;
        Ok((params.signed_by(key, &self.issuer)?, serial))
    }
}

/// A fresh serial: 128 random bits. The DER encoding adds a zero byte when the top bit is set,
/// so the serial is always positive.
pub fn new_serial() -> [u8; 16] {
    loop {
        let n: u128 = rand::random();
        if n != 0 {
            return n.to_be_bytes();
        }
    }
}

/// The DER of the (first) certificate in a PEM or DER file.
pub fn read_cert_der(path: &Path) -> Result<Vec<u8>, PkiError> {
    let bytes = fs::read(path).map_err(|err| PkiError::Read {
        path: path.to_owned(),
        err,
    })?;
    cert_der_from(path, &bytes)
}

fn cert_der_from(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, PkiError> {
    let bad = |reason: String| PkiError::BadCert {
        path: path.to_owned(),
        reason,
    };
    // A DER certificate is a SEQUENCE; PEM is text.
    let der = if bytes.first() == Some(&0x30) {
        bytes.to_vec()
    } else {
        let mut found = None;
        for pem in Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| bad(e.to_string()))?;
            if pem.label == "CERTIFICATE" {
                found = Some(pem.contents);
                break;
            }
        }
        found.ok_or_else(|| bad("no BEGIN CERTIFICATE block".to_owned()))?
    };
    parse_cert(path, &der)?;
    Ok(der)
}

/// Parses a DER certificate, naming `path` when it is not one.
pub fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::BadCert {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// The subject of a DER certificate in the allowlist form.
pub fn subject_of(path: &Path, der: &[u8]) -> Result<String, PkiError> {
    vmgate_config::x509::subject_dn(der).map_err(|e| PkiError::BadCert {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_or(path: &Path, missing: impl FnOnce() -> PkiError) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            missing()
        } else {
            PkiError::Read {
                path: path.to_owned(),
                err,
            }
        }
    })
}
