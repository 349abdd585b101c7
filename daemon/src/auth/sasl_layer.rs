//! A SASL security layer around a byte stream: what a connection carries after a login
//! that negotiated integrity or confidentiality (GSSAPI on a console without TLS).
//!
//! On the wire every packet is a 4-byte big-endian length and one token of the layer
//! (Cyrus SASL's framing, which QEMU and gtk-vnc use). [`LayeredStream`] turns that into
//! a plain byte stream for the RFB code above it: reads unwrap whole packets, writes are
//! cut into pieces whose tokens fit the peer's advertised buffer. Memory is bounded: at
//! most one incoming packet (the size this side advertised) and one outgoing batch are
//! held, and a packet announcing more than advertised ends the connection.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Room left in each outgoing piece for the token's header, checksum and padding.
const WRAP_HEADROOM: usize = 128;

/// The most plain bytes one write takes, so the ciphertext held stays small.
const MAX_WRITE: usize = 64 * 1024;

/// Why a layer could not wrap or unwrap.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot wrap data for the security layer: {0}")]
    Wrap(String),
    #[error("cannot unwrap data from the security layer: {0}")]
    Unwrap(String),
}

/// A negotiated security layer: wraps and unwraps single tokens.
pub trait SecurityLayer: Send + 'static {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, LayerError>;
    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, LayerError>;
    /// The largest token the peer accepts.
    fn peer_max(&self) -> usize;
    /// The largest token this side accepts (what it advertised).
    fn own_max(&self) -> usize;
}

/// Which security layers a login may end with, from what protects the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerPolicy {
    /// Nothing protects the transport (RFB type 20 on TCP): confidentiality only, which
    /// Kerberos gives with at least 56 bits of strength, as QEMU requires.
    Confidentiality,
    /// TLS protects the transport (VeNCrypt X509SASL): any layer, as the client likes.
    Any,
    /// The transport carries HTTP/2, which a layer cannot wrap (the API): none.
    NoneOnly,
}

/// A stream whose bytes cross the wire wrapped by a security layer.
pub struct LayeredStream<S> {
    inner: S,
    layer: Box<dyn SecurityLayer>,
    /// Wire bytes read but not yet unwrapped, in `incoming[..filled]`: at most one packet
    /// and its length (plus, at the start, what arrived with the login). Allocated once.
    incoming: Vec<u8>,
    filled: usize,
    /// Unwrapped bytes not yet read by the caller, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// Framed tokens not yet written, from `outgoing_at` on.
    outgoing: Vec<u8>,
    outgoing_at: usize,
}

impl<S> LayeredStream<S> {
    /// `early` is what was read from `inner` past the end of the login: already wrapped.
    pub fn new(inner: S, layer: Box<dyn SecurityLayer>, early: Vec<u8>) -> Self {
        let mut incoming = vec![0; (4 + layer.own_max()).max(early.len())];
        incoming[..early.len()].copy_from_slice(&early);
        LayeredStream {
            inner,
            layer,
            incoming,
            filled: early.len(),
            plain: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            outgoing_at: 0,
        }
    }

    /// Unwraps the first whole packet of `incoming`, if there is one.
    fn unwrap_packet(&mut self) -> io::Result<bool> {
        let Some(header) = self.incoming[..self.filled].first_chunk::<4>() else {
            return Ok(false);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len == 0 || len > self.layer.own_max() {
            return Err(invalid(format!(
                "security layer packet of {len} bytes; the negotiated maximum is {}",
                self.layer.own_max()
            )));
        }
        if self.filled < 4 + len {
            return Ok(false);
        }
        let plain = self
            .layer
            .unwrap(&self.incoming[4..4 + len])
            .map_err(|e| invalid(e.to_string()))?;
        self.incoming.copy_within(4 + len..self.filled, 0);
        self.filled -= 4 + len;
        self.plain = plain;
        self.plain_at = 0;
        Ok(true)
    }

    /// Wraps `buf` into framed tokens that each fit the peer's buffer.
    fn wrap_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let peer_max = self.layer.peer_max();
        let mut piece = peer_max.saturating_sub(WRAP_HEADROOM).max(1);
        let mut rest = buf;
        while !rest.is_empty() {
            let take = piece.min(rest.len());
            let token = self
                .layer
                .wrap(&rest[..take])
                .map_err(|e| io::Error::other(e.to_string()))?;
            if token.len() > peer_max {
                if take == 1 {
                    return Err(io::Error::other(format!(
                        "the peer's buffer of {peer_max} bytes cannot hold one wrapped byte"
                    )));
                }
                piece = take / 2;
                continue;
            }
            let len = u32::try_from(token.len()).map_err(io::Error::other)?;
            self.outgoing.extend_from_slice(&len.to_be_bytes());
            self.outgoing.extend_from_slice(&token);
            rest = &rest[take..];
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LayeredStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.plain_at < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_at);
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                return Poll::Ready(Ok(()));
            }
            if this.unwrap_packet()? {
                continue;
            }
            // Read no further than the end of the packet under way, so the buffer never
            // holds more than one packet.
            // (unwrap_packet checked that an announced length fits the buffer.)
            let want = match this.incoming[..this.filled].first_chunk::<4>() {
                Some(header) => 4 + u32::from_be_bytes(*header) as usize,
                None => 4,
            };
            let mut read = ReadBuf::new(&mut this.incoming[this.filled..want]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let got = read.filled().len();
            if got == 0 {
                if this.filled == 0 {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a security layer packet",
                )));
            }
            this.filled += got;
        }
    }
}

impl<S: AsyncWrite + Unpin> LayeredStream<S> {
    /// Writes out what is wrapped but unsent.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing_at < self.outgoing.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.outgoing[self.outgoing_at..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing_at += n;
        }
        self.outgoing.clear();
        self.outgoing_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LayeredStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        let take = buf.len().min(MAX_WRITE);
        this.wrap_all(&buf[..take])?;
        // The bytes are taken whether or not they all went out: what the socket would not
        // take now goes at the next write or flush, which callers must make (as with TLS).
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests;
