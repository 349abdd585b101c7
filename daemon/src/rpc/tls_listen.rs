//! The API's TLS listener (`listen_tls`): binds `listen_addr`:`tls_port` (or serves the
//! `vmgate-tls` sockets systemd passed), accepts TCP, runs the rustls handshake in a task
//! per connection, and hands the streams of verified clients to the same gRPC server as
//! the UNIX sockets, counted against the same `max_clients`.
//!
//! A handshake in progress is an unauthenticated connection (see `admission`): the loop
//! never stops accepting, and over `max_anonymous_clients` the oldest idle handshake of
//! the busiest address is closed. A client must send its first byte (the ClientHello)
//! within [`FIRST_BYTE_TIMEOUT`] and finish within [`HANDSHAKE_TIMEOUT`], so sockets that
//! connect and say nothing (slowloris) cannot keep others waiting.
//!
//! Client certificates are verified inside the handshake (CA, CRL, `tls_allowed_dn_list`;
//! see `tls`), so a refused client gets a TLS alert that says why, and the daemon logs the
//! peer address and the reason here. The configuration is read afresh for every handshake
//! from a [`ReloadableServerConfig`], so a reload applies to the next client.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use rustls::{CertificateError, ServerConfig};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use vmgate_config::DaemonConfig;

use super::{
    accept::{Entrance, OutOfFds},
    admission::{ClientSlot, Source, Unauthenticated},
    conn::{ApiConn, ApiStream},
    listen::ListenError,
    tcp_listen,
};
use crate::{
    auth::Peer,
    reload::ReloadableServerConfig,
    shutdown::Shutdown,
    tls::{self, ClientCerts, ServerFiles, TlsError},
};

/// How long a client gets to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client gets to send its first byte, the start of its ClientHello: a TLS
/// client sends it as soon as it connects.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a refused client may keep sending before the daemon closes (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);

/// The name the API's configuration has in reload messages.
pub const RELOAD_NAME: &str = "api";

/// Builds the API's TLS configuration from `[daemon]`, checking the daemon's own
/// certificate first; the same function runs again on every reload, re-reading every file
/// (and looking for /etc/pki/CA/cacrl.pem again when `crl_file` is unset).
pub fn api_config(daemon: &DaemonConfig) -> Result<Arc<ReloadableServerConfig>, TlsError> {
    let daemon = daemon.clone();
    if daemon.tls_no_verify_certificate {
        tracing::warn!(
            "tls_no_verify_certificate = true: TLS clients are NOT asked for certificates, so \
             anyone who can reach tls_port has full control; use it for tests only"
        );
    } else if daemon
        .tls_allowed_dn_list
        .as_ref()
        .is_some_and(Vec::is_empty)
    {
        tracing::warn!(
            "tls_allowed_dn_list is empty: EVERY TLS client will be refused; list DN globs, or \
             remove the key to not check DNs"
        );
    }
    ReloadableServerConfig::new(RELOAD_NAME, move || build(&daemon))
}

fn build(daemon: &DaemonConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let files = ServerFiles {
        cert: daemon.cert_file.clone(),
        key: daemon.key_file.clone(),
        ca: daemon.ca_file.clone(),
        crl: daemon.effective_crl_file(),
    };
    if let Some(problem) = tls::check_own_certificate(&files.cert)?.into_iter().next() {
        // The problems come prefixed with the file; the error names it once.
        let prefix = format!("{}: ", files.cert.display());
        let reason = problem.strip_prefix(&prefix).unwrap_or(&problem).to_owned();
        return Err(TlsError::Invalid {
            path: files.cert,
            reason,
        });
    }
    let clients = if daemon.tls_no_verify_certificate {
        ClientCerts::NotRequested
    } else {
        ClientCerts::Required {
            allowed_dns: daemon.tls_allowed_dn_list.clone(),
        }
    };
    tls::server_config(&files, &clients, &[b"h2"])
}

/// The TLS listener's sockets and configuration.
pub struct TlsListener {
    listeners: Vec<TcpListener>,
    config: Arc<ReloadableServerConfig>,
}

impl TlsListener {
    /// Where it listens (for logs, and for tests that bind port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// Serves `passed`, the sockets systemd passed as `vmgate-tls`; when there are none, binds
/// `listen_addr` (every address it resolves to; all interfaces when unset) on `port`.
pub async fn bind_or_adopt(
    listen_addr: Option<&str>,
    port: u16,
    config: Arc<ReloadableServerConfig>,
    passed: Vec<std::net::TcpListener>,
) -> Result<TlsListener, ListenError> {
    let listeners = tcp_listen::bind_or_adopt(listen_addr, port, passed).await?;
    Ok(TlsListener { listeners, config })
}

/// Accepts on every socket of `listener` until `stop`, sending verified connections to `out`.
pub fn spawn_accept_loops(
    listener: TlsListener,
    entrance: Arc<Entrance>,
    out: mpsc::Sender<ApiConn>,
    shutdown: &Shutdown,
) {
    for socket in listener.listeners {
        let ctx = Accepting {
            config: listener.config.clone(),
            entrance: entrance.clone(),
            out: out.clone(),
            stop: shutdown.child_token(),
            shutdown: shutdown.clone(),
        };
        shutdown.spawn(accept_loop(socket, ctx));
    }
}

/// What every accepted connection of one socket needs.
#[derive(Clone)]
struct Accepting {
    config: Arc<ReloadableServerConfig>,
    entrance: Arc<Entrance>,
    out: mpsc::Sender<ApiConn>,
    stop: CancellationToken,
    shutdown: Shutdown,
}

async fn accept_loop(socket: TcpListener, ctx: Accepting) {
    let name = match socket.local_addr() {
        Ok(addr) => format!("TLS listener {addr}"),
        Err(_) => "TLS listener".to_owned(),
    };
    let acceptor = ctx.entrance.acceptor(name, OutOfFds::Shed);
    loop {
        let accepted = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            accepted = acceptor.next(&socket) => accepted,
        };
        let (stream, addr) = (accepted.stream, accepted.addr);
        // gRPC sends small frames and waits for answers: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let slot = match ctx.entrance.admission.client_slot(false) {
            Ok(slot) => slot,
            Err(refusal) => {
                let acceptor = TlsAcceptor::from(ctx.config.current());
                let handshake = async move {
                    first_byte(&stream).await.ok()?;
                    acceptor.accept(stream).await.ok()
                };
                ctx.entrance.refusals.refuse(refusal, handshake);
                continue;
            }
        };
        let pending = ctx
            .entrance
            .admission
            .unauthenticated(Source::Ip(addr.ip().to_canonical()));
        let task = handshake_task(stream, addr, slot, pending, ctx.clone());
        ctx.shutdown.spawn(task);
    }
}

