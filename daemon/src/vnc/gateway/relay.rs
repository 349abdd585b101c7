//! After a client is admitted: open the guest's own RFB server, do its handshake as a
//! client (security None, always shared, since the gateway applies the share policy
//! itself), hand the client the guest's ServerInit, then copy bytes both ways through
//! fixed-size buffers until either side closes or the session is cut.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    driver::{ConsoleBackend, ConsoleStream},
    vnc::{
        rfb::{
            ClientConfig, MAX_NAME_LEN, RfbError,
            io::{RfbStream, client_handshake},
        },
        sessions::{Counters, Cut},
    },
};

/// The most read at a time in each direction: large enough for a full framebuffer update
/// to move in a few syscalls (a 640x480 one is 1.2 MB), bounded so a session's memory is
/// too.
const RELAY_CHUNK: usize = 256 * 1024;

/// Where each direction's buffer starts: an idle session (most of them) stays small, a
/// busy one doubles up to `RELAY_CHUNK` as its reads fill the buffer, and goes back to
/// this size once it has waited [`IDLE_SHRINK`] for more, so a session that once streamed
/// full frames does not keep `RELAY_CHUNK` while it idles.
const RELAY_START: usize = 4 * 1024;

/// How long a direction with a grown buffer waits for bytes before it gives the memory
/// back. Back-to-back updates never wait this long; a viewer looking at a still screen
/// does.
const IDLE_SHRINK: Duration = Duration::from_secs(1);

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    ClientClosed,
    GuestClosed,
    Cut,
    Error(std::io::Error),
}

/// Connects to the guest's console and completes its handshake; returns the stream, the
/// ServerInit bytes to send the client, and anything the guest sent after it.
pub async fn open_backend(
    backend: &dyn ConsoleBackend,
) -> Result<(Box<dyn ConsoleStream>, Vec<u8>, Vec<u8>), RfbError> {
    let stream = backend.connect().await?;
    let mut conn = RfbStream::new(stream, MAX_NAME_LEN + 64);
    let config = ClientConfig {
        password: None,
        shared: true,
    };
    let session = client_handshake(&mut conn, &config).await?;
    let server_init = session.server_init.encode()?;
    let (stream, leftover) = conn.into_parts();
    Ok((stream, server_init, leftover))
}

/// Copies until one side closes or `cut` fires. `to_guest`/`to_client` are bytes already
/// read from one side that the other must get first.
pub async fn relay<C>(
    client: C,
    guest: Box<dyn ConsoleStream>,
    to_guest: Vec<u8>,
    to_client: Vec<u8>,
    counters: &Counters,
    cut: &Cut,
) -> RelayEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (client_r, client_w) = tokio::io::split(client);
    let (guest_r, guest_w) = tokio::io::split(guest);
    let upstream = pump(client_r, guest_w, to_guest, &counters.from_client);
    let downstream = pump(guest_r, client_w, to_client, &counters.to_client);
    tokio::select! {
        _ = cut.cancelled() => RelayEnd::Cut,
        r = upstream => r.map_or_else(RelayEnd::Error, |()| RelayEnd::ClientClosed),
        r = downstream => r.map_or_else(RelayEnd::Error, |()| RelayEnd::GuestClosed),
    }
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    first: Vec<u8>,
    count: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !first.is_empty() {
        to.write_all(&first).await?;
        to.flush().await?;
        count.fetch_add(first.len() as u64, Ordering::Relaxed);
    }
    drop(first);
    let mut buf = RelayBuffer::new();
    loop {
        let read = if buf.is_grown() {
            // Reading is cancel safe: nothing is lost when the timeout drops the read.
            match tokio::time::timeout(IDLE_SHRINK, from.read(buf.space())).await {
                Ok(read) => read,
                Err(_idle) => {
                    buf.shrink();
                    from.read(buf.space()).await
                }
            }
        } else {
            from.read(buf.space()).await
        };
        let n = match read {
            Ok(n) => n,
            // Many VNC clients close TLS without close_notify: that is an ordinary close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        // Flushed before the next read: TLS and a SASL layer take bytes into their own
        // buffers, and the end of an update must reach the client while the guest waits.
        to.write_all(buf.filled(n)).await?;
        to.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        buf.after_read(n);
    }
}

/// One direction's buffer: `RELAY_START` bytes, doubled each time a read fills it (up to
/// `RELAY_CHUNK`), back to `RELAY_START` when the direction idles.
struct RelayBuffer(Vec<u8>);

impl RelayBuffer {
    fn new() -> RelayBuffer {
        RelayBuffer(vec![0; RELAY_START])
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn filled(&self, n: usize) -> &[u8] {
        self.0.get(..n).unwrap_or(&self.0)
    }

    fn is_grown(&self) -> bool {
        self.0.len() > RELAY_START
    }

    fn after_read(&mut self, n: usize) {
        let len = self.0.len();
        if n == len && len < RELAY_CHUNK {
            self.0.resize(len * 2, 0);
        }
    }

    fn shrink(&mut self) {
        self.0 = vec![0; RELAY_START];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_direction_grows_to_the_chunk_and_an_idle_one_goes_back_to_the_start() {
        let mut buf = RelayBuffer::new();
        assert!(!buf.is_grown());
        while buf.space().len() < RELAY_CHUNK {
            let full = buf.space().len();
            buf.after_read(full);
        }
        assert_eq!(buf.space().len(), RELAY_CHUNK);
        buf.after_read(RELAY_CHUNK);
        assert_eq!(buf.space().len(), RELAY_CHUNK, "never past the chunk");
        buf.after_read(12);
        assert_eq!(
            buf.space().len(),
            RELAY_CHUNK,
            "a small read mid-stream keeps it"
        );
        assert!(buf.is_grown());
        buf.shrink();
        assert_eq!(buf.space().len(), RELAY_START);
    }

    #[tokio::test(start_paused = true)]
    async fn a_direction_that_idles_with_a_grown_buffer_loses_no_byte() {
        let (mut guest, relay_end) = tokio::io::duplex(RELAY_CHUNK * 2);
        let (client_end, mut client) = tokio::io::duplex(RELAY_CHUNK * 2);
        let pumping = tokio::spawn(async move {
            let count = AtomicU64::new(0);
            pump(relay_end, client_end, Vec::new(), &count).await
        });
        // A burst that grows the buffer to the chunk, then silence past IDLE_SHRINK (the
        // read in flight is dropped and the buffer shrunk), then more bytes: all arrive,
        // in order.
        let burst = vec![7u8; RELAY_CHUNK * 2];
        tokio::io::AsyncWriteExt::write_all(&mut guest, &burst)
            .await
            .expect("write");
        let mut got = vec![0u8; burst.len()];
        client.read_exact(&mut got).await.expect("burst relayed");
        assert_eq!(got, burst);
        tokio::time::sleep(IDLE_SHRINK * 3).await;
        tokio::io::AsyncWriteExt::write_all(&mut guest, b"after")
            .await
            .expect("write");
        let mut tail = [0u8; 5];
        client.read_exact(&mut tail).await.expect("tail relayed");
        assert_eq!(&tail, b"after");
        drop(guest);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("closed");
        assert!(rest.is_empty());
        assert!(pumping.await.expect("pump task").is_ok());
    }
}
