//! Where a console listens: a TCP port on its listen address (the given port, or with
//! autoport one from `remote_display_port_min` to `_max` that `vnc::ports` picks), or a
//! UNIX socket at `<unix_sock_dir>/vnc/<guest>.sock` (mode 0660, `unix_sock_group`), in a
//! directory that group may pass through but not list (0710, group `unix_sock_group`).

use std::{
    fs, io,
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use tokio::net::{TcpListener, TcpSocket, UnixListener};
use vmgate_config::domain::Graphics;

use super::GatewayError;
use crate::vnc::{
    ports::{AcquireError, PortLease},
    settings::VncSettings,
};

/// `<unix_sock_dir>/vnc`: the group may pass through to a socket whose name it knows (from
/// `vmgate domdisplay`), but not list the directory, which would name every guest.
const SOCKET_DIR_MODE: u32 = 0o710;

/// Pending connections the kernel queues per console, as `TcpListener::bind` sets it.
const LISTEN_BACKLOG: u32 = 1024;

/// A bound console listener.
pub enum ConsoleListener {
    Tcp(TcpListener, TcpBinding),
    /// Removed from the filesystem when the gateway closes.
    Unix(UnixListener, PathBuf),
}

/// Where a TCP console listens, and its port's hold in the autoport allocator, given back
/// when the listener is dropped.
pub struct TcpBinding {
    addr: SocketAddr,
    _lease: PortLease,
}

/// Where clients reach a console, for vncdisplay / domdisplay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ConsoleListener {
    pub fn address(&self) -> ConsoleAddress {
        match self {
            ConsoleListener::Tcp(_, binding) => ConsoleAddress::Tcp(binding.addr),
            ConsoleListener::Unix(_, path) => ConsoleAddress::Unix(path.clone()),
        }
    }
}

pub async fn bind(
    domain: &str,
    graphics: &Graphics,
    settings: &VncSettings,
) -> Result<ConsoleListener, GatewayError> {
    if settings.auto_unix_socket {
        return bind_unix(domain, settings);
    }
    let host = graphics.listen.as_deref().unwrap_or(&settings.listen);
    let ip: IpAddr = host.parse().map_err(|_| {
        GatewayError::Listen(format!("listen address {host:?} is not an IP address"))
    })?;
    let bound = match graphics.port {
        Some(port) if !graphics.effective_autoport() => bind_port(ip, port).map(|listener| {
            let lease = settings.autoport.hold(port);
            (listener, lease)
        }),
        _ => settings
            .autoport
            .acquire(|port| bind_port(ip, port))
            .map_err(|e| match e {
                AcquireError::Exhausted => io::Error::from(io::ErrorKind::AddrInUse),
                AcquireError::Bind(_, e) => e,
            }),
    };
    let explicit = graphics.port.filter(|_| !graphics.effective_autoport());
    let (listener, lease) = bound.map_err(|e| {
        GatewayError::Listen(match explicit {
            Some(port) if e.kind() == io::ErrorKind::AddrInUse => {
                format!("port {port} on {ip} is in use; pick another port or set autoport = true")
            }
            Some(port) => format!("cannot listen on {ip}:{port}: {e}"),
            None if e.kind() == io::ErrorKind::AddrInUse => format!(
                "no free port on {ip} between {} and {}; widen remote_display_port_min/_max",
                settings.port_min, settings.port_max
            ),
            None => format!("cannot listen on {ip} for autoport: {e}"),
        })
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Listen(e.to_string()))?;
    Ok(ConsoleListener::Tcp(
        listener,
        TcpBinding {
            addr,
            _lease: lease,
        },
    ))
}

/// Binds `ip:port` as `TcpListener::bind` does, but without an await, so the allocator may
/// call it under its lock.
fn bind_port(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(ip, port))?;
    socket.listen(LISTEN_BACKLOG)
}

fn bind_unix(domain: &str, settings: &VncSettings) -> Result<ConsoleListener, GatewayError> {
    let dir = settings.unix_sock_dir.join("vnc");
    let io_err = |what: &str, e: io::Error| GatewayError::Listen(format!("{what}: {e}"));
    let gid = match &settings.unix_sock_group {
        Some(group) => Some(
            nix::unistd::Group::from_name(group)
                .ok()
                .flatten()
                .ok_or_else(|| GatewayError::Listen(format!("unknown unix_sock_group {group:?}")))?
                .gid,
        ),
        None => None,
    };
    let chown = |path: &Path| match gid {
        Some(gid) => nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| GatewayError::Listen(format!("cannot chown {}: {e}", path.display()))),
        None => Ok(()),
    };
    fs::create_dir_all(&dir).map_err(|e| io_err(&format!("cannot create {}", dir.display()), e))?;
    // The daemon's private umask made the directory 0700, which kept the group out of the
    // sockets it may use. Set on every bind, so a directory an older daemon made is fixed.
    chown(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(SOCKET_DIR_MODE))
        .map_err(|e| io_err(&format!("cannot chmod {}", dir.display()), e))?;
    let path = dir.join(format!("{domain}.sock"));
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err(
                &format!("cannot remove the old {}", path.display()),
                e,
            ));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| io_err(&format!("cannot bind {}", path.display()), e))?;
    chown(&path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o660))
        .map_err(|e| io_err(&format!("cannot chmod {}", path.display()), e))?;
    Ok(ConsoleListener::Unix(listener, path))
}
