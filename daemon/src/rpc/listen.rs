//! The UNIX socket listeners: safe removal of stale sockets (refusing when another daemon
//! is live on one), modes and group from the config, peer credentials at accept, and the
//! `max_clients` bound shared by every listener (TLS included), of which the read-write
//! socket alone may use the reserve (see `admission`). Accepted connections go to one
//! channel that the gRPC server reads. Sockets systemd passed (`systemd::activation`)
//! are served as they are: no mode, group or stale-socket handling, and never unlinked.

use std::{
    fs,
    io::{self, ErrorKind},
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{
    net::{UnixListener, UnixStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use vmgate_proto::read_wake::ReadWakeStream;

use super::{
    accept::{Entrance, OutOfFds},
    conn::{ApiConn, ApiStream},
};
use crate::auth::{Peer, UnixPeer};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "Another vmgated is already serving on {0}; stop it first, or give this one another unix_sock_dir"
    )]
    InUse(PathBuf),
    #[error(
        "{0} exists and is not a socket; refusing to remove it (move it away or change unix_sock_dir)"
    )]
    NotASocket(PathBuf),
    #[error("Cannot serve the socket systemd passed ({socket}): {source}")]
    Adopt {
        socket: String,
        #[source]
        source: io::Error,
    },
    #[error("Cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Cannot set mode {mode:04o} on {path}: {source}")]
    Mode {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "Cannot listen for TLS on {addr}: {source}; is another vmgated or libvirtd using that \
         port? Change tls_port or listen_addr"
    )]
    Tcp {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("Cannot resolve listen_addr {addr}: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("Unknown unix_sock_group {0:?}: no such group on this host")]
    UnknownGroup(String),
    #[error("Cannot give {path} to group {group}: {source}")]
    Group {
        path: PathBuf,
        group: String,
        #[source]
        source: nix::Error,
    },
}

/// One socket to serve.
#[derive(Clone, Debug)]
pub struct SocketSpec {
    pub path: PathBuf,
    pub mode: u32,
    pub group: Option<String>,
    pub readonly: bool,
}

/// A listening socket. One the daemon bound is removed from the filesystem when dropped;
/// one systemd passed stays, as systemd owns it.
pub struct BoundSocket {
    listener: UnixListener,
    spec: SocketSpec,
    unlink_on_drop: bool,
}

impl BoundSocket {
    /// Its path (for logs); `@name` for an abstract socket systemd passed.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            let _ = fs::remove_file(&self.spec.path);
        }
    }
}

/// Serves `passed`, the sockets systemd passed under this socket's name, as `spec.readonly`
/// says; binds `spec` when none were passed.
pub fn bind_or_adopt(
    spec: SocketSpec,
    passed: Vec<std::os::unix::net::UnixListener>,
) -> Result<Vec<BoundSocket>, ListenError> {
    if passed.is_empty() {
        return Ok(vec![bind(spec)?]);
    }
    passed
        .into_iter()
        .map(|listener| adopt(listener, spec.readonly))
        .collect()
}

/// Serves a listening socket systemd passed. Its path, mode and group are the socket
/// unit's; whether it is read-only comes from its name, which the caller turned into
/// `readonly`.
pub fn adopt(
    listener: std::os::unix::net::UnixListener,
    readonly: bool,
) -> Result<BoundSocket, ListenError> {
    let path = listener
        .local_addr()
        .map(|addr| shown_addr(&addr))
        .unwrap_or_else(|_| PathBuf::from("(unknown address)"));
    let adopted = listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener));
    let listener = adopted.map_err(|source| ListenError::Adopt {
        socket: path.display().to_string(),
        source,
    })?;
    Ok(BoundSocket {
        listener,
        spec: SocketSpec {
            path,
            mode: 0,
            group: None,
            readonly,
        },
        unlink_on_drop: false,
    })
}

fn shown_addr(addr: &std::os::unix::net::SocketAddr) -> PathBuf {
    use std::os::linux::net::SocketAddrExt;
    if let Some(path) = addr.as_pathname() {
        return path.to_owned();
    }
    match addr.as_abstract_name() {
        Some(name) => PathBuf::from(format!("@{}", String::from_utf8_lossy(name))),
        None => PathBuf::from("(unnamed)"),
    }
}

