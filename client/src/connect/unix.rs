//! The UNIX-socket transport: which socket a URI means, and an HTTP/2 channel over it. The
//! socket is connected here first, so the OS error (missing, refused, permission denied) is
//! classified from the real `connect(2)` result rather than dug out of a transport error.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use super::{ConnectError, direct::DirectChannel};
use crate::uri::{ConnectUri, Driver};

/// The daemon's read-write socket.
pub const DEFAULT_SOCKET: &str = "/run/vmgate/vmgate-sock";
/// The daemon's read-only socket.
pub const DEFAULT_RO_SOCKET: &str = "/run/vmgate/vmgate-sock-ro";

/// The socket to use: `?socket=` when given, else the default read-write or read-only one.
pub fn socket_path(uri: &ConnectUri, readonly: bool) -> PathBuf {
    match &uri.socket {
        Some(p) => p.clone(),
        None if readonly => PathBuf::from(DEFAULT_RO_SOCKET),
        None => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// Connects to `path` and opens an HTTP/2 connection on that stream. If the connection has
/// closed by a later call, that call dials the same path again.
pub(super) async fn channel(
    path: &Path,
    driver: Driver,
    readonly: bool,
) -> Result<DirectChannel, ConnectError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|err| classify(path, driver, readonly, err))?;
    DirectChannel::handshake(stream, path)
        .await
        .map_err(|e| ConnectError::Handshake {
            target: super::Target::Socket(path.to_path_buf()),
            detail: crate::error::error_chain(&*e),
        })
}

fn classify(path: &Path, driver: Driver, readonly: bool, err: io::Error) -> ConnectError {
    let path = path.to_path_buf();
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ConnectError::NotRunning { path, driver, err }
        }
        io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied { path, readonly },
        _ => ConnectError::Io { path, err },
    }
}
