//! The thin async layer between a byte stream and the pure RFB codecs.
//!
//! Owns [`RfbStream`], which buffers what it reads up to a fixed bound and feeds the
//! buffer to an incremental decoder until it yields a message, and
//! [`client_handshake`], which drives the client steps of `client.rs` over a
//! stream. No protocol decision is made here; every byte is interpreted by the
//! pure codecs.

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::RfbError;
use super::client::{
    ClientConfig, check_security_result, choose_security, security_choice_bytes, version_reply,
};
use super::init::{ClientInit, ServerInit};
use super::security::{SecurityOffer, SecurityResult, SecurityType, decode_security_offer};
use super::version::ProtocolVersion;
use super::vncauth::{CHALLENGE_LEN, vnc_auth_response};

/// Most bytes asked of the stream in one read.
const READ_CHUNK: usize = 64 * 1024;

/// What a read reserves while little is buffered. Reserving `READ_CHUNK` for every read
/// kept 64 KiB per idle stream (the buffer's capacity outlives what it held), which for a
/// console session behind the test guest was two such buffers; a read now asks for twice
/// what is buffered, from this floor up to `READ_CHUNK`, so a large message still arrives
/// in few reads.
const READ_FLOOR: usize = 4 * 1024;

/// A stream with a bounded read buffer in front of it.
///
/// Reads are cancel-safe: dropping a pending [`RfbStream::next`] loses no bytes,
/// because whatever was read is already in the buffer, so it can sit in a
/// `tokio::select!` next to other events.
#[derive(Debug)]
pub struct RfbStream<S> {
    stream: S,
    buf: Vec<u8>,
    max: usize,
}

impl<S> RfbStream<S> {
    /// `max` bounds the buffer, so it must be at least the longest message expected.
    pub fn new(stream: S, max: usize) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            max,
        }
    }

    /// Changes the bound (e.g. from handshake to framebuffer-update sizes).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Bytes read but not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream and the bytes read ahead of the decoder (e.g. to start TLS on the
    /// stream, after checking that nothing is buffered).
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.buf)
    }
}

impl<S: AsyncRead + Unpin> RfbStream<S> {
    /// The next message per `decode`; `Ok(None)` when the peer closed cleanly between
    /// messages. A close inside a message is [`RfbError::UnexpectedEof`]; a message
    /// that does not fit in the bound is [`RfbError::TooLong`].
    pub async fn next<T>(
        &mut self,
        mut decode: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, RfbError>,
    ) -> Result<Option<T>, RfbError> {
        loop {
            if let Some((msg, used)) = decode(&self.buf)? {
                self.buf.drain(..used.min(self.buf.len()));
                return Ok(Some(msg));
            }
            let room = self.max.saturating_sub(self.buf.len());
            if room == 0 {
                return Err(RfbError::TooLong {
                    what: "buffered message",
                    len: self.buf.len() as u64,
                    max: self.max,
                });
            }
            let chunk = room.min(READ_CHUNK).min(READ_FLOOR.max(2 * self.buf.len()));
            self.buf.reserve(chunk);
            let n = self
                .stream
                .read_buf(&mut (&mut self.buf).limit(chunk))
                .await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(RfbError::UnexpectedEof);
            }
        }
    }

    /// Like [`RfbStream::next`] where a message is mandatory: a clean close is
    /// [`RfbError::Closed`] naming the protocol phase `during`.
    pub async fn expect<T>(
        &mut self,
        during: &'static str,
        decode: impl FnMut(&[u8]) -> Result<Option<(T, usize)>, RfbError>,
    ) -> Result<T, RfbError> {
        self.next(decode).await?.ok_or(RfbError::Closed(during))
    }

    /// Exactly `N` bytes (fixed-size handshake fields).
    pub async fn read_array<const N: usize>(
        &mut self,
        during: &'static str,
    ) -> Result<[u8; N], RfbError> {
        self.expect(during, |b| {
            Ok(b.get(..N)
                .and_then(|s| <[u8; N]>::try_from(s).ok())
                .map(|a| (a, N)))
        })
        .await
    }
}

impl<S: AsyncWrite + Unpin> RfbStream<S> {
    /// Writes and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RfbError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }
}

/// What a completed client handshake agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSession {
    pub version: ProtocolVersion,
    pub security: SecurityType,
    pub server_init: ServerInit,
}

/// The client's side of the version exchange, then the server's security offer (or its
/// refusal); the caller chooses and sends its choice.
pub async fn read_security_offer<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
) -> Result<(ProtocolVersion, SecurityOffer), RfbError> {
    let server_version = conn.read_array("the version exchange").await?;
    let (version, reply) = version_reply(&server_version)?;
    conn.send(&reply).await?;
    let offer = conn
        .expect("the security handshake", |b| {
            decode_security_offer(version, b)
        })
        .await?;
    Ok((version, offer))
}

/// Runs the client side of the handshake up to and including ServerInit, with
/// security None or VNC authentication. Give the stream a bound of at least
/// [`MAX_NAME_LEN`](super::MAX_NAME_LEN) + 24 bytes.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
    config: &ClientConfig,
) -> Result<ClientSession, RfbError> {
    let (version, offer) = read_security_offer(conn).await?;
    let security = choose_security(offer, config)?;
    conn.send(&security_choice_bytes(version, security)).await?;

    if security == SecurityType::VncAuth {
        let challenge: [u8; CHALLENGE_LEN] = conn.read_array("VNC authentication").await?;
        let password = config.password.as_deref().unwrap_or_default();
        conn.send(&vnc_auth_response(password, &challenge)).await?;
    }
    if SecurityResult::follows(version, security) {
        let result = conn
            .expect("the security result", |b| {
                SecurityResult::decode(version, b)
            })
            .await?;
        check_security_result(result)?;
    }

    conn.send(
        &ClientInit {
            shared: config.shared,
        }
        .encode(),
    )
    .await?;
    let server_init = conn
        .expect("the initialisation", ServerInit::decode)
        .await?;
    Ok(ClientSession {
        version,
        security,
        server_init,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_client_message;

    #[tokio::test]
    async fn reads_across_chunks_and_reports_eof() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = RfbStream::new(a, 64);
        let writer = tokio::spawn(async move {
            for byte in [5u8, 1, 0, 2, 0, 3, 5, 0] {
                b.write_all(&[byte]).await?;
            }
            b.shutdown().await
        });
        let first = conn.next(decode_client_message).await.ok().flatten();
        assert!(first.is_some());
        // Two bytes of a second PointerEvent, then EOF.
        assert!(matches!(
            conn.next(decode_client_message).await,
            Err(RfbError::UnexpectedEof)
        ));
        assert!(matches!(writer.await, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn clean_close_and_bound() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut conn = RfbStream::new(a, 64);
        assert!(matches!(conn.next(decode_client_message).await, Ok(None)));

        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = RfbStream::new(a, 16);
        b.write_all(&[6, 0, 0, 0, 0, 0, 0, 20]).await.ok();
        b.write_all(&[b'x'; 20]).await.ok();
        assert!(matches!(
            conn.next(decode_client_message).await,
            Err(RfbError::TooLong { max: 16, .. })
        ));
    }
}
