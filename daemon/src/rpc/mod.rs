//! The API: the listeners (UNIX sockets in `listen`, TLS in `tls_listen`, plain TCP in
//! `tcp_listen`, sharing the client limits of `admission` and the accept helpers of
//! `accept`, all yielding `conn::ApiConn`s to `serve`, which marks the connections that
//! must log in with SASL first and serves each over HTTP/2 in `h2_server`); authorization
//! at one point (`authorize`); the dispatch to the services (`router`); one file per gRPC
//! service (with the event relay behind `Domain.Events` in `events`); every gRPC status
//! (`status`); and the wire conversions (`convert`). It acts on domains only through the
//! core's API and never names a type of the store, a driver or the gateway (who may import
//! what is the table in `lib.rs`); it touches no file beyond the sockets themselves (TLS
//! files are read by `tls`).

pub mod accept;
mod admin;
pub mod admission;
mod auth;
pub mod authorize;
pub mod conn;
mod console;
mod convert;
mod domain;
mod events;
pub mod h2_server;
pub mod listen;
mod router;
mod status;
pub mod tcp_listen;
pub mod tls_listen;
mod users;

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinSet};
use tower::Layer;
use vmgate_proto::v1::{
    admin_server::AdminServer, console_server::ConsoleServer, domain_server::DomainServer,
};

use crate::{
    auth::{
        Peer,
        access::{AccessDriver, ConnPolkit},
        login::Logins,
        polkit::Polkit,
    },
    core::Manager,
    reload::Reloader,
    shutdown::Shutdown,
};
use accept::Entrance;
use admission::{Admission, Source};
use authorize::AuthorizeLayer;
use listen::BoundSocket;
use tls_listen::TlsListener;

/// How long in-flight calls get to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits that apply to API clients.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Connections at once over every socket (`max_clients`).
    pub max_clients: usize,
    /// Of those, the ones only the read-write socket may take (`max_clients_rw_reserve`).
    pub max_clients_rw_reserve: usize,
    /// Calls in flight at once on one connection (`max_client_requests`).
    pub max_client_requests: u32,
    /// Connections not yet authenticated at once (`max_anonymous_clients`).
    pub max_anonymous_clients: usize,
    /// How long a connection that must log in has to do it (`auth_timeout_secs`).
    pub auth_timeout: Duration,
    /// Probes for clients that went away without closing (`keepalive_*`); None when off.
    pub keepalive: Option<h2_server::Keepalive>,
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

/// Serves the API on `listeners` until shutdown is triggered, then stops accepting
/// (removing the socket files), lets in-flight calls finish and returns.
pub async fn serve(
    manager: Arc<Manager>,
    listeners: Listeners,
    limits: ClientLimits,
    reloader: Reloader,
    shutdown: &Shutdown,
) {
    let (conns, mut incoming) = mpsc::channel(64);
    let admission = Admission::new(
        limits.max_clients,
        limits.max_clients_rw_reserve,
        limits.max_anonymous_clients,
        limits.auth_timeout,
    );
    let entrance = Arc::new(Entrance::new(admission, shutdown.child_token()));
    if let Some(tls) = listeners.tls {
        tls_listen::spawn_accept_loops(tls, entrance.clone(), conns.clone(), shutdown);
    }
    tcp_listen::spawn_accept_loops(listeners.tcp, entrance.clone(), conns.clone(), shutdown);
    for socket in listeners.unix {
        let stop = shutdown.child_token();
        shutdown.spawn(listen::accept_loop(
            socket,
            entrance.clone(),
            conns.clone(),
            stop,
        ));
    }
    drop(conns);

    let calls = api_calls(manager, listeners.access, reloader, shutdown);
    let stop = shutdown.child_token();
    let mut connections = JoinSet::new();
    loop {
        let mut conn: conn::ApiConn = tokio::select! {
            conn = incoming.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                h2_server::log_panic(ended, "an API connection");
                continue;
            }
            _ = stop.cancelled() => break,
        };
        match listeners
            .logins
            .as_ref()
            .and_then(|l| l.for_peer(conn.peer()))
        {
            Some(login) => {
                conn.require_login(login);
                // A TLS connection is counted from its handshake on.
                if !conn.is_unauthenticated() {
                    let source = Source::of(conn.peer());
                    conn.set_unauthenticated(entrance.admission.unauthenticated(source));
                }
            }
            None => conn.authenticated(),
        }
        if let Some(check) = listeners
            .polkit_sockets
            .as_ref()
            .and_then(|p| p.check_for(conn.peer()))
        {
            conn.require_polkit(check);
        }
        connections.spawn(h2_server::serve_connection(
            conn,
            calls.clone(),
            h2_server::Limits {
                max_streams: limits.max_client_requests,
                keepalive: limits.keepalive,
            },
            stop.clone(),
        ));
    }
    // Connections accepted but not yet served are closed at once.
    drop(incoming);
    // Every connection has been told to close (GOAWAY) and finishes its calls in flight.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight calls did not finish within {DRAIN_TIMEOUT:?}; closing them");
        connections.abort_all();
        // An aborted connection drops its calls with it; wait until they are gone, so that
        // none still runs when the store closes.
        while connections.join_next().await.is_some() {}
    }
}

/// The largest `Auth` request decoded. Unauthenticated clients reach only this service,
/// and the gRPC decoder reserves a message's announced length as soon as its 5-byte
/// prefix arrives: at the default 4 MiB, every stream of every anonymous connection could
/// hold 4 MiB for 5 bytes sent. SASL messages are small; a Kerberos ticket with a large
/// PAC is tens of KiB.
const MAX_AUTH_MESSAGE: usize = 256 * 1024;

/// The five services behind the authorization layer; `access` is the polkit access
/// driver, if on.
fn api_calls(
    manager: Arc<Manager>,
    access: Option<Arc<AccessDriver>>,
    reloader: Reloader,
    shutdown: &Shutdown,
) -> impl h2_server::Calls {
    AuthorizeLayer { access }.layer(router::Services {
        domain: DomainServer::new(domain::DomainService {
            manager: manager.clone(),
            shutdown: shutdown.clone(),
        }),
        console: ConsoleServer::new(console::ConsoleService {
            manager: manager.clone(),
        }),
        users: users::UsersServer::new(users::UsersService {
            manager: manager.clone(),
        }),
        auth: auth::AuthServer::new(auth::AuthService).max_decoding_message_size(MAX_AUTH_MESSAGE),
        admin: AdminServer::new(admin::AdminService { manager, reloader }),
    })
}
