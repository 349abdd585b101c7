//! Opening a connection to vmgated: picks the transport for a [`ConnectUri`], connects
//! eagerly, and calls `Admin.Version` at once so that a missing daemon, a refused socket or a
//! daemon serving another driver is reported by [`Connection::open`], not by the first command.
//! Each transport lives in its own submodule and only builds a channel (`unix` an HTTP/2
//! connection of its own, see `direct`; `tls` with its file lookup in `pki`, and `tcp`, a
//! tonic `Channel`; `channel` puts them behind one type); this module owns the handshake and
//! the errors. It never parses URIs (see `uri`).

mod channel;
mod direct;
pub mod pki;
pub mod polkit_agent;
mod tcp;
pub mod tls;
mod unix;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
};
use vmgate_proto::v1::admin_client::AdminClient;
use vmgate_proto::v1::console_client::ConsoleClient;
use vmgate_proto::v1::domain_client::DomainClient;
use vmgate_proto::v1::users_client::UsersClient;
use vmgate_proto::v1::{Empty, VersionReply};

use crate::error::status_detail;
use crate::login::{self, LoginTarget};
use crate::uri::{ConnectUri, Driver, Transport};
use tls::{TlsDial, TlsFailure};

pub use channel::ApiTransport;
pub use tls::DEFAULT_TLS_PORT;
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
    pub users: UsersClient<ApiChannel>,
    pub uri: ConnectUri,
    pub daemon: VersionReply,
    /// The SASL user the connection logged in as, when the daemon asked for a login.
    pub user: Option<String>,
    /// The polkit agent answering for this connection's process, when polkit asked.
    pub agent: Option<Arc<polkit_agent::TtyAgent>>,
}

/// What a connection was opened to, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A UNIX socket.
    Socket(PathBuf),
    /// A TLS listener, and the client certificate presented to it.
    Tls {
        host: String,
        port: u16,
        cert: PathBuf,
    },
    /// A plain TCP listener.
    Tcp { host: String, port: u16 },
}

impl Target {
    /// What to check when it does not answer as vmgated.
    fn hint(&self) -> &'static str {
        match self {
            Target::Socket(_) => {
                "is it vmgated's socket? If it is, vmgated may be refusing clients (too many, \
                 or out of file descriptors): its log says why"
            }
            Target::Tcp { .. } => "is it vmgated's tcp_port, with listen_tcp = true?",
            Target::Tls { .. } => {
                "is it vmgated's tls_port? If it is, vmgated may have refused the client \
                 certificate: its log says why"
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Socket(path) => write!(f, "{}", path.display()),
            Target::Tls { host, port, .. } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tls { host, port, .. } => write!(f, "{host}:{port}"),
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a connection could not be opened. Each message names what was tried and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file the client needs is missing.
    #[error(transparent)]
    MissingFile(#[from] pki::MissingFile),
    #[error("cannot use {what} {path}: {reason}", path = .path.display())]
    BadFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Login(#[from] crate::login::LoginError),
    #[error("cannot resolve host {host}: {err}")]
    Resolve { host: String, err: std::io::Error },
    #[error(
        "cannot connect to vmgated at {target}: {err}; is vmgated running there with \
         listen_tls = true, and is tls_port {port} open?"
    )]
    Unreachable {
        target: Target,
        port: u16,
        err: std::io::Error,
    },
    /// Our check of the server's certificate failed.
    #[error("the server certificate of {target} failed the {check}; {fix}")]
    ServerCertificate {
        target: Target,
        check: String,
        fix: String,
    },
    /// The server refused our certificate, and its alert said why.
    #[error(
        "vmgated at {target} refused the client certificate {cert}: {reason}",
        cert = match .target { Target::Tls { cert, .. } => cert.display().to_string(), _ => String::new() }
    )]
    ClientRefused {
        target: Target,
        reason: &'static str,
    },
    #[error("TLS handshake with {target} failed: {detail}")]
    TlsHandshake { target: Target, detail: String },
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
        "{target} did not answer vmgate's version handshake ({detail}); {hint}",
        hint = .target.hint()
    )]
    Handshake { target: Target, detail: String },
    #[error(
        "vmgated at {target} did not answer within {secs} s",
        secs = HANDSHAKE_TIMEOUT.as_secs()
    )]
    Timeout { target: Target },
    /// The daemon is serving as many clients as it may (`max_clients`); its message says
    /// which limit.
    #[error("vmgated at {target} refused the connection: {detail}")]
    TooManyClients { target: Target, detail: String },
    /// The daemon answered the handshake with an error (for example an authorization refusal);
    /// its message already names the cause and the fix.
    #[error("{}", status_detail(.0))]
    Refused(tonic::Status),
    #[error(
        "this daemon serves the {served} driver; connect with {}",
        suggest(.served, .target)
    )]
    DriverMismatch {
        served: String,
        wanted: Driver,
        target: Target,
    },
}

