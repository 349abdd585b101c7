//! A gRPC channel straight over one HTTP/2 connection (the `h2` crate), used on the UNIX
//! socket, where per-call latency is what matters: tonic's `Channel` puts a `tower::buffer`
//! task in front of hyper's client, hyper spawns a task per call to await the answer and
//! another to send the body, and the body waits for stream capacity that h2 hands out only
//! once the HEADERS are on the wire, so every call cost two writes (and two wake-ups of the
//! daemon) instead of one. Here the request body is collected first (every method of the
//! schema is unary, so it is one small message), then HEADERS and DATA with END_STREAM are
//! queued together and leave in one write; the answer is read by the caller's own task.
//!
//! The socket is registered with the runtime for readability only (see [`ReadWakeStream`]).
//!
//! Like tonic's channel, a connection found closed before a call (the daemon restarted) is
//! dialled again; a call already sent when the connection breaks fails and is not retried.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use h2::client::SendRequest;
use http_body::Body as _;

use tokio::net::UnixStream;
use tonic::body::Body;
use vmgate_proto::{h2_body::H2Body, read_wake::ReadWakeStream};

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
    let stream = ReadWakeStream::new(stream.into_std()?)?;
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
                Body::new(H2Body::new(recv)),
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
