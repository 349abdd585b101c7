//! `vmgate pki`: a small certificate authority, so that nobody has to learn certtool to set up
//! TLS. It makes a CA, server certificates (in libvirt's and QEMU's file layouts) and client
//! certificates (in the `?pkipath=` layout), prints a certificate's DN in the form
//! `tls_allowed_dn_list` matches, and keeps the CA's revocation list.
//!
//! - [`ca`]: the CA on disk (`cacert.pem`, `cakey.pem`): creating it, loading and checking it,
//!   signing with it, fresh serial numbers.
//! - [`issue`]: what server and client certificates contain, and where they are written.
//! - [`crl`]: `cacrl.pem`, re-signed with every revocation and keeping the earlier ones.
//! - [`names`]: `--host` and `--dn` as the user writes them, checked and parsed.
//! - [`files`]: writing the results: keys 0600 in directories created 0700, nothing replaced
//!   without `--force`, replacements atomic (the daemon may be reloading them).
//!
//! Keys are ECDSA P-256. Everything here is synchronous file work: it never talks to the
//! daemon, so the CLI runs it without a connection. Reading other people's PKIs (certtool,
//! OpenSSL) is supported as far as `query-dn` and `revoke` need; a CA key must be PKCS#8, which
//! is what ring can sign with (the error says how to convert one).

pub mod ca;
pub mod crl;
pub mod files;
pub mod issue;
pub mod names;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use ca::{InitCa, init_ca};
pub use crl::{Revoke, revoke};
pub use files::{Outcome, Written};
pub use issue::{ClientCert, ServerCert, client_cert, server_cert};

/// Everything `vmgate pki` can fail with. Each message names the file or the value at fault
/// and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path} not found; create a CA with vmgate pki init-ca --dir {dir}",
        path = .path.display(), dir = .dir.display())]
    CaMissing { path: PathBuf, dir: PathBuf },
    #[error("{path} already exists; pass --force to overwrite it", path = .0.display())]
    Exists(PathBuf),
    #[error("cannot read {path}: {err}", path = .path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("cannot write {path}: {err}", path = .path.display())]
    Write { path: PathBuf, err: std::io::Error },
    #[error("cannot create directory {path}: {err}", path = .path.display())]
    CreateDir { path: PathBuf, err: std::io::Error },
    #[error("{path} is not an X.509 certificate in PEM or DER form: {reason}",
        path = .path.display())]
    BadCert { path: PathBuf, reason: String },
    #[error("{path} is not an unencrypted PKCS#8 private key ({reason}); convert it with \
        openssl pkcs8 -topk8 -nocrypt -in {path} -out NEW.pem", path = .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{key} is not the key of {cert}", key = .key.display(), cert = .cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{path} is not a CA certificate: {reason}", path = .path.display())]
    NotCa { path: PathBuf, reason: &'static str },
    #[error("the CA certificate {path} expired on {date}; create a new CA with \
        vmgate pki init-ca", path = .path.display())]
    CaExpired { path: PathBuf, date: String },
    #[error("{cert} was not issued by the CA {ca} (its issuer is {issuer})",
        cert = .cert.display(), ca = .ca.display())]
    NotIssuedByCa {
        cert: PathBuf,
        ca: PathBuf,
        issuer: String,
    },
    #[error("{path} is not a certificate revocation list: {reason}; move it away to start a \
        new one", path = .path.display())]
    BadCrl { path: PathBuf, reason: String },
    #[error("{path} was not signed by the CA {ca}; move it away to start a new one",
        path = .path.display(), ca = .ca.display())]
    CrlWrongIssuer { path: PathBuf, ca: PathBuf },
    #[error("--host {host:?} is neither an IP address nor a DNS name: {reason}")]
    BadHost { host: String, reason: String },
    #[error("--cn must not be empty")]
    EmptyCn,
    #[error("--dn {dn:?}: {reason}; write it as C=GB,ST=London,L=London,O=Example")]
    BadDn { dn: String, reason: String },
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What a `pki` command did: facts about the certificate or CRL, then the files written.
#[derive(Debug, Default)]
pub struct Report {
    /// `(label, value)` lines such as `("Subject", "CN=host")`.
    pub facts: Vec<(&'static str, String)>,
    pub files: Vec<Written>,
    /// Hints printed last (how to use what was made).
    pub notes: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .facts
            .iter()
            .map(|(l, _)| l.len() + 1)
            .max()
            .unwrap_or(0);
        for (label, value) in &self.facts {
            writeln!(f, "{:<width$} {value}", format!("{label}:"))?;
        }
        for w in &self.files {
            writeln!(f, "{w}")?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        Ok(())
    }
}

/// `pki query-dn CERT`: the certificate's subject as `tls_allowed_dn_list` and
/// `vnc_tls_x509_verify` identities spell it, like virt-pki-query-dn.
pub fn query_dn(cert: &Path) -> Result<String, PkiError> {
    let der = ca::read_cert_der(cert)?;
    vmgate_config::x509::subject_dn(&der).map_err(|e| PkiError::BadCert {
        path: cert.to_owned(),
        reason: e.to_string(),
    })
}

/// A serial number or key identifier as lowercase hex without leading zero bytes, as certtool
/// and `openssl crl -text` show serials (modulo case).
pub fn hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let trimmed = &bytes[start..];
    if trimmed.is_empty() {
        return "00".to_owned();
    }
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, in whole seconds (what certificates and CRLs can hold).
fn now() -> time::OffsetDateTime {
    let t = time::OffsetDateTime::now_utc();
    t - time::Duration::nanoseconds(i64::from(t.nanosecond()))
}

/// `path` made absolute for the hints, since config files resolve relative paths against
/// their own directory, not against where `vmgate pki` ran.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// A time as RFC 3339 (UTC), for the reports.
fn date_text(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