/// The URI that reaches `target` with the driver the daemon serves.
fn suggest(served: &str, target: &Target) -> String {
    let path = served_path(served);
    match target {
        Target::Socket(socket) => format!(
            "{served}:///{path} (or {served}+unix:///{path}?socket={})",
            socket.display()
        ),
        Target::Tls { .. } => format!("{served}+tls://{target}/{path}"),
        Target::Tcp { .. } => format!("{served}+tcp://{target}/{path}"),
    }
}

/// A channel that marks every request with the connection's flags.
pub type ApiChannel = InterceptedService<ApiTransport, ConnectionFlags>;

/// Request header by which a read-only connection (`-r`) asks the daemon to treat it as
/// read-only even on the read-write socket (as libvirt's client enforces VIR_CONNECT_RO).
pub const READONLY_HEADER: &str = "vmgate-readonly";

/// Request header by which a client with a polkit agent lets the daemon have polkit ask.
pub const POLKIT_INTERACTIVE_HEADER: &str = "vmgate-polkit-interactive";

/// Adds the connection's flags to each request.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionFlags {
    readonly: bool,
    /// A polkit agent runs for this process.
    interactive: bool,
}

impl Interceptor for ConnectionFlags {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.readonly {
            req.metadata_mut()
                .insert(READONLY_HEADER, MetadataValue::from_static("1"));
        }
        if self.interactive {
            req.metadata_mut()
                .insert(POLKIT_INTERACTIVE_HEADER, MetadataValue::from_static("1"));
        }
        Ok(req)
    }
}

fn served_path(served: &str) -> &'static str {
    Driver::from_name(served).map_or("PATH", |d| &d.path()[1..])
}

impl Connection {
    /// Connects to the daemon `uri` names and checks it with `Admin.Version`. `readonly`
    /// picks the read-only socket when the URI does not name one. When polkit wants the
    /// caller on a local socket to authenticate and there is a terminal, a polkit agent is
    /// started and the connection made again.
    pub async fn open(uri: &ConnectUri, readonly: bool) -> Result<Connection, ConnectError> {
        match Self::open_with(uri, readonly, None).await {
            Err(ConnectError::Refused(status))
                if uri.transport == Transport::Unix
                    && status
                        .message()
                        .contains(polkit_agent::NEEDS_AUTHENTICATION) =>
            {
                match polkit_agent::TtyAgent::start() {
                    Some(agent) => Self::open_with(uri, readonly, Some(Arc::new(agent))).await,
                    None => Err(ConnectError::Refused(status)),
                }
            }
            other => other,
        }
    }

