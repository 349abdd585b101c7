//! Opening a connection to vmgated: picks the transport for a [`ConnectUri`], connects
//! eagerly, and calls `Admin.Version` at once so that a missing daemon, a refused socket or a
//! daemon serving another driver is reported by [`Connection::open`], not by the first command.
//! Each transport lives in its own submodule and only builds a tonic [`Channel`]; this module
//! owns the handshake and the errors. It never parses URIs (see `uri`).

mod unix;

use std::path::PathBuf;
use std::time::Duration;

use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use vmgate_proto::v1::admin_client::AdminClient;
use vmgate_proto::v1::console_client::ConsoleClient;
use vmgate_proto::v1::domain_client::DomainClient;
use vmgate_proto::v1::{Empty, VersionReply};

use crate::error::status_detail;
use crate::uri::{ConnectUri, Driver, Transport};

pub use unix::{DEFAULT_RO_SOCKET, DEFAULT_SOCKET, socket_path};

/// How long the daemon may take to answer the version handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// An open, checked connection: the API clients over one channel, and what the daemon said
/// about itself in the handshake.
#[derive(Debug, Clone)]
pub struct Connection {
    pub domain: DomainClient<ApiChannel>,
    pub admin: AdminClient<ApiChannel>,
    pub console: ConsoleClient<ApiChannel>,
    pub uri: ConnectUri,
    pub daemon: VersionReply,
}

/// Why a connection could not be opened. Each message names what was tried and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "transport {0} is not available in this build yet; connect through the local socket \
         (qemu:///system, or qemu+unix:///system?socket=PATH)"
    )]
    TransportUnavailable(Transport),
    #[error(
        "cannot connect to vmgated at {path}: {err}; is vmgated running? start it with \
         `vmgated --config FILE`, or pass -c '{driver}+unix://{dpath}?socket=PATH'",
        path = .path.display(),
        dpath = .driver.path()
    )]
    NotRunning {
        path: PathBuf,
        driver: Driver,
        err: std::io::Error,
    },
    #[error(
        "permission denied on socket {path}; {hint}",
        path = .path.display(),
        hint = if *.readonly {
            "its permissions (unix_sock_ro_perms) do not admit this user; ask the administrator"
        } else {
            "read-write access needs membership of the socket's group (unix_sock_group), \
             or use -r for the read-only socket"
        }
    )]
    PermissionDenied { path: PathBuf, readonly: bool },
    #[error("cannot connect to vmgated at {path}: {err}", path = .path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "{path} did not answer vmgate's version handshake ({detail}); is it vmgated's socket?",
        path = .path.display()
    )]
    Handshake { path: PathBuf, detail: String },
    #[error(
        "vmgated at {path} did not answer within {secs} s",
        path = .path.display(),
        secs = HANDSHAKE_TIMEOUT.as_secs()
    )]
    Timeout { path: PathBuf },
    /// The daemon answered the handshake with an error (for example an authorization refusal);
    /// its message already names the cause and the fix.
    #[error("{}", status_detail(.0))]
    Refused(tonic::Status),
    #[error(
        "this daemon serves the {served} driver; connect with {served}:///{spath} \
         (or {served}+unix:///{spath}?socket={socket})",
        spath = served_path(.served),
        socket = .socket.display()
    )]
    DriverMismatch {
        served: String,
        wanted: Driver,
        socket: PathBuf,
    },
}

/// A channel that marks every request with the connection's flags.
pub type ApiChannel = InterceptedService<Channel, ConnectionFlags>;

/// Request header by which a read-only connection (`-r`) asks the daemon to treat it as
/// read-only even on the read-write socket (as libvirt's client enforces VIR_CONNECT_RO).
pub const READONLY_HEADER: &str = "vmgate-readonly";

/// Adds the connection's flags to each request.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionFlags {
    readonly: bool,
}

impl Interceptor for ConnectionFlags {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.readonly {
            req.metadata_mut()
                .insert(READONLY_HEADER, MetadataValue::from_static("1"));
        }
        Ok(req)
    }
}

fn served_path(served: &str) -> &'static str {
    Driver::from_name(served).map_or("PATH", |d| &d.path()[1..])
}

impl Connection {
    /// Connects to the daemon `uri` names and checks it with `Admin.Version`. `readonly`
    /// picks the read-only socket when the URI does not name one.
    pub async fn open(uri: &ConnectUri, readonly: bool) -> Result<Connection, ConnectError> {
        let (channel, socket) = match uri.transport {
            Transport::Unix => {
                let path = socket_path(uri, readonly);
                (unix::channel(&path, uri.driver, readonly).await?, path)
            }
            t @ (Transport::Tls | Transport::Tcp) => {
                return Err(ConnectError::TransportUnavailable(t));
            }
        };
        let flags = ConnectionFlags { readonly };
        let channel = InterceptedService::new(channel, flags);
        let mut admin = AdminClient::new(channel.clone());
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, admin.version(Empty {}))
            .await
            .map_err(|_| ConnectError::Timeout {
                path: socket.clone(),
            })?;
        let daemon = match reply {
            Ok(r) => r.into_inner(),
            Err(status) if crate::error::is_transport_status(&status) => {
                return Err(ConnectError::Handshake {
                    path: socket,
                    detail: status_detail(&status),
                });
            }
            Err(status) => return Err(ConnectError::Refused(status)),
        };
        if daemon.driver != uri.driver.name() {
            return Err(ConnectError::DriverMismatch {
                served: daemon.driver,
                wanted: uri.driver,
                socket,
            });
        }
        Ok(Connection {
            console: ConsoleClient::new(channel.clone()),
            domain: DomainClient::new(channel),
            admin,
            uri: uri.clone(),
            daemon,
        })
    }
}