/// Binds `spec.path`, removing a stale socket left by a daemon that died, but refusing if a
/// live one answers there.
pub fn bind(spec: SocketSpec) -> Result<BoundSocket, ListenError> {
    let path = &spec.path;
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| ListenError::Bind {
        path: path.clone(),
        source,
    })?;
    let bound = BoundSocket {
        listener,
        spec,
        unlink_on_drop: true,
    };
    let path = &bound.spec.path;
    if let Some(group) = &bound.spec.group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| ListenError::UnknownGroup(group.clone()))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(|source| ListenError::Group {
            path: path.clone(),
            group: group.clone(),
            source,
        })?;
    }
    let mode = bound.spec.mode;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        ListenError::Mode {
            path: path.clone(),
            mode,
            source,
        }
    })?;
    Ok(bound)
}

fn remove_stale(path: &Path) -> Result<(), ListenError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::Bind {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused || e.kind() == ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "removing stale socket");
            match fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(ListenError::Bind {
                    path: path.to_owned(),
                    source: e,
                }),
                _ => Ok(()),
            }
        }
        Err(source) => Err(ListenError::Bind {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Accepts on `socket` until `stop`, sending connections to `out`. A client over
/// `max_clients` is told so and closed, as libvirtd drops clients over max_clients.
pub async fn accept_loop(
    socket: BoundSocket,
    entrance: Arc<Entrance>,
    out: mpsc::Sender<ApiConn>,
    stop: CancellationToken,
) {
    let readonly = socket.spec.readonly;
    let acceptor = entrance.acceptor(
        format!("API socket {}", socket.spec.path.display()),
        if readonly {
            OutOfFds::Shed
        } else {
            OutOfFds::Serve
        },
    );
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = acceptor.next(&socket.listener) => accepted,
        };
        let stream = accepted.stream;
        let slot = match entrance.admission.client_slot(!readonly) {
            Ok(slot) => slot,
            Err(refusal) => {
                entrance
                    .refusals
                    .refuse(refusal, async move { Some(stream) });
                continue;
            }
        };
        let peer = match peer_of(&stream, socket.spec.readonly) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::warn!("cannot read peer credentials: {e}");
                continue;
            }
        };
        let stream = match stream.into_std().and_then(ReadWakeStream::new) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("cannot register a client's socket: {e}");
                continue;
            }
        };
        tracing::debug!(uid = peer.uid, pid = ?peer.pid, readonly = peer.readonly, "client connected");
        let conn = ApiConn::new(ApiStream::Unix(stream), Peer::Unix(peer), slot)
            .spending(accepted.reserve);
        if out.send(conn).await.is_err() {
            break;
        }
    }
    // Dropping `socket` here removes the socket file: new clients are refused at once. (A
    // socket systemd passed stays; new clients wait in its backlog for the next start.)
}

fn peer_of(stream: &UnixStream, readonly: bool) -> io::Result<UnixPeer> {
    let cred = stream.peer_cred()?;
    let pid = cred.pid();
    Ok(UnixPeer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid,
        pid_start_time: pid.and_then(process_start_time),
        readonly,
    })
}

/// Field 22 of /proc/PID/stat (after the parenthesised command name, which may hold spaces).
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_readable() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some_and(|t| t > 0));
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let spec = SocketSpec {
            path: path.clone(),
            mode: 0o700,
            group: None,
            readonly: false,
        };
        // A socket file nobody listens on: stale.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let live = bind(spec.clone()).expect("stale socket replaced");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(matches!(bind(spec.clone()), Err(ListenError::InUse(_))));
        drop(live);
        assert!(!path.exists(), "dropping the socket removes it");
        fs::write(&path, b"not a socket").expect("write");
        assert!(matches!(bind(spec), Err(ListenError::NotASocket(_))));
    }

    #[tokio::test]
    async fn a_passed_socket_is_served_and_left_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passed");
        let passed = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let spec = SocketSpec {
            path: dir.path().join("configured"),
            mode: 0o700,
            group: Some("no-such-group-here".into()),
            readonly: true,
        };
        let sockets = bind_or_adopt(spec, vec![passed]).expect("adopted");
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].path(), path);
        assert!(sockets[0].spec.readonly);
        let client = UnixStream::connect(&path).await.expect("connect");
        let (server, _) = sockets[0].listener.accept().await.expect("accept");
        drop((client, server));
        drop(sockets);
        assert!(path.exists(), "systemd's socket is not unlinked");
        assert!(!dir.path().join("configured").exists(), "nothing bound");
    }
}
