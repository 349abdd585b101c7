//! A UNIX stream registered with the runtime for readability only, used at both ends of
//! the API's UNIX socket. tokio registers its `UnixStream` for both directions,
//! edge-triggered, and the kernel raises a write-space event on a UNIX socket each time the
//! peer reads what it was sent: with tokio's stream, each call woke the client twice (once
//! when the daemon read the request, once for the answer) and the daemon twice (once for the
//! request, once when the client read the answer). Writes go straight to the socket; only
//! when one finds the socket full is a duplicate of the descriptor registered for
//! writability, until a write goes through again.

use std::{
    io::{self, Read, Write},
    os::unix::net::UnixStream,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd};

/// A UNIX stream that wakes its task for reads only (see the module's note).
pub struct ReadWakeStream {
    read: AsyncFd<UnixStream>,
    write: Option<AsyncFd<UnixStream>>,
    /// Where reads land before they are copied to the caller. The callers (h2's codec)
    /// hand over uninitialised buffers, which safe code must zero before a read: 8 KiB or
    /// more of zeroing per read, against copying the few hundred bytes a call brings.
    landing: Box<[u8]>,
}

/// The most one read takes from the socket: tokio-util's codec reads in 8 KiB steps.
const READ_SIZE: usize = 8 * 1024;

impl ReadWakeStream {
    /// Takes over `stream`, making it non-blocking; must be called within a runtime.
    // `AsyncFd::with_interest` is deprecated because it cannot know that an arbitrary
    // `AsRawFd` keeps its descriptor open; a std `UnixStream` owns its descriptor (an
    // `OwnedFd`) for as long as the `AsyncFd` holds it, so the condition holds, and the
    // replacement is an `unsafe fn`, which this workspace denies.
    #[allow(deprecated)]
    pub fn new(stream: UnixStream) -> io::Result<ReadWakeStream> {
        stream.set_nonblocking(true)?;
        Ok(ReadWakeStream {
            read: AsyncFd::with_interest(stream, Interest::READABLE)?,
            write: None,
            landing: vec![0; READ_SIZE].into_boxed_slice(),
        })
    }

    /// Runs `op` on the socket until it does not block, waiting for writability between
    /// tries.
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&UnixStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(self.read.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(self.wrote(done)),
            }
            if self.write.is_none() {
                let dup = self.read.get_ref().try_clone()?;
                #[allow(deprecated)] // As in `new`.
                let write = AsyncFd::with_interest(dup, Interest::WRITABLE)?;
                self.write = Some(write);
            }
            let Some(write) = &self.write else {
                continue;
            };
            let mut guard = ready!(write.poll_write_ready(cx))?;
            // Try again at once: if the socket is still full, the readiness is cleared
            // and the next poll waits for the kernel to report space.
            match op(self.read.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                done => {
                    drop(guard);
                    return Poll::Ready(self.wrote(done));
                }
            }
        }
    }

    /// After a write that did not block: the socket takes writes again, so the watch for
    /// write space (if a full socket started one) ends; its events would otherwise wake
    /// the runtime each time the peer reads from then on.
    fn wrote<T>(&mut self, done: io::Result<T>) -> io::Result<T> {
        self.write = None;
        done
    }
}

impl AsyncRead for ReadWakeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let ReadWakeStream { read, landing, .. } = self.get_mut();
        loop {
            let mut guard = ready!(read.poll_read_ready(cx))?;
            let want = buf.remaining().min(landing.len());
            match guard.get_inner().read(&mut landing[..want]) {
                Ok(n) => {
                    // A short read emptied the socket: wait for the next event rather than
                    // learn it from an EAGAIN (tokio's own streams do the same). The end of
                    // the stream (0) keeps its readiness, as in tokio.
                    if n > 0 && n < want {
                        guard.clear_ready();
                    }
                    buf.put_slice(&landing[..n]);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ReadWakeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.read.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_transfer_larger_than_the_socket_buffer_arrives_whole() {
        let (a, b) = UnixStream::pair().expect("socket pair");
        let mut sender = ReadWakeStream::new(a).expect("sender");
        let mut receiver = ReadWakeStream::new(b).expect("receiver");
        // Far beyond the kernel's buffer, so the writer must wait for the reader, and not
        // a multiple of the read size.
        let sent: Vec<u8> = (0..4 * 1024 * 1024 + 5).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writer = tokio::spawn(async move {
            sender.write_all(&sent).await.expect("write");
            sender.shutdown().await.expect("shutdown");
            sender
        });
        let mut received = Vec::new();
        receiver
            .read_to_end(&mut received)
            .await
            .expect("read to the end");
        let sender = writer.await.expect("writer");
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes arrive in order, unchanged");
        assert!(
            sender.write.is_none(),
            "once writes go through, nothing watches for write space"
        );
    }
}