    async fn open_with(
        uri: &ConnectUri,
        readonly: bool,
        agent: Option<Arc<polkit_agent::TtyAgent>>,
    ) -> Result<Connection, ConnectError> {
        let (channel, target, dial) = match uri.transport {
            Transport::Unix => {
                let path = socket_path(uri, readonly);
                let channel = unix::channel(&path, uri.driver, readonly).await?;
                (channel.into(), Target::Socket(path), None)
            }
            Transport::Tls => {
                let dial = tls_dial(uri)?;
                let (channel, failure) = tls::channel(&dial).await?;
                (channel.into(), dial.target(), Some((dial, failure)))
            }
            Transport::Tcp => {
                let host = uri.host.clone().unwrap_or_else(|| "localhost".into());
                let port = uri.port.unwrap_or(tcp::DEFAULT_TCP_PORT);
                let channel = tcp::channel(&host, port).await?;
                (channel.into(), Target::Tcp { host, port }, None)
            }
        };
        let flags = ConnectionFlags {
            readonly,
            interactive: agent.is_some(),
        };
        let channel = InterceptedService::new(channel, flags);
        // The first call: whether (and how) this connection must log in.
        let offer = tokio::time::timeout(HANDSHAKE_TIMEOUT, login::offer(channel.clone()))
            .await
            .map_err(|_| ConnectError::Timeout {
                target: target.clone(),
            })?;
        let offer = match offer {
            Ok(offer) => offer,
            Err(status) => return Err(first_call_failed(status, target, dial.as_ref())),
        };
        let login_target = LoginTarget {
            host: uri.host.as_deref().unwrap_or("localhost"),
            user: uri.user.as_deref(),
            plain_tcp: uri.transport == Transport::Tcp,
        };
        let user = login::login(channel.clone(), &offer, &login_target)
            .await
            .map_err(ConnectError::Login)?;
        let mut admin = AdminClient::new(channel.clone());
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, admin.version(Empty {}))
            .await
            .map_err(|_| ConnectError::Timeout {
                target: target.clone(),
            })?;
        let daemon = match reply {
            Ok(r) => r.into_inner(),
            Err(status) if crate::error::is_transport_status(&status) => {
                // Under TLS 1.3 a refused client certificate shows up here, on the first read.
                if let Some((dial, failure)) = &dial
                    && let Some(tls_err) = failure.get()
                {
                    return Err(tls::classify_tls(dial, &tls_err));
                }
                return Err(ConnectError::Handshake {
                    target,
                    detail: status_detail(&status),
                });
            }
            Err(status) => return Err(refused(status, target)),
        };
        if daemon.driver != uri.driver.name() {
            return Err(ConnectError::DriverMismatch {
                served: daemon.driver,
                wanted: uri.driver,
                target,
            });
        }
        Ok(Connection {
            console: ConsoleClient::new(channel.clone()),
            users: UsersClient::new(channel.clone()),
            domain: DomainClient::new(channel),
            admin,
            uri: uri.clone(),
            daemon,
            user,
            agent,
        })
    }
}

/// Explains a failed first call: under TLS 1.3 a refused client certificate shows up
/// there, on the first read.
fn first_call_failed(
    status: tonic::Status,
    target: Target,
    dial: Option<&(TlsDial, TlsFailure)>,
) -> ConnectError {
    if !crate::error::is_transport_status(&status) {
        return refused(status, target);
    }
    if let Some((dial, failure)) = dial
        && let Some(tls_err) = failure.get()
    {
        return tls::classify_tls(dial, &tls_err);
    }
    ConnectError::Handshake {
        target,
        detail: status_detail(&status),
    }
}

/// The daemon's answer to the first call: a refusal over `max_clients` comes as
/// RESOURCE_EXHAUSTED with a message starting "Too many clients".
fn refused(status: tonic::Status, target: Target) -> ConnectError {
    const TOO_MANY: &str = "Too many clients";
    match status.message().strip_prefix(TOO_MANY) {
        Some(rest) if status.code() == tonic::Code::ResourceExhausted => {
            ConnectError::TooManyClients {
                target,
                detail: format!("too many clients{rest}"),
            }
        }
        _ => ConnectError::Refused(status),
    }
}

/// The host, port and files of a TLS URI; the files are looked up as libvirt does.
fn tls_dial(uri: &ConnectUri) -> Result<tls::TlsDial, ConnectError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let pki = pki::locate(uri.pkipath.as_deref(), home.as_deref())?;
    Ok(tls::TlsDial {
        // The URI parser refuses a TLS URI without a host; this is only a fallback.
        host: uri.host.clone().unwrap_or_else(|| "localhost".to_owned()),
        port: uri.port.unwrap_or(DEFAULT_TLS_PORT),
        pki,
        no_verify: uri.no_verify,
    })
}
