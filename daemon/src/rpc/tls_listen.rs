//! The API's TLS listener (`listen_tls`): binds `listen_addr`:`tls_port` (or serves the
//! `vmgate-tls` sockets systemd passed), accepts TCP, runs the rustls handshake in a task
//! per connection (bounded by `max_anonymous_clients` and a timeout), and hands the streams
//! of verified clients to the same gRPC server as the UNIX sockets, counted against the
//! same `max_clients`.
//!
//! Client certificates are verified inside the handshake (CA, CRL, `tls_allowed_dn_list`;
//! see `tls`), so a refused client gets a TLS alert that says why, and the daemon logs the
//! peer address and the reason here. The configuration is read afresh for every handshake
//! from a [`ReloadableServerConfig`], so a reload applies to the next client.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use rustls::{CertificateError, ServerConfig};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use vmgate_config::DaemonConfig;

use super::{
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
    clients: Arc<Semaphore>,
    max_handshakes: usize,
    out: mpsc::Sender<ApiConn>,
    shutdown: &Shutdown,
) {
    let handshakes = Arc::new(Semaphore::new(max_handshakes));
    for socket in listener.listeners {
        let ctx = Accepting {
            config: listener.config.clone(),
            clients: clients.clone(),
            handshakes: handshakes.clone(),
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
    clients: Arc<Semaphore>,
    /// Handshakes in flight (`max_anonymous_clients`).
    handshakes: Arc<Semaphore>,
    out: mpsc::Sender<ApiConn>,
    stop: CancellationToken,
    shutdown: Shutdown,
}

async fn accept_loop(socket: TcpListener, ctx: Accepting) {
    loop {
        // As libvirtd: while max_anonymous_clients handshakes are in flight, stop accepting
        // and let new connections wait in the kernel's backlog.
        let handshake = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            permit = ctx.handshakes.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = ctx.stop.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("TLS listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = ctx.clients.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "too many clients (max_clients); dropping a TLS connection");
            continue;
        };
        let task = handshake_task(stream, addr, slot, handshake, ctx.clone());
        ctx.shutdown.spawn(task);
    }
}

async fn handshake_task(
    stream: TcpStream,
    addr: SocketAddr,
    slot: OwnedSemaphorePermit,
    handshake: OwnedSemaphorePermit,
    ctx: Accepting,
) {
    // gRPC sends small frames and waits for answers: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let acceptor = TlsAcceptor::from(ctx.config.current());
    let accept = acceptor.accept(stream).into_fallible();
    let result = tokio::select! {
        _ = ctx.stop.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept) => r,
    };
    drop(handshake);
    let tls = match result {
        Ok(Ok(tls)) => tls,
        Ok(Err((e, tcp))) => {
            log_refusal(addr, &e);
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
    let conn = ApiConn::new(ApiStream::Tls(Box::new(tls)), peer, slot);
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
