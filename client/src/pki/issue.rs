//! Server and client certificates, signed by the CA in `--ca-dir`, laid out where libvirt, QEMU
//! and vmgate look for them.
//!
//! A server certificate names every `--host` as a subjectAltName (webpki, like browsers,
//! ignores the CN) with the first as CN, and is for serverAuth. It goes to
//! `OUT/servercert.pem` and `OUT/private/serverkey.pem` (libvirt's `/etc/pki/vmgate` layout)
//! and, with `--vnc-dir`, to QEMU's `ca-cert.pem`, `server-cert.pem`, `server-key.pem`.
//! A client certificate's subject is the `--dn` attributes then the CN (the DN the daemon's
//! allowlist matches); it is for clientAuth and carries the CN as a DNS subjectAltName when
//! the CN is a host name (nothing requires one for a client). It goes to `OUT/cacert.pem`,
//! `OUT/clientcert.pem` and `OUT/clientkey.pem`, the `?pkipath=OUT` layout.

use std::path::Path;

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    string::Ia5String,
};
use time::Duration;

use super::ca::{CA_CERT, Ca, subject_of};
use super::files::{self, Output};
use super::names::{self, Host};
use super::{PkiError, Report, absolute, date_text, hex};

/// How long server and client certificates are valid (at most as long as their CA).
pub const LEAF_VALIDITY: Duration = Duration::days(730);

/// `pki server-cert`'s arguments.
#[derive(Debug)]
pub struct ServerCert<'a> {
    pub ca_dir: &'a Path,
    pub hosts: &'a [String],
    pub out_dir: &'a Path,
    pub vnc_dir: Option<&'a Path>,
    pub force: bool,
}

/// `pki client-cert`'s arguments.
#[derive(Debug)]
pub struct ClientCert<'a> {
    pub ca_dir: &'a Path,
    pub cn: &'a str,
    pub dn: Option<&'a str>,
    pub out_dir: &'a Path,
    pub force: bool,
}

/// `pki server-cert --ca-dir DIR --host NAME [--host NAME|IP ...] --out-dir OUT [--vnc-dir V]`.
pub fn server_cert(args: &ServerCert<'_>) -> Result<Report, PkiError> {
    let mut hosts: Vec<Host> = Vec::new();
    for text in args.hosts {
        let host = Host::parse(text)?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let Some(first) = hosts.first() else {
        return Err(PkiError::BadHost {
            host: String::new(),
            reason: "give at least one --host".to_owned(),
        });
    };
    let ca = Ca::load(args.ca_dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = names::cn_subject(&first.text())?;
    params.subject_alt_names = hosts.iter().map(san).collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = leaf_key_usages();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (cert, serial) = ca.sign(&mut params, &key, LEAF_VALIDITY)?;

    let cert_path = args.out_dir.join("servercert.pem");
    let key_path = args.out_dir.join("private").join("serverkey.pem");
    let mut outputs = vec![
        Output::public(cert_path.clone(), cert.pem()),
        Output::key(key_path.clone(), key.serialize_pem()),
    ];
    if let Some(v) = args.vnc_dir {
        outputs.push(ca_copy(&ca, &v.join("ca-cert.pem")));
        outputs.push(Output::public(v.join("server-cert.pem"), cert.pem()));
        outputs.push(Output::key(v.join("server-key.pem"), key.serialize_pem()));
    }
    let files = files::write_all(outputs, args.force)?;

    let sans: Vec<String> = hosts.iter().map(Host::san_text).collect();
    let mut notes = vec![format!(
        "vmgated.toml [daemon]: cert_file = \"{}\", key_file = \"{}\", ca_file = \"{}\"",
        absolute(&cert_path),
        absolute(&key_path),
        absolute(&ca.cert_path)
    )];
    if let Some(v) = args.vnc_dir {
        notes.push(format!(
            "vmgated.toml [vnc]: vnc_tls = true, vnc_tls_x509_cert_dir = \"{}\"",
            absolute(v)
        ));
    }
    Ok(Report {
        facts: vec![
            ("Subject", subject_of(&cert_path, cert.der())?),
            ("Names", sans.join(", ")),
            ("Serial", hex(&serial)),
            ("Valid until", date_text(params.not_after)),
            ("Issuer", ca.subject.clone()),
        ],
        files,
        notes,
    })
}

/// `pki client-cert --ca-dir DIR --cn NAME [--dn DN] --out-dir OUT`.
pub fn client_cert(args: &ClientCert<'_>) -> Result<Report, PkiError> {
    let subject = names::client_subject(args.dn, args.cn)?;
    let ca = Ca::load(args.ca_dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    let cn = args.cn.trim();
    if names::is_dns_name(cn) {
        params.subject_alt_names = vec![san(&Host::Dns(cn.to_ascii_lowercase()))?];
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = leaf_key_usages();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (cert, serial) = ca.sign(&mut params, &key, LEAF_VALIDITY)?;

    let cert_path = args.out_dir.join("clientcert.pem");
    let files = files::write_all(
        vec![
            ca_copy(&ca, &args.out_dir.join(CA_CERT)),
            Output::public(cert_path.clone(), cert.pem()),
            Output::key(args.out_dir.join("clientkey.pem"), key.serialize_pem()),
        ],
        args.force,
    )?;
    let dn = subject_of(&cert_path, cert.der())?;
    let notes = vec![
        format!(
            "Connect with: vmgate -c 'qemu+tls://HOST/system?pkipath={}'",
            absolute(args.out_dir)
        ),
        format!(
            "Allow with: tls_allowed_dn_list = [\"{}\"]",
            toml_escape(&dn)
        ),
    ];
    Ok(Report {
        facts: vec![
            ("Subject", dn),
            ("Serial", hex(&serial)),
            ("Valid until", date_text(params.not_after)),
            ("Issuer", ca.subject.clone()),
        ],
        files,
        notes,
    })
}

/// certtool's `signing_key` + `encryption_key`, as libvirt's guides give both kinds of leaf.
fn leaf_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ]
}

fn san(host: &Host) -> Result<SanType, PkiError> {
    Ok(match host {
        Host::Ip(ip) => SanType::IpAddress(*ip),
        Host::Dns(name) => SanType::DnsName(Ia5String::try_from(name.as_str())?),
    })
}

/// The CA certificate as its file holds it, for the layouts that carry a copy.
fn ca_copy(ca: &Ca, path: &Path) -> Output {
    Output {
        path: path.to_owned(),
        contents: ca.cert_file.clone(),
        mode: files::PUBLIC_MODE,
    }
}

/// A DN inside a TOML basic string: backslashes (the DN's own escapes) and quotes escaped.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
