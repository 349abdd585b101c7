//! The TLS transport (`qemu+tls://HOST[:PORT]/system`): the client's files (see `pki`), a
//! rustls client configuration (ring provider, ALPN h2, the server's certificate checked
//! against the CA, the CRL when there is one, and HOST), our own TCP + TLS connector for
//! tonic, and the translation of TLS failures into errors that say which check failed and
//! what to do.
//!
//! A server that refuses our certificate tells us with a TLS alert. Under TLS 1.2 it arrives
//! during the handshake; under TLS 1.3 the client has finished its side before the server
//! judges the certificate, so the alert arrives on the first read, inside the first RPC,
//! where h2 keeps only its text. So the stream itself records the first TLS error it meets
//! ([`TlsFailure`]), and `Connection::open` asks it when the version call fails; during
//! the handshake the error comes straight from rustls ([`refusal_in`] digs it out).

use std::{
    error::Error as StdError,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, ring},
    pki_types::{
        CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
        pem::PemObject,
    },
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::{Channel, Endpoint, Uri};

use super::{ConnectError, HANDSHAKE_TIMEOUT, Target, pki::ClientPki};

/// libvirt's TLS port, used when the URI names none.
pub const DEFAULT_TLS_PORT: u16 = 16514;

/// Where to connect and with what.
pub(super) struct TlsDial {
    pub host: String,
    pub port: u16,
    pub pki: ClientPki,
    pub no_verify: bool,
}

impl TlsDial {
    pub fn target(&self) -> Target {
        Target::Tls {
            host: self.host.clone(),
            port: self.port,
            cert: self.pki.cert.clone(),
        }
    }
}

