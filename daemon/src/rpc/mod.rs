//! Transport only: the listeners (UNIX sockets in `listen`, TLS in `tls_listen`, plain
//! TCP in `tcp_listen`, all yielding `conn::ApiConn`s to one gRPC server, which marks the
//! connections that must log in with SASL first), one file per gRPC service (with the
//! event relay behind `Domain.Events` in `events`), the error -> status mapping and the
//! wire conversions. Nothing here touches the store, the driver or the filesystem beyond
//! the sockets themselves (TLS files are read by `tls`).

mod admin;
mod auth;
pub mod conn;
mod console;
mod convert;
mod domain;
mod events;
mod guard;
pub mod listen;
mod status;
pub mod tcp_listen;
pub mod tls_listen;
mod users;

use std::{sync::Arc, time::Duration};

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::transport::Server;
use vmgate_proto::v1::{
    admin_server::AdminServer, console_server::ConsoleServer, domain_server::DomainServer,
};

use crate::{
    auth::{
        AuthLayer, Peer,
        access::{AccessDriver, ConnPolkit},
        login::Logins,
        polkit::Polkit,
    },
    core::Manager,
    reload::Reloader,
    shutdown::Shutdown,
};
use listen::BoundSocket;
use tls_listen::TlsListener;

/// How long in-flight calls get to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits that apply to API clients.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Connections at once over every socket (`max_clients`).
    pub max_clients: usize,
    /// Calls in flight at once on one connection (`max_client_requests`).
    pub max_client_requests: u32,
    /// TLS handshakes in flight at once (`max_anonymous_clients`).
    pub max_anonymous_clients: usize,
}

/// Everything the API is served on.
pub struct Listeners {
    pub unix: Vec<BoundSocket>,
    pub tls: Option<TlsListener>,
    pub tcp: Vec<tokio::net::TcpListener>,
    /// Which connections must log in with SASL first; None when none must.
    pub logins: Option<Logins>,
    /// Which UNIX sockets need polkit's yes (`auth_unix_* = "polkit"`).
    pub polkit_sockets: Option<PolkitSockets>,
    /// The polkit access driver (`access_drivers = ["polkit"]`).
    pub access: Option<Arc<AccessDriver>>,
}

/// The UNIX sockets guarded by polkit.
pub struct PolkitSockets {
    pub polkit: Arc<Polkit>,
    pub rw: bool,
    pub ro: bool,
}

impl PolkitSockets {
    fn check_for(&self, peer: &Peer) -> Option<ConnPolkit> {
        let Peer::Unix(unix) = peer else { return None };
        let guarded = if unix.readonly { self.ro } else { self.rw };
        guarded.then(|| ConnPolkit::new(self.polkit.clone(), unix.readonly))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("The API server failed: {0}")]
pub struct ServeError(#[from] tonic::transport::Error);

/// Serves the API on `listeners` until shutdown is triggered, then stops accepting
/// (removing the socket files), lets in-flight calls finish and returns.
pub async fn serve(
    manager: Arc<Manager>,
    listeners: Listeners,
    limits: ClientLimits,
    reloader: Reloader,
    shutdown: &Shutdown,
) -> Result<(), ServeError> {
    let (conns, incoming) = mpsc::channel(64);
    let clients = Arc::new(Semaphore::new(limits.max_clients));
    if let Some(tls) = listeners.tls {
        tls_listen::spawn_accept_loops(
            tls,
            clients.clone(),
            limits.max_anonymous_clients,
            conns.clone(),
            shutdown,
        );
    }
    tcp_listen::spawn_accept_loops(listeners.tcp, clients.clone(), conns.clone(), shutdown);
    for socket in listeners.unix {
        let stop = shutdown.child_token();
        shutdown.spawn(listen::accept_loop(
            socket,
            clients.clone(),
            conns.clone(),
            stop,
        ));
    }
    drop(conns);
    let logins = listeners.logins;
    let polkit_sockets = listeners.polkit_sockets;
    let incoming = ReceiverStream::new(incoming).map(move |mut conn: conn::ApiConn| {
        if let Some(login) = logins.as_ref().and_then(|l| l.for_peer(conn.peer())) {
            conn.require_login(login);
        }
        if let Some(check) = polkit_sockets
            .as_ref()
            .and_then(|p| p.check_for(conn.peer()))
        {
            conn.require_polkit(check);
        }
        Ok::<_, std::io::Error>(conn)
    });

    let server = Server::builder()
        .max_concurrent_streams(limits.max_client_requests)
        .layer(AuthLayer {
            access: listeners.access,
        })
        .add_service(DomainServer::new(domain::DomainService {
            manager: manager.clone(),
            shutdown: shutdown.clone(),
        }))
        .add_service(ConsoleServer::new(console::ConsoleService {
            manager: manager.clone(),
        }))
        .add_service(users::UsersServer::new(users::UsersService {
            manager: manager.clone(),
        }))
        .add_service(auth::AuthServer::new(auth::AuthService))
        .add_service(AdminServer::new(admin::AdminService { manager, reloader }))
        .serve_with_incoming_shutdown(incoming, shutdown.triggered());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        _ = shutdown.triggered() => {}
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!("in-flight calls did not finish within {DRAIN_TIMEOUT:?}; closing them");
            Ok(())
        }
    }
}
