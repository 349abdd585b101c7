//! TLS for the daemon's listeners (the API's and the console gateways' VeNCrypt): server
//! configurations built from PEM files as libvirt and QEMU lay them out, client certificates
//! verified against the CA and its CRL, the DN allowlist checked inside the handshake (so a
//! refused client gets a TLS alert that says why), and checks of the daemon's own
//! certificate at start. rustls with the ring provider; nothing here listens.

use std::{
    fmt, fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, ring},
    pki_types::{
        CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime, pem::PemObject,
    },
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use vmgate_config::x509;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("Cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read_err(path: &Path, e: impl fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The files of one TLS server identity.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Optional CRL: revoked client certificates are refused.
    pub crl: Option<PathBuf>,
}

/// Whether and how clients must present certificates.
#[derive(Clone, Debug)]
pub enum ClientCerts {
    /// No client certificate is asked for.
    NotRequested,
    /// Required, verified against the CA (and CRL), and its DN checked against the list
    /// (None = not checked, empty = nobody).
    Required { allowed_dns: Option<Vec<String>> },
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Builds a server configuration; `alpn` lists the protocols to offer (`h2` for the API).
pub fn server_config(
    files: &ServerFiles,
    clients: &ClientCerts,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    // Checks that the key can be used and belongs to the certificate, naming both files.
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| {
        let problem = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("does not match the certificate {}", files.cert.display())
            }
            // ring refuses some encodings other tools accept, e.g. certtool's ECDSA keys
            // whose scalar has a leading zero byte (about half of them).
            other => format!(
                "cannot be used ({other}); if certtool or another tool made it, rewrite it \
                 in PKCS#8 form with `openssl pkey -in {0} -out {0}.new` and move that into \
                 place, or make a new key with `vmgate pki`",
                files.key.display()
            ),
        };
        invalid(&files.key, problem)
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients {
        ClientCerts::NotRequested => builder.with_no_client_auth(),
        ClientCerts::Required { allowed_dns } => {
            let verifier = client_verifier(files, provider.clone(), allowed_dns.clone())?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&files.cert, e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn client_verifier(
    files: &ServerFiles,
    provider: Arc<CryptoProvider>,
    allowed_dns: Option<Vec<String>>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&files.ca)? {
        roots
            .add(ca)
            .map_err(|e| invalid(&files.ca, format!("not a usable CA certificate: {e}")))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if let Some(crl) = &files.crl {
        let crls = CertificateRevocationListDer::pem_file_iter(crl)
            .map_err(|e| read_err(crl, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(crl, format!("not a PEM CRL: {e}")))?;
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(DnAllowlist { inner, allowed_dns }))
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no certificate"));
    }
    Ok(certs)
}

/// Reads a private key, refusing one that other users can read.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mode = fs::metadata(path)
        .map_err(|e| read_err(path, e))?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        return Err(invalid(
            path,
            format!(
                "private key is readable by other users (mode {:04o}); chmod 600 it",
                mode & 0o777
            ),
        ));
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| invalid(path, format!("not a PEM private key: {e}")))
}

/// The DN of the peer's end-entity certificate, if it sent one.
pub fn peer_dn(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    certs
        .and_then(|c| c.first())
        .and_then(|leaf| x509::subject_dn(leaf).ok())
}

/// Problems with the daemon's own certificate that clients would trip over, each naming
/// the file and the fix: expiry, no subjectAltName (webpki ignores the CN).
pub fn check_own_certificate(path: &Path) -> Result<Vec<String>, TlsError> {
    let certs = load_certs(path)?;
    let leaf = certs
        .first()
        .ok_or_else(|| invalid(path, "holds no certificate"))?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| invalid(path, e.to_string()))?;
    let mut problems = Vec::new();
    if !cert.validity().is_valid() {
        problems.push(format!(
            "{}: certificate is not valid now (valid {} to {}); issue a new one with vmgate pki server-cert",
            path.display(),
            cert.validity().not_before,
            cert.validity().not_after
        ));
    }
    if cert.subject_alternative_name().ok().flatten().is_none() {
        problems.push(format!(
            "{}: certificate has no subjectAltName; clients match the host name against it, not the CN, so reissue it with vmgate pki server-cert --host NAME",
            path.display()
        ));
    }
    Ok(problems)
}

/// Verifies with webpki, then checks the DN; a DN outside the list fails the handshake
/// with the `access_denied` alert.
#[derive(Debug)]
struct DnAllowlist {
    inner: Arc<dyn ClientCertVerifier>,
    allowed_dns: Option<Vec<String>>,
}

impl ClientCertVerifier for DnAllowlist {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let dn = x509::subject_dn(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !x509::allowed(self.allowed_dns.as_deref(), &dn) {
            tracing::warn!(%dn, "client certificate refused: DN not allowed");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
