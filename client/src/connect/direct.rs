//! A gRPC channel straight over one HTTP/2 connection (the `h2` crate), used on the UNIX
//! socket, where per-call latency is what matters: tonic's `Channel` puts a `tower::buffer`
//! task in front of hyper's client, hyper spawns a task per call to await the answer and
//! another to send the body, and the body waits for stream capacity that h2 hands out only
//! once the HEADERS are on the wire, so every call cost two writes (and two wake-ups of the
//! daemon) instead of one. Here the request body is collected first (every method of the
//! schema is unary, so it is one small message), then HEADERS and DATA with END_STREAM are
//! queued together and leave in one write; the answer is read by the caller's own task.
//!
//! The socket is registered with the runtime for readability only (see [`Socket`]).
//!
//! Like tonic's channel, a connection found closed before a call (the daemon restarted) is
//! dialled again; a call already sent when the connection breaks fails and is not retried.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use h2::{RecvStream, client::SendRequest};
use http_body::{Body as _, Frame};
use std::io::{Read, Write};

use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd},
    net::UnixStream,
};
use tonic::body::Body;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Flow-control windows: hyper's client defaults, so that a large answer (a list of 10,000
/// domains) streams without waiting for WINDOW_UPDATEs at h2's 64 KiB default.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// A clonable handle on one HTTP/2 connection to a UNIX socket; clones share it.
#[derive(Clone, Debug)]
pub struct DirectChannel {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    sender: Mutex<Option<SendRequest<Bytes>>>,
}

impl DirectChannel {
    /// Performs the HTTP/2 handshake on `stream`, already connected to `path`. The
    /// connection is driven by a task on the current runtime.
    pub async fn handshake(stream: UnixStream, path: &Path) -> Result<DirectChannel, BoxError> {
        let sender = start(stream).await?;
        Ok(DirectChannel {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                sender: Mutex::new(Some(sender)),
            }),
        })
    }

    /// A sender ready for one more stream, redialling when the connection has closed.
    async fn ready_sender(shared: &Shared) -> Result<SendRequest<Bytes>, BoxError> {
        let current = shared
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sender) = current {
            // An error means the connection closed before this call was sent: dial again.
            if let Ok(sender) = sender.ready().await {
                return Ok(sender);
            }
        }
        let stream = UnixStream::connect(&shared.path).await?;
        let sender = start(stream).await?;
        *shared.sender.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
        Ok(sender.ready().await?)
    }
}

async fn start(stream: UnixStream) -> Result<SendRequest<Bytes>, BoxError> {
    let stream = Socket::new(stream.into_std()?)?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake(stream)
        .await?;
    tokio::spawn(async move {
        // Ends when every sender is dropped or the daemon closes the connection; calls in
        // flight then fail with the error, which is all there is to do with it here.
        let _ = connection.await;
    });
    Ok(sender)
}

impl tower::Service<http::Request<Body>> for DirectChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is per call: each call waits for its own stream in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (mut head, body) = req.into_parts();
            let body = collect(body).await?;
            // The generated clients give only the path; h2 needs a scheme and an authority,
            // which the daemon ignores.
            let mut uri = http::uri::Parts::from(std::mem::take(&mut head.uri));
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(http::uri::Authority::from_static("localhost"));
            head.uri = http::Uri::from_parts(uri)?;
            let mut sender = DirectChannel::ready_sender(&shared).await?;
            let (response, mut send) =
                sender.send_request(http::Request::from_parts(head, ()), body.is_empty())?;
            if !body.is_empty() {
                send.send_data(body, true)?;
            }
            let (head, recv) = response.await?.into_parts();
            Ok(http::Response::from_parts(
                head,
                Body::new(RecvBody::new(recv)),
            ))
        })
    }
}

/// The whole request body: one encoded message for a unary call.
async fn collect(mut body: Body) -> Result<Bytes, BoxError> {
    let mut all: Option<Bytes> = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame?.into_data() else {
            return Err(io::Error::other("request trailers are not supported").into());
        };
        all = Some(match all.take() {
            None => data,
            Some(before) => [before, data].concat().into(),
        });
    }
    Ok(all.unwrap_or_default())
}

/// An answer's body: its DATA, each released to flow control as it is handed on, then its
/// trailers (where gRPC puts the status).
struct RecvBody {
    recv: RecvStream,
    data_done: bool,
}

impl RecvBody {
    fn new(recv: RecvStream) -> RecvBody {
        RecvBody {
            recv,
            data_done: false,
        }
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Cannot fail for a length just received on this stream.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// A UNIX stream registered with the runtime for readability only. tokio registers its
/// `UnixStream` for both directions, edge-triggered, and the kernel raises a write-space
/// event on a UNIX socket each time the peer reads what it was sent: with tokio's stream,
/// every call woke this process twice (once when the daemon read the request, once for the
/// answer). Writes go straight to the socket; only when one finds the socket full is a
/// duplicate of the descriptor registered for writability, and kept from then on.
struct Socket {
    read: AsyncFd<std::os::unix::net::UnixStream>,
    write: Option<AsyncFd<std::os::unix::net::UnixStream>>,
}

impl Socket {
    // `AsyncFd::with_interest` is deprecated because it cannot know that an arbitrary
    // `AsRawFd` keeps its descriptor open; a std `UnixStream` owns its descriptor (an
    // `OwnedFd`) for as long as the `AsyncFd` holds it, so the condition holds, and the
    // replacement is an `unsafe fn`, which this workspace denies.
    #[allow(deprecated)]
    fn new(stream: std::os::unix::net::UnixStream) -> io::Result<Socket> {
        stream.set_nonblocking(true)?;
        Ok(Socket {
            read: AsyncFd::with_interest(stream, Interest::READABLE)?,
            write: None,
        })
    }

    /// Runs `op` on the socket until it does not block, waiting for writability between
    /// tries.
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&std::os::unix::net::UnixStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(self.read.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
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
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.read.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let want = unfilled.len();
            match guard.get_inner().read(unfilled) {
                Ok(n) => {
                    // A short read emptied the socket: wait for the next event rather than
                    // learn it from an EAGAIN (tokio's own streams do the same).
                    if n < want {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Socket {
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