/// Why a client sent no ClientHello.
enum Silent {
    Timeout,
    Closed,
}

/// Waits for the client's first byte, for at most [`FIRST_BYTE_TIMEOUT`].
async fn first_byte(stream: &TcpStream) -> Result<(), Silent> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut byte)).await {
        Ok(Ok(1..)) => Ok(()),
        Ok(_) => Err(Silent::Closed),
        Err(_) => Err(Silent::Timeout),
    }
}

async fn handshake_task(
    stream: TcpStream,
    addr: SocketAddr,
    slot: ClientSlot,
    pending: Unauthenticated,
    ctx: Accepting,
) {
    let acceptor = TlsAcceptor::from(ctx.config.current());
    let activity = pending.activity();
    let handshake = async move {
        first_byte(&stream).await?;
        activity.touch();
        Ok(acceptor.accept(stream).into_fallible().await)
    };
    let result = tokio::select! {
        _ = ctx.stop.cancelled() => return,
        _ = pending.evicted() => {
            tracing::debug!(peer = %addr, "TLS client dropped to make room (max_anonymous_clients)");
            return;
        }
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => r,
    };
    let tls = match result {
        Ok(Ok(Ok(tls))) => tls,
        Ok(Err(Silent::Closed)) => return,
        Ok(Err(Silent::Timeout)) => {
            tracing::debug!(
                peer = %addr,
                "TLS client dropped: it sent nothing within {} s",
                FIRST_BYTE_TIMEOUT.as_secs()
            );
            return;
        }
        Ok(Ok(Err((e, tcp)))) => {
            log_refusal(addr, &e);
            drop(pending);
            tokio::select! {
                _ = ctx.stop.cancelled() => {}
                _ = linger(tcp) => {}
            }
            drop(slot);
            return;
        }
        Err(_) => {
            tracing::warn!(
                peer = %addr,
                "TLS client dropped: no handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            );
            return;
        }
    };
    let dn = tls::peer_dn(tls.get_ref().1.peer_certificates());
    tracing::info!(peer = %addr, dn = dn.as_deref().unwrap_or("-"), "TLS client connected");
    let peer = Peer::Tls { addr, dn };
    let mut conn = ApiConn::new(ApiStream::Tls(Box::new(tls)), peer, slot);
    // Still unauthenticated if a SASL login follows; the server decides.
    conn.set_unauthenticated(pending);
    let _ = ctx.out.send(conn).await;
}

/// Closes a refused connection without losing the alert that says why. A TLS 1.3 client
/// sends its first request right behind its certificate, before it learns of the refusal;
/// closing a socket with such unread data makes the kernel send a reset, which can destroy
/// the alert before the client reads it. So: send our FIN, then read and discard what the
/// client still sends until it closes, for a short, bounded while.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left: usize = 256 * 1024;
        while let Ok(n @ 1..) = tcp.read(&mut buf).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

fn log_refusal(addr: SocketAddr, err: &io::Error) {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => tracing::warn!(
            peer = %addr,
            "TLS client gave up: it did not accept the daemon's certificate ({alert:?}); check \
             that cert_file names the host clients connect to and is signed by the CA they trust"
        ),
        Some(tls_err) => {
            tracing::warn!(peer = %addr, "TLS client refused: {}", refusal_reason(tls_err))
        }
        // The client hung up or spoke something else: not a refusal worth a warning.
        None => tracing::info!(peer = %addr, "TLS handshake failed: {err}"),
    }
}

/// The reason a handshake failed, in the words the client is shown.
pub fn refusal_reason(err: &rustls::Error) -> String {
    use CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Revoked => "revoked: the client certificate is on the CA's revocation list".into(),
            C::Expired | C::ExpiredContext { .. } => {
                "expired: the client certificate is not valid any more".into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "expired: the client certificate is not valid yet".into()
            }
            C::UnknownIssuer => {
                "unknown issuer: the client certificate is not signed by ca_file's CA".into()
            }
            C::ApplicationVerificationFailure => {
                "not allowed: the client certificate's DN is not on tls_allowed_dn_list".into()
            }
            other => format!("bad client certificate: {other}"),
        },
        rustls::Error::NoCertificatesPresented => "no client certificate was presented".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_the_words_the_issue_names() {
        let cases = [
            (CertificateError::Revoked, "revoked"),
            (CertificateError::Expired, "expired"),
            (CertificateError::UnknownIssuer, "unknown issuer"),
            (
                CertificateError::ApplicationVerificationFailure,
                "not allowed",
            ),
        ];
        for (cert, words) in cases {
            let reason = refusal_reason(&rustls::Error::InvalidCertificate(cert));
            assert!(reason.starts_with(words), "{reason}");
        }
    }
}
