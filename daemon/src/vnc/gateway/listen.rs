//! Where a console listens: a TCP port on its listen address (the given port, or with
//! autoport the first free one from `remote_display_port_min` to `_max`), or a UNIX socket
//! at `<unix_sock_dir>/vnc/<guest>.sock` (mode 0660, `unix_sock_group`).

use std::{
    fs, io,
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
};

use tokio::net::{TcpListener, UnixListener};
use vmgate_config::domain::Graphics;

use super::GatewayError;
use crate::vnc::settings::VncSettings;

/// A bound console listener.
pub enum ConsoleListener {
    Tcp(TcpListener, SocketAddr),
    /// Removed from the filesystem when the gateway closes.
    Unix(UnixListener, PathBuf),
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
            ConsoleListener::Tcp(_, addr) => ConsoleAddress::Tcp(*addr),
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
    let ports: Vec<u16> = match graphics.port {
        Some(port) if !graphics.effective_autoport() => vec![port],
        _ => (settings.port_min..=settings.port_max).collect(),
    };
    let mut last = None;
    for port in ports.iter().copied() {
        match TcpListener::bind((ip, port)).await {
            Ok(listener) => {
                let addr = listener
                    .local_addr()
                    .map_err(|e| GatewayError::Listen(e.to_string()))?;
                return Ok(ConsoleListener::Tcp(listener, addr));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => {
                return Err(GatewayError::Listen(format!(
                    "cannot listen on {ip}:{port}: {e}"
                )));
            }
        }
    }
    Err(GatewayError::Listen(match (ports.as_slice(), last) {
        ([port], _) => {
            format!("port {port} on {ip} is in use; pick another port or set autoport = true")
        }
        _ => format!(
            "no free port on {ip} between {} and {}; widen remote_display_port_min/_max",
            settings.port_min, settings.port_max
        ),
    }))
}

fn bind_unix(domain: &str, settings: &VncSettings) -> Result<ConsoleListener, GatewayError> {
    let dir = settings.unix_sock_dir.join("vnc");
    let io_err = |what: &str, e: io::Error| GatewayError::Listen(format!("{what}: {e}"));
    fs::create_dir_all(&dir).map_err(|e| io_err(&format!("cannot create {}", dir.display()), e))?;
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
    if let Some(group) = &settings.unix_sock_group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| GatewayError::Listen(format!("unknown unix_sock_group {group:?}")))?
            .gid;
        nix::unistd::chown(&path, None, Some(gid))
            .map_err(|e| GatewayError::Listen(format!("cannot chown {}: {e}", path.display())))?;
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o660))
        .map_err(|e| io_err(&format!("cannot chmod {}", path.display()), e))?;
    Ok(ConsoleListener::Unix(listener, path))
}