/// Reads the files and builds the client configuration.
pub fn client_config(pki: &ClientPki, no_verify: bool) -> Result<Arc<ClientConfig>, ConnectError> {
    let provider = Arc::new(ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if no_verify {
        Arc::new(NoServerVerification(provider.clone()))
    } else {
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&pki.ca, "CA certificate")? {
            roots
                .add(ca)
                .map_err(|e| bad_file("CA certificate", &pki.ca, e))?;
        }
        let mut builder =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if let Some(crl) = &pki.crl {
            let crls = CertificateRevocationListDer::pem_file_iter(crl)
                .map_err(|e| bad_file("CRL", crl, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad_file("CRL", crl, format!("not a PEM CRL: {e}")))?;
            // A CRL of another CA says nothing about this server: do not refuse for that.
            builder = builder
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        builder
            .build()
            .map_err(|e| bad_file("CA certificate", &pki.ca, e))?
    };
    let chain = read_certs(&pki.cert, "client certificate")?;
    let key = PrivateKeyDer::from_pem_file(&pki.key).map_err(|e| {
        bad_file(
            "client key",
            &pki.key,
            format!("not a PEM private key: {e}"),
        )
    })?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_file("client certificate", &pki.cert, e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            bad_file(
                "client key",
                &pki.key,
                format!("does not go with {}: {e}", pki.cert.display()),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad_file(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file(what, path, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad_file(what, path, "holds no certificate"));
    }
    Ok(certs)
}

fn bad_file(what: &'static str, path: &Path, reason: impl ToString) -> ConnectError {
    ConnectError::BadFile {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The first TLS error the connection's stream met, shared between the stream and whoever
/// wants to explain a failed call.
#[derive(Clone, Debug, Default)]
pub(super) struct TlsFailure(Arc<Mutex<Option<rustls::Error>>>);

impl TlsFailure {
    fn record(&self, err: &io::Error) {
        if let Some(tls) = refusal_in(err) {
            let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert_with(|| tls.clone());
        }
    }

    pub fn get(&self) -> Option<rustls::Error> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A TLS stream that records its first TLS error in a [`TlsFailure`].
struct Recorded {
    stream: TlsStream<TcpStream>,
    failure: TlsFailure,
}

impl Recorded {
    fn check<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &result {
            self.failure.record(e);
        }
        result
    }
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.check(result)
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.check(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.check(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.check(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Connects (TCP, then TLS) and builds a channel over that stream. If the channel ever
/// needs a new connection, it dials and shakes hands again with the same configuration.
/// The [`TlsFailure`] explains a later transport error (see the module doc).
pub(super) async fn channel(dial: &TlsDial) -> Result<(Channel, TlsFailure), ConnectError> {
    let config = client_config(&dial.pki, dial.no_verify)?;
    if dial.no_verify {
        eprintln!(
            "warning: no_verify=1: the server certificate of {} is NOT checked; anyone on the \
             path can pose as vmgated",
            dial.target()
        );
    }
    let name = ServerName::try_from(dial.host.clone()).map_err(|e| ConnectError::Resolve {
        host: dial.host.clone(),
        err: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let connector = TlsConnector::from(config);
    let first = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        connect(&connector, &dial.host, dial.port, name.clone()),
    )
    .await
    .map_err(|_| ConnectError::Timeout {
        target: dial.target(),
    })?
    .map_err(|e| classify(dial, e))?;

    let failure = TlsFailure::default();
    let first = Arc::new(Mutex::new(Some(first)));
    let (host, port) = (dial.host.clone(), dial.port);
    let recorder = failure.clone();
    let redial = tower::service_fn(move |_: Uri| {
        let first = first.lock().ok().and_then(|mut s| s.take());
        let (connector, host, name) = (connector.clone(), host.clone(), name.clone());
        let failure = recorder.clone();
        async move {
            let stream = match first {
                Some(s) => s,
                None => connect(&connector, &host, port, name)
                    .await
                    .map_err(DialError::into_io)?,
            };
            Ok::<_, io::Error>(TokioIo::new(Recorded { stream, failure }))
        }
    });
    let authority = match dial.host.contains(':') {
        true => format!("http://[{}]:{}", dial.host, dial.port),
        false => format!("http://{}:{}", dial.host, dial.port),
    };
    let endpoint = Endpoint::from_shared(authority)
        .unwrap_or_else(|_| Endpoint::from_static("http://vmgated:16514"));
    let channel =
        endpoint
            .connect_with_connector(redial)
            .await
            .map_err(|e| match failure.get() {
                Some(tls) => classify_tls(dial, &tls),
                None => ConnectError::Handshake {
                    target: dial.target(),
                    detail: crate::error::error_chain(&e),
                },
            })?;
    Ok((channel, failure))
}

/// Where a dial failed.
enum DialError {
    Resolve(io::Error),
    Tcp(io::Error),
    Tls(io::Error),
}

impl DialError {
    fn into_io(self) -> io::Error {
        match self {
            DialError::Resolve(e) | DialError::Tcp(e) | DialError::Tls(e) => e,
        }
    }
}

async fn connect(
    connector: &TlsConnector,
    host: &str,
    port: u16,
    name: ServerName<'static>,
) -> Result<TlsStream<TcpStream>, DialError> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(DialError::Resolve)?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or(DialError::Tcp(last))?;
    // gRPC sends small frames and waits for answers: do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    connector.connect(name, tcp).await.map_err(DialError::Tls)
}

fn classify(dial: &TlsDial, err: DialError) -> ConnectError {
    match err {
        DialError::Resolve(err) => ConnectError::Resolve {
            host: dial.host.clone(),
            err,
        },
        DialError::Tcp(err) => ConnectError::Unreachable {
            target: dial.target(),
            port: dial.port,
            err,
        },
        DialError::Tls(err) => match refusal_in(&err) {
            Some(tls) => classify_tls(dial, tls),
            None => ConnectError::TlsHandshake {
                target: dial.target(),
                detail: format!(
                    "{err}; the server closed the connection during the TLS handshake: is \
                     port {} vmgated's tls_port?",
                    dial.port
                ),
            },
        },
    }
}

/// The error a failed TLS exchange turns into: the server refused our certificate (an
/// alert), our check of its certificate failed, or something else.
pub(super) fn classify_tls(dial: &TlsDial, err: &rustls::Error) -> ConnectError {
    match err {
        rustls::Error::AlertReceived(alert) => ConnectError::ClientRefused {
            target: dial.target(),
            reason: describe_alert(*alert),
        },
        rustls::Error::InvalidCertificate(cert) => {
            let (check, fix) = server_check(dial, cert);
            ConnectError::ServerCertificate {
                target: dial.target(),
                check,
                fix,
            }
        }
        other => ConnectError::TlsHandshake {
            target: dial.target(),
            detail: other.to_string(),
        },
    }
}

/// Which check of the server's certificate failed, and what to do about it.
fn server_check(dial: &TlsDial, err: &CertificateError) -> (String, String) {
    use CertificateError as C;
    let host = &dial.host;
    let ca = dial.pki.ca.display();
    match err {
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            let names = match err {
                C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                    let names: Vec<&str> = presented.iter().map(|n| bare_name(n)).collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            (
                format!("host name check: it is not valid for {host}{names}"),
                format!(
                    "connect by a name the certificate lists, or reissue it with vmgate pki \
                     server-cert --host {host}"
                ),
            )
        }
        C::UnknownIssuer => (
            format!("CA check: it is not signed by the CA in {ca}"),
            "copy the server's CA certificate there, or pass ?pkipath=DIR holding it".into(),
        ),
        C::Expired | C::ExpiredContext { .. } => (
            "validity check: it has expired".into(),
            "the server's administrator must renew it (vmgate pki server-cert)".into(),
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => (
            "validity check: it is not valid yet".into(),
            "check the clocks of both hosts".into(),
        ),
        C::Revoked => (
            format!(
                "revocation check: it is revoked in {}",
                dial.pki
                    .crl
                    .as_deref()
                    .map_or_else(|| PathBuf::from("the CRL"), Path::to_path_buf)
                    .display()
            ),
            "the server needs a new certificate".into(),
        ),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
            "key usage check: it is not a TLS server certificate".into(),
            "reissue it as a server certificate (vmgate pki server-cert)".into(),
        ),
        other => (
            format!("certificate check: {other}"),
            "check the server's certificate and the CA in use".into(),
        ),
    }
}

/// `DnsName("localhost")` -> `localhost`; `IpAddress(127.0.0.1)` -> `127.0.0.1`.
fn bare_name(presented: &str) -> &str {
    let inner = presented
        .strip_prefix("DnsName(")
        .or_else(|| presented.strip_prefix("IpAddress("))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"')
}

/// Words for a refusal by the server, from the alert the daemon's verifier sends (its DN
/// allowlist fails with access_denied; webpki's errors map to the others).
pub fn describe_alert(alert: AlertDescription) -> &'static str {
    use AlertDescription::*;
    match alert {
        AccessDenied => "not allowed: the certificate's DN is not on the server's list",
        CertificateRevoked => "revoked: the certificate is on the CA's revocation list",
        CertificateExpired => "expired: the certificate is not valid now",
        UnknownCA => "unknown issuer: the certificate is not signed by the server's CA",
        CertificateRequired => "the server requires a client certificate",
        BadCertificate | UnsupportedCertificate | CertificateUnknown => {
            "the server cannot use this certificate (bad encoding or key usage)"
        }
        _ => "the server refused the TLS handshake",
    }
}

/// The rustls error somewhere in `err`'s chain, looking inside `io::Error`s too (their
/// `source()` skips the error they wrap).
pub fn refusal_in<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    let mut depth = 0;
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = refusal_in(inner)
        {
            return Some(tls);
        }
        depth += 1;
        next = if depth < 16 { e.source() } else { None };
    }
    None
}

/// `?no_verify=1`: accepts any server certificate, but still checks that the server holds
/// its key (the handshake signatures), so the connection is at least encrypted.
#[derive(Debug)]
struct NoServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_carry_the_words_the_issue_names() {
        for (alert, words) in [
            (AlertDescription::AccessDenied, "not allowed"),
            (AlertDescription::CertificateRevoked, "revoked"),
            (AlertDescription::CertificateExpired, "expired"),
            (AlertDescription::UnknownCA, "unknown issuer"),
        ] {
            assert!(describe_alert(alert).starts_with(words), "{alert:?}");
        }
    }

    #[test]
    fn the_rustls_error_is_found_inside_io_errors() {
        let inner = rustls::Error::AlertReceived(AlertDescription::CertificateRevoked);
        let io = io::Error::new(io::ErrorKind::InvalidData, inner.clone());
        let outer = io::Error::other(io);
        assert_eq!(refusal_in(&outer), Some(&inner));
        assert_eq!(refusal_in(&io::Error::other("plain")), None);
    }

    #[test]
    fn presented_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("DirectoryName"), "DirectoryName");
    }
}
