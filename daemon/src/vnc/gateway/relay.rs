//! After a client is admitted: open the guest's own RFB server, do its handshake as a
//! client (security None, always shared, since the gateway applies the share policy
//! itself), hand the client the guest's ServerInit, then copy bytes both ways through
//! fixed-size buffers until either side closes or the session is cut.

use std::sync::atomic::{AtomicU64, Ordering};

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
/// this size at the first read no larger than it, so a session that once streamed full
/// frames does not keep `RELAY_CHUNK` while it idles.
const RELAY_START: usize = 4 * 1024;

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
    let mut buf = vec![0u8; RELAY_START];
    loop {
        let n = match from.read(&mut buf).await {
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
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        match next_buffer_len(buf.len(), n) {
            len if len > buf.len() => buf.resize(len, 0),
            len if len < buf.len() => buf = vec![0u8; len],
            _ => {}
        }
    }
}

/// The buffer's next size after a read of `read` bytes into `len`: doubled when the read
/// filled it (up to `RELAY_CHUNK`), back to `RELAY_START` after a small read.
fn next_buffer_len(len: usize, read: usize) -> usize {
    if read == len && len < RELAY_CHUNK {
        len * 2
    } else if read <= RELAY_START {
        RELAY_START
    } else {
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_direction_grows_to_the_chunk_and_an_idle_one_goes_back_to_the_start() {
        let mut len = RELAY_START;
        while len < RELAY_CHUNK {
            len = next_buffer_len(len, len);
        }
        assert_eq!(len, RELAY_CHUNK);
        assert_eq!(
            next_buffer_len(len, len),
            RELAY_CHUNK,
            "never past the chunk"
        );
        assert_eq!(
            next_buffer_len(len, 100_000),
            RELAY_CHUNK,
            "the tail of a frame"
        );
        assert_eq!(
            next_buffer_len(len, 12),
            RELAY_START,
            "a key press after a frame"
        );
        assert_eq!(next_buffer_len(RELAY_START, 12), RELAY_START);
    }
}
