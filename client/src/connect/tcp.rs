//! Plain TCP to vmgated (`qemu+tcp://HOST[:PORT]/system`, libvirt's port 16509): nothing
//! protects the connection, so the daemon offers it only a SASL login (and that only in
//! test setups with `tcp_min_ssf = 0`); the login warns before it sends anything.

use std::io;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{ConnectError, Target};

/// libvirt's plain TCP port, used when the URI names none.
pub const DEFAULT_TCP_PORT: u16 = 16509;

/// Connects to the first address of `host` that answers.
async fn dial(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub(super) async fn channel(host: &str, port: u16) -> Result<Channel, ConnectError> {
    let target = Target::Tcp {
        host: host.to_owned(),
        port,
    };
    let (host, port_owned) = (host.to_owned(), port);
    let connector = tower::service_fn(move |_: Uri| {
        let host = host.clone();
        async move { dial(&host, port_owned).await.map(TokioIo::new) }
    });
    Endpoint::from_static("http://vmgated:16509")
        .connect_with_connector(connector)
        .await
        .map_err(|e| ConnectError::Handshake {
            target,
            detail: crate::error::error_chain(&e),
        })
}
