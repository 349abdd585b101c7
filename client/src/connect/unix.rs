//! The UNIX-socket transport: which socket a URI means, and a tonic channel over it. The
//! socket is connected here first, so the OS error (missing, refused, permission denied) is
//! classified from the real `connect(2)` result rather than dug out of a transport error.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::ConnectError;
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

/// Connects to `path` and builds a channel over that stream. If the channel ever needs a new
/// connection later, it dials the same path again.
pub(super) async fn channel(
    path: &Path,
    driver: Driver,
    readonly: bool,
) -> Result<Channel, ConnectError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|err| classify(path, driver, readonly, err))?;
    let first = Arc::new(Mutex::new(Some(stream)));
    let dial = path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let first = first.lock().ok().and_then(|mut s| s.take());
        let dial = dial.clone();
        async move {
            let stream = match first {
                Some(s) => s,
                None => UnixStream::connect(&dial).await?,
            };
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    // The authority is a placeholder: the connector ignores it.
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(connector)
        .await
        .map_err(|e| ConnectError::Handshake {
            target: super::Target::Socket(path.to_path_buf()),
            detail: crate::error::error_chain(&e),
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
