//! The plain TCP listener (`listen_tcp`, `tcp_port`, libvirt's 16509): connections whose
//! peer is only an address, usable once they log in with SASL (`auth_tcp = "sasl"`; the
//! config check refuses `auth_tcp = "none"` with `listen_tcp`). Until they do they count
//! against `max_anonymous_clients` (see `admission`; the server registers them). Also the
//! address binding the TLS listener shares, and the adoption of TCP sockets systemd passed.

use std::{io, net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::mpsc};

use super::{
    accept::{Entrance, OutOfFds},
    conn::{ApiConn, ApiStream},
    listen::ListenError,
};
use crate::{auth::Peer, shutdown::Shutdown};

/// Binds `listen_addr` (every address it resolves to; all interfaces when unset) on `port`.
pub async fn bind_tcp(
    listen_addr: Option<&str>,
    port: u16,
) -> Result<Vec<TcpListener>, ListenError> {
    let shown = |host: &str| format!("{host}:{port}");
    let mut listeners = Vec::new();
    match listen_addr {
        None => {
            // "::" takes IPv4 too where the host allows it; hosts without IPv6 get 0.0.0.0.
            let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
            let listener = match TcpListener::bind(any6).await {
                Ok(l) => l,
                Err(_) => bind_one(SocketAddr::from(([0, 0, 0, 0], port))).await?,
            };
            listeners.push(listener);
        }
        Some(host) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| ListenError::Resolve {
                    addr: shown(host),
                    source,
                })?
                .collect();
            for addr in addrs {
                match bind_one(addr).await {
                    Ok(l) => listeners.push(l),
                    // A name that also resolves to IPv6 on a host without IPv6.
                    Err(ListenError::Tcp { source, .. })
                        if addr.is_ipv6() && !listeners.is_empty() =>
                    {
                        tracing::debug!(%addr, "not listening on {addr}: {source}");
                    }
                    Err(e) => return Err(e),
                }
            }
            if listeners.is_empty() {
                return Err(ListenError::Resolve {
                    addr: shown(host),
                    source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
                });
            }
        }
    }
    Ok(listeners)
}

/// Serves `passed`, the sockets systemd passed for this listener, ignoring `listen_addr`
/// and `port`; binds those when none were passed.
pub async fn bind_or_adopt(
    listen_addr: Option<&str>,
    port: u16,
    passed: Vec<std::net::TcpListener>,
) -> Result<Vec<TcpListener>, ListenError> {
    if passed.is_empty() {
        return bind_tcp(listen_addr, port).await;
    }
    passed.into_iter().map(adopt).collect()
}

/// A listening TCP socket systemd passed, made non-blocking for tokio.
pub fn adopt(listener: std::net::TcpListener) -> Result<TcpListener, ListenError> {
    let socket = listener
        .local_addr()
        .map_or_else(|_| "unknown address".to_owned(), |a| a.to_string());
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|source| ListenError::Adopt { socket, source })
}

async fn bind_one(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Tcp { addr, source })
}

/// Accepts on every listener until shutdown, sending connections to `out`; a client over
/// `max_clients` is told so and closed.
pub fn spawn_accept_loops(
    listeners: Vec<TcpListener>,
    entrance: Arc<Entrance>,
    out: mpsc::Sender<ApiConn>,
    shutdown: &Shutdown,
) {
    for listener in listeners {
        let (entrance, out, stop) = (entrance.clone(), out.clone(), shutdown.child_token());
        let name = match listener.local_addr() {
            Ok(addr) => format!("TCP listener {addr}"),
            Err(_) => "TCP listener".to_owned(),
        };
        shutdown.spawn(async move {
            let acceptor = entrance.acceptor(name, OutOfFds::Shed);
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = acceptor.next(&listener) => accepted,
                };
                let (stream, addr) = (accepted.stream, accepted.addr);
                let _ = stream.set_nodelay(true);
                let slot = match entrance.admission.client_slot(false) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        entrance
                            .refusals
                            .refuse(refusal, async move { Some(stream) });
                        continue;
                    }
                };
                let conn = ApiConn::new(ApiStream::Tcp(stream), Peer::Tcp { addr }, slot);
                if out.send(conn).await.is_err() {
                    break;
                }
            }
        });
    }
}
