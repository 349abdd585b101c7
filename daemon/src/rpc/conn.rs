//! One accepted API connection, whatever transport it came by: the byte stream, the `Peer`
//! the transport established (the server puts it in every request's extensions for the
//! auth layer), the `max_clients` slot it holds until it closes, and while it is not yet
//! authenticated its place among the `max_anonymous_clients` (whose idleness its reads
//! stamp). The UNIX, TLS and TCP listeners all feed these to the one server.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::server::TlsStream;
use vmgate_proto::read_wake::ReadWakeStream;

use std::sync::Arc;

use super::{
    accept::ReserveSpent,
    admission::{Activity, ClientSlot, Unauthenticated},
};
use crate::auth::{Peer, access::ConnPolkit, login::ConnLogin};

/// The stream under a connection.
pub enum ApiStream {
    /// Woken for reads only: a call's answer being read by the client is no reason to
    /// wake the daemon.
    Unix(ReadWakeStream),
    /// Boxed: a rustls connection is large, and most connections are local.
    Tls(Box<TlsStream<TcpStream>>),
    /// Plain TCP (`listen_tcp`), usable only after a SASL login.
    Tcp(TcpStream),
}

/// What the server puts in every request's extensions: who the transport says the peer is,
/// and the SASL login the connection must make (None when its transport needs none).
#[derive(Clone)]
pub struct ConnInfo {
    pub peer: Peer,
    pub login: Option<Arc<ConnLogin>>,
    /// The polkit check a UNIX connection must pass (`auth_unix_* = "polkit"`).
    pub polkit: Option<Arc<ConnPolkit>>,
}

/// An accepted, identified connection holding one client slot.
pub struct ApiConn {
    stream: ApiStream,
    peer: Peer,
    login: Option<Arc<ConnLogin>>,
    polkit: Option<Arc<ConnPolkit>>,
    unauthenticated: Option<Unauthenticated>,
    /// Stamped by reads until the connection authenticates.
    activity: Option<Activity>,
    _slot: ClientSlot,
    _reserve: Option<ReserveSpent>,
}

impl ApiConn {
    pub fn new(stream: ApiStream, peer: Peer, slot: ClientSlot) -> ApiConn {
        ApiConn {
            stream,
            peer,
            login: None,
            polkit: None,
            unauthenticated: None,
            activity: None,
            _slot: slot,
            _reserve: None,
        }
    }

    /// Marks a connection served on the descriptor reserve, refilled when it closes.
    pub fn spending(mut self, reserve: Option<ReserveSpent>) -> ApiConn {
        self._reserve = reserve;
        self
    }

    /// Counts the connection as unauthenticated until it logs in or closes.
    pub fn set_unauthenticated(&mut self, unauthenticated: Unauthenticated) {
        self.activity = Some(unauthenticated.activity());
        self.unauthenticated = Some(unauthenticated);
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.unauthenticated.is_some()
    }

    /// Its transport authenticated it, and no login follows.
    pub fn authenticated(&mut self) {
        self.unauthenticated = None;
        self.activity = None;
    }

    /// The guard the server holds until the login succeeds; reads keep stamping activity.
    pub fn take_unauthenticated(&mut self) -> Option<Unauthenticated> {
        self.unauthenticated.take()
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Requires a SASL login before any call but `Auth.*`.
    pub fn require_login(&mut self, login: Arc<ConnLogin>) {
        self.login = Some(login);
    }

    /// Requires polkit's yes before any call.
    pub fn require_polkit(&mut self, check: ConnPolkit) {
        self.polkit = Some(Arc::new(check));
    }

    /// What every call on this connection carries.
    pub fn info(&self) -> ConnInfo {
        ConnInfo {
            peer: self.peer.clone(),
            login: self.login.clone(),
            polkit: self.polkit.clone(),
        }
    }
}

/// Calls `$method` on whichever stream the connection has.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match &mut $self.stream {
            ApiStream::Unix($s) => {
                let $s = Pin::new($s);
                $call
            }
            ApiStream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
            ApiStream::Tcp($s) => {
                let $s = Pin::new($s);
                $call
            }
        }
    };
}

impl AsyncRead for ApiConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = delegate!(self, s => s.poll_read(cx, buf));
        if let Some(activity) = &self.activity
            && buf.filled().len() > before
        {
            activity.touch();
        }
        read
    }
}

impl AsyncWrite for ApiConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            ApiStream::Unix(s) => s.is_write_vectored(),
            ApiStream::Tls(s) => s.is_write_vectored(),
            ApiStream::Tcp(s) => s.is_write_vectored(),
        }
    }
}
