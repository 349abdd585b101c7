//! The TLS side of a VeNCrypt client: [`TlsCreds`] (the CA it trusts, the certificate it
//! presents, the name the server must prove), the rustls handshake on the RFB stream, and
//! [`TlsInfo`], what that handshake agreed on, for tests to compare with what the gateway
//! says it negotiated. The VeNCrypt steps around it are in `security`.

use std::{fmt, path::Path, sync::Arc};

use anyhow::Context;
use rustls::{
    RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsConnector, client::TlsStream};
use vmgated::vnc::vencrypt::Subtype;

use crate::pki::Issued;

/// What a VeNCrypt client trusts and presents: the CA that signed the server's
/// certificate, a client certificate or none, and the name the server's certificate must
/// carry (a DNS name or an IP address).
#[derive(Clone)]
pub struct TlsCreds {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCreds")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsCreds {
    /// Trusts the CA certificate(s) in `ca`; presents `client` when given.
    pub fn new(ca: &Path, client: Option<&Issued>, server_name: &str) -> anyhow::Result<TlsCreds> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).context("add the CA certificate")?;
        }
        let builder =
            rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
        let config = match client {
            Some(c) => {
                let key = PrivateKeyDer::from_pem_file(&c.key)
                    .with_context(|| format!("read the key {}", c.key.display()))?;
                builder.with_client_auth_cert(read_certs(&c.cert)?, key)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsCreds {
            config: Arc::new(config),
            server_name: ServerName::try_from(server_name.to_owned())?,
        })
    }

    /// The client's TLS handshake on `stream`, the stream the VeNCrypt `subtype` was agreed
    /// on: the TLS stream to go on with, and what the handshake agreed on.
    pub(super) async fn handshake<S>(
        &self,
        stream: S,
        subtype: Subtype,
    ) -> anyhow::Result<(TlsStream<S>, TlsInfo)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), stream)
            .await
            .context("TLS handshake")?;
        let session = stream.get_ref().1;
        let info = TlsInfo {
            subtype,
            protocol: session
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: session
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            server_cert: session
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| c.to_vec())
                .unwrap_or_default(),
        };
        Ok((stream, info))
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("read certificates from {}", path.display()))
}

/// The DER bytes of the first certificate in the PEM file `path`, to compare with
/// [`TlsInfo::server_cert`].
pub fn cert_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    let certs = read_certs(path)?;
    let first = certs.first().context("no certificate in the file")?;
    Ok(first.to_vec())
}

/// What a VeNCrypt connection's TLS handshake agreed on.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub subtype: Subtype,
    /// As rustls names it: `TLSv1_3`.
    pub protocol: String,
    /// As rustls names it: `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The server's end-entity certificate (DER).
    pub server_cert: Vec<u8>,
}
