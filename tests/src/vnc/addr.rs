//! Where a console is: a guest's display as the real CLI prints it (`vmgate vncdisplay`:
//! `HOST:DISPLAY` or `HOST::PORT`), and [`ConsoleAddr`], the TCP or UNIX address an
//! [`RfbClient`] dials.
//!
//! [`RfbClient`]: super::RfbClient

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::Context;
use tokio::net::{TcpStream, UnixStream};

use super::Io;
use crate::TestDaemon;

/// The base of VNC display numbers: display N is TCP port 5900 + N.
pub const VNC_BASE_PORT: u16 = 5900;

/// The TCP port of `name`'s console, from `vmgate vncdisplay` (`HOST:DISPLAY` or
/// `HOST::PORT`).
#[track_caller]
pub fn display_port(d: &TestDaemon, name: &str) -> u16 {
    let out = d.vmgate(&["vncdisplay", name]);
    let text = out.ok().trim().to_owned();
    parse_display(&text).unwrap_or_else(|| panic!("vncdisplay printed {text:?}"))
}

/// The port of `HOST:DISPLAY` or `HOST::PORT`.
pub fn parse_display(text: &str) -> Option<u16> {
    if let Some((_, port)) = text.rsplit_once("::") {
        return port.parse().ok();
    }
    let (_, display) = text.rsplit_once(':')?;
    VNC_BASE_PORT.checked_add(display.parse().ok()?)
}

/// Where an [`RfbClient`](super::RfbClient) connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ConsoleAddr {
    /// `127.0.0.1:port`.
    pub fn local(port: u16) -> ConsoleAddr {
        ConsoleAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Connects (TCP without Nagle's delay): the stream, and this end's address (TCP only).
    pub(super) async fn dial(&self) -> anyhow::Result<(Box<dyn Io>, Option<SocketAddr>)> {
        match self {
            ConsoleAddr::Tcp(a) => {
                let s = TcpStream::connect(a)
                    .await
                    .with_context(|| format!("connect to {a}"))?;
                s.set_nodelay(true)?;
                let local = s.local_addr().ok();
                Ok((Box::new(s), local))
            }
            ConsoleAddr::Unix(p) => {
                let s = UnixStream::connect(p)
                    .await
                    .with_context(|| format!("connect to {}", p.display()))?;
                Ok((Box::new(s), None))
            }
        }
    }
}

impl fmt::Display for ConsoleAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleAddr::Tcp(addr) => write!(f, "{addr}"),
            ConsoleAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl From<u16> for ConsoleAddr {
    fn from(port: u16) -> ConsoleAddr {
        ConsoleAddr::local(port)
    }
}

impl From<SocketAddr> for ConsoleAddr {
    fn from(addr: SocketAddr) -> ConsoleAddr {
        ConsoleAddr::Tcp(addr)
    }
}

impl From<&Path> for ConsoleAddr {
    fn from(path: &Path) -> ConsoleAddr {
        ConsoleAddr::Unix(path.to_owned())
    }
}

impl From<PathBuf> for ConsoleAddr {
    fn from(path: PathBuf) -> ConsoleAddr {
        ConsoleAddr::Unix(path)
    }
}
