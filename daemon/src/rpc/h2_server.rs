//! Serves one API connection with the h2 crate directly: the HTTP/2 handshake (with a
//! deadline for the client's preface), one task per call that hands the request to the
//! gRPC services and sends their answer back within the client's flow-control window,
//! keepalive probes (HTTP/2 PING) that close the connection of a client gone silent, the
//! end of a connection still unauthenticated when it is evicted or its login deadline
//! passes (see `admission`), and a graceful close at shutdown (GOAWAY, then the calls in
//! flight finish).
//!
//! This is the part of hyper's server that gRPC uses, without hyper: no protocol
//! detection, no per-stream body channel, no router in front of the five services. On the
//! UNIX socket, where a small call takes tens of microseconds, those layers were a fifth
//! of the daemon's time per call. The HTTP/2 protocol itself (framing, HPACK, flow
//! control, stream states, reset floods) stays h2's, as it was under hyper.

use std::{
    convert::Infallible,
    future::poll_fn,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use h2::{
    Reason, RecvStream,
    server::{self, SendResponse},
};
use http_body::Body as _;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tower::{Service, ServiceExt};
use vmgate_proto::h2_body::H2Body;

use super::{
    admission::Unauthenticated,
    conn::{ApiConn, ConnInfo},
};

/// How long a client has to send the HTTP/2 preface once connected.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest header block a client may send (hyper's server default).
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Flow-control windows granted to clients (hyper's server defaults), so that a large
/// definition arrives without waiting for WINDOW_UPDATEs at HTTP/2's 64 KiB.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// What serves the calls: the gRPC services behind the auth layer.
pub trait Calls:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Calls for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// What a connection may do and how it is watched.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Calls in flight at once (`max_client_requests`).
    pub max_streams: u32,
    /// None when keepalive is off (`keepalive_interval = -1`).
    pub keepalive: Option<Keepalive>,
}

/// libvirt's keepalive: a probe every `interval`, and a client that has answered none for
/// `count` intervals is gone.
#[derive(Clone, Copy, Debug)]
pub struct Keepalive {
    pub interval: Duration,
    pub count: u32,
}

/// Serves `conn` until the client closes it or stops answering keepalive probes, or until
/// `stop` and the calls in flight have finished.
pub async fn serve_connection(
    mut conn: ApiConn,
    calls: impl Calls,
    limits: Limits,
    stop: CancellationToken,
) {
    let info = conn.info();
    // Held until the connection has logged in; None when its transport authenticated it.
    let mut unauthenticated = conn.take_unauthenticated();
    let handshake = server::Builder::new()
        .max_concurrent_streams(limits.max_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .handshake::<_, Bytes>(conn);
    let handshake = tokio::select! {
        done = tokio::time::timeout(PREFACE_TIMEOUT, handshake) => done,
        _ = stop.cancelled() => return,
        why = unwelcome(unauthenticated.as_ref()) => {
            log_unwelcome(&info, why);
            return;
        }
    };
    let mut connection = match handshake {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!("API client's HTTP/2 handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("API client sent no HTTP/2 preface within {PREFACE_TIMEOUT:?}");
            return;
        }
    };
    // The calls of this connection: when it ends, or is aborted at the end of the drain,
    // dropping the set aborts whatever still runs, so no call outlives the server.
    let mut in_flight = JoinSet::new();
    let watched = limits.keepalive.zip(connection.ping_pong());
    let silent = async move {
        match watched {
            Some((keepalive, pings)) => silent_client(keepalive, pings).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(silent);
    let mut closing = false;
    loop {
        let accepted = tokio::select! {
            accepted = connection.accept() => accepted,
            () = &mut silent => {
                tracing::info!(peer = ?info.peer, "closing an API connection whose client no longer answers keepalive probes");
                break;
            }
            Some(ended) = in_flight.join_next(), if !in_flight.is_empty() => {
                log_panic(ended, "an API call");
                if unauthenticated.is_some() && logged_in(&info) {
                    unauthenticated = None;
                }
                continue;
            }
            why = unwelcome(unauthenticated.as_ref()) => {
                if why == Unwelcome::LoginDeadline && logged_in(&info) {
                    unauthenticated = None;
                    continue;
                }
                log_unwelcome(&info, why);
                break;
            }
            _ = stop.cancelled(), if !closing => {
                // GOAWAY: no new calls; accept() ends once those in flight are answered.
                connection.graceful_shutdown();
                closing = true;
                continue;
            }
        };
        match accepted {
            Some(Ok((request, respond))) => {
                in_flight.spawn(serve_call(request, respond, calls.clone(), info.clone()));
            }
            Some(Err(e)) => {
                tracing::debug!("API connection ended: {e}");
                break;
            }
            None => break,
        }
    }
}

/// Why an unauthenticated connection must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unwelcome {
    /// Closed to make room for another (`max_anonymous_clients`).
    Evicted,
    /// `auth_timeout_secs` passed without a login.
    LoginDeadline,
}

/// Resolves when the connection `unauthenticated` stands for must close; never for one
/// that is authenticated (None).
async fn unwelcome(unauthenticated: Option<&Unauthenticated>) -> Unwelcome {
    let Some(pending) = unauthenticated else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = pending.evicted() => Unwelcome::Evicted,
        _ = tokio::time::sleep_until(pending.login_deadline()) => Unwelcome::LoginDeadline,
    }
}

fn log_unwelcome(info: &ConnInfo, why: Unwelcome) {
    match why {
        Unwelcome::Evicted => tracing::debug!(
            peer = ?info.peer,
            "closing an unauthenticated API connection to make room (max_anonymous_clients)"
        ),
        Unwelcome::LoginDeadline => tracing::info!(
            peer = ?info.peer,
            "closing an API connection that did not log in within auth_timeout_secs"
        ),
    }
}

/// Whether the connection's required login has succeeded.
fn logged_in(info: &ConnInfo) -> bool {
    info.login
        .as_ref()
        .is_some_and(|login| login.user().is_some())
}

/// Resolves once the client has left a probe unanswered for `count` intervals; a client
/// that answers keeps it waiting for ever. The probe goes out after each `interval`, as
/// libvirt's does; HTTP/2 clients answer PINGs by themselves.
async fn silent_client(keepalive: Keepalive, mut pings: h2::PingPong) {
    let patience = keepalive.interval.saturating_mul(keepalive.count.max(1));
    loop {
        tokio::time::sleep(keepalive.interval).await;
        match tokio::time::timeout(patience, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            // The connection is closing for another reason, which the accept loop sees.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// Logs a task that panicked; one that ended or was aborted needs no word.
pub fn log_panic(ended: Result<(), JoinError>, what: &str) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!("{what} panicked: {e}");
    }
}

/// Runs one call and sends its answer. A client that resets the stream before the answer
/// is ready cancels the call, as hyper did; one whose `grpc-timeout` passes first gets
/// CANCELLED, as from tonic's server.
async fn serve_call(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    calls: impl Calls,
    info: ConnInfo,
) {
    let (mut head, recv) = request.into_parts();
    head.extensions.insert(info);
    let deadline = grpc_timeout(&head.headers);
    let request = http::Request::from_parts(head, Body::new(H2Body::new(recv)));
    let call = calls.oneshot(request);
    let mut call = std::pin::pin!(async move {
        let Some(deadline) = deadline else {
            return call.await;
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(answered) => answered,
            Err(_) => Ok(super::status::deadline_passed().into_http()),
        }
    });
    let answered = poll_fn(|cx| {
        if let Poll::Ready(reason) = respond.poll_reset(cx) {
            return Poll::Ready(Err(reason));
        }
        call.as_mut().poll(cx).map(Ok)
    })
    .await;
    let response = match answered {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(reset) => {
            tracing::debug!("API client cancelled a call: {reset:?}");
            return;
        }
    };
    let (head, body) = response.into_parts();
    let ends_here = body.is_end_stream();
    let sent = respond
        .send_response(http::Response::from_parts(head, ()), ends_here)
        .map_err(SendError::H2);
    let result = match sent {
        Ok(stream) if !ends_here => send_body(body, stream).await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::debug!("API answer not sent in full: {e}");
    }
}

/// The deadline a client gave with `grpc-timeout`: up to 8 digits and a unit (H, M, S, m,
/// u or n), as the gRPC over HTTP/2 protocol defines it. A value that does not read so is
/// ignored, as a missing one is.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let unit_at = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at_checked(unit_at)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    H2(#[from] h2::Error),
    #[error("the client reset the stream ({0:?})")]
    Reset(Reason),
    #[error("the answer failed: {0}")]
    Body(tonic::Status),
}

/// Sends the answer's DATA, never more than the client's window allows (so a client that
/// stops reading a long answer holds it back rather than making it pile up here), then its
/// trailers. An event stream ends when the client resets it.
async fn send_body(mut body: Body, mut stream: h2::SendStream<Bytes>) -> Result<(), SendError> {
    loop {
        let frame = poll_fn(|cx| poll_frame_unless_reset(&mut body, &mut stream, cx)).await?;
        let Some(frame) = frame else {
            stream.send_data(Bytes::new(), true)?;
            return Ok(());
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                send_data(&mut stream, data).await?;
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            stream.send_trailers(trailers)?;
            return Ok(());
        }
    }
}

fn poll_frame_unless_reset(
    body: &mut Body,
    stream: &mut h2::SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<http_body::Frame<Bytes>>, SendError>> {
    if let Poll::Ready(reset) = stream.poll_reset(cx) {
        return Poll::Ready(Err(match reset {
            Ok(reason) => SendError::Reset(reason),
            Err(e) => SendError::H2(e),
        }));
    }
    match ready!(Pin::new(body).poll_frame(cx)) {
        None => Poll::Ready(Ok(None)),
        Some(Ok(frame)) => Poll::Ready(Ok(Some(frame))),
        Some(Err(status)) => {
            stream.send_reset(Reason::INTERNAL_ERROR);
            Poll::Ready(Err(SendError::Body(status)))
        }
    }
}

async fn send_data(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), SendError> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(SendError::Reset(Reason::CANCEL)),
        };
        if granted > 0 {
            stream.send_data(data.split_to(granted.min(data.len())), false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use h2::client::SendRequest;
    use http_body::Frame;
    use tokio::{net::UnixStream, sync::Semaphore};

    use crate::rpc::admission::ClientSlot;
    use vmgate_proto::read_wake::ReadWakeStream;

    use super::*;
    use crate::{
        auth::{Peer, UnixPeer},
        rpc::conn::ApiStream,
    };

    /// Sets its flag when dropped: held by a call, it tells when the call's future went.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Whether `flag` is set within 10 s.
    async fn wait_for(flag: &AtomicBool) -> bool {
        let set = async {
            while !flag.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), set)
            .await
            .is_ok()
    }

    /// A body of `data` in one DATA frame, then trailers naming its length.
    struct Answer {
        data: Option<Bytes>,
        len: usize,
    }

    impl http_body::Body for Answer {
        type Data = Bytes;
        type Error = tonic::Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
            if let Some(data) = self.data.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if self.len == usize::MAX {
                return Poll::Ready(None);
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("sent", self.len.into());
            self.len = usize::MAX;
            Poll::Ready(Some(Ok(Frame::trailers(trailers))))
        }
    }

    /// Serves one end of a socket pair; the other end is returned for the client.
    fn serve(
        calls: impl Calls,
        stop: CancellationToken,
    ) -> (UnixStream, tokio::task::JoinHandle<()>) {
        serve_with_limit(calls, stop, 8)
    }

    fn serve_with_limit(
        calls: impl Calls,
        stop: CancellationToken,
        max_streams: u32,
    ) -> (UnixStream, tokio::task::JoinHandle<()>) {
        let limits = Limits {
            max_streams,
            keepalive: None,
        };
        serve_with(calls, stop, limits)
    }

    fn serve_with(
        calls: impl Calls,
        stop: CancellationToken,
        limits: Limits,
    ) -> (UnixStream, tokio::task::JoinHandle<()>) {
        let (client, server) = std::os::unix::net::UnixStream::pair().expect("pair");
        let peer = Peer::Unix(UnixPeer {
            uid: 1000,
            gid: 1000,
            pid: None,
            pid_start_time: None,
            readonly: false,
        });
        let stream = ApiStream::Unix(ReadWakeStream::new(server).expect("register"));
        let conn = ApiConn::new(stream, peer, ClientSlot::uncounted());
        let served = tokio::spawn(serve_connection(conn, calls, limits, stop));
        client.set_nonblocking(true).expect("nonblocking");
        (UnixStream::from_std(client).expect("client"), served)
    }

    async fn client(stream: UnixStream) -> SendRequest<Bytes> {
        let (sender, connection) = h2::client::handshake(stream).await.expect("handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::post(format!("http://localhost{path}"))
            .body(())
            .expect("request")
    }

    #[tokio::test]
    async fn a_long_answer_is_sent_within_the_window_and_ends_with_its_trailers() {
        // 3 MiB: more than the client's 64 KiB window, so sending must wait for it to
        // open as the client reads.
        let size = 3 * 1024 * 1024;
        let calls = tower::service_fn(move |req: http::Request<Body>| async move {
            assert!(
                req.extensions().get::<ConnInfo>().is_some(),
                "the peer rides along"
            );
            let data = Bytes::from(vec![7u8; size]);
            let body = Body::new(Answer {
                data: Some(data),
                len: size,
            });
            Ok::<_, Infallible>(http::Response::new(body))
        });
        let (stream, _served) = serve(calls, CancellationToken::new());
        let mut sender = client(stream).await;
        let (response, _) = sender
            .send_request(request("/vmgate.v1.Admin/Version"), true)
            .expect("send");
        let mut body = response.await.expect("response").into_body();
        let mut received = 0;
        while let Some(data) = body.data().await {
            let data = data.expect("data");
            assert!(data.iter().all(|&b| b == 7));
            received += data.len();
            let _ = body.flow_control().release_capacity(data.len());
        }
        assert_eq!(received, size);
        let trailers = body.trailers().await.expect("trailers").expect("some");
        assert_eq!(trailers["sent"], size.to_string().as_str());
    }

    #[tokio::test]
    async fn a_reset_cancels_the_call_and_shutdown_closes_the_connection() {
        let started = Arc::new(tokio::sync::Notify::new());
        let dropped = Arc::new(AtomicBool::new(false));
        let (s, d) = (started.clone(), dropped.clone());
        let calls = tower::service_fn(move |_: http::Request<Body>| {
            let (started, dropped) = (s.clone(), d.clone());
            async move {
                // Marks the call dropped when its future is; it never finishes by itself.
                let _guard = DropFlag(dropped);
                started.notify_one();
                std::future::pending::<Result<http::Response<Body>, Infallible>>().await
            }
        });
        let stop = CancellationToken::new();
        let (stream, served) = serve(calls, stop.clone());
        let mut sender = client(stream).await;
        let (_, mut send) = sender
            .send_request(request("/vmgate.v1.Domain/Start"), true)
            .expect("send");
        started.notified().await;
        send.send_reset(Reason::CANCEL);
        assert!(wait_for(&dropped).await, "the reset call is dropped");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the connection closes at shutdown")
            .expect("no panic");
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_wait_for_a_free_slot() {
        // Each call waits until the test releases one; `started` counts the calls running.
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let (s, r) = (started.clone(), release.clone());
        let calls = tower::service_fn(move |_: http::Request<Body>| {
            let (started, release) = (s.clone(), r.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.expect("open").forget();
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            }
        });
        let (stream, _served) = serve_with_limit(calls, CancellationToken::new(), 2);
        let sender = client(stream).await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            let mut sender = sender.clone().ready().await.expect("ready");
            let (answer, _) = sender
                .send_request(request("/vmgate.v1.Domain/Start"), true)
                .expect("send");
            answers.push(tokio::spawn(answer));
        }
        let running = |n: usize| {
            let started = started.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(10), async {
                    while started.load(Ordering::SeqCst) < n {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await
                .is_ok()
            }
        };
        assert!(running(2).await, "two calls run");
        // The third waits for a slot, however long the first two take.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(started.load(Ordering::SeqCst), 2, "the third call waits");
        release.add_permits(1);
        assert!(running(3).await, "the third runs once a slot is free");
        release.add_permits(2);
        for answer in answers {
            let answer = answer.await.expect("joined").expect("answered");
            assert_eq!(answer.status(), http::StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn calls_end_with_their_connection() {
        let started = Arc::new(tokio::sync::Notify::new());
        let dropped = Arc::new(AtomicBool::new(false));
        let (s, d) = (started.clone(), dropped.clone());
        let calls = tower::service_fn(move |_: http::Request<Body>| {
            let (started, guard) = (s.clone(), DropFlag(d.clone()));
            async move {
                let _guard = guard;
                started.notify_one();
                std::future::pending::<Result<http::Response<Body>, Infallible>>().await
            }
        });
        let (stream, served) = serve(calls, CancellationToken::new());
        let (mut sender, connection) = h2::client::handshake(stream).await.expect("handshake");
        let client = tokio::spawn(connection);
        let (_response, _) = sender
            .send_request(request("/vmgate.v1.Domain/Start"), true)
            .expect("send");
        started.notified().await;
        // The client goes away mid-call: its connection ends with the socket.
        client.abort();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the connection ends")
            .expect("no panic");
        assert!(
            wait_for(&dropped).await,
            "the call ended with its connection"
        );
    }

    #[test]
    fn grpc_timeouts_read_as_the_protocol_spells_them() {
        let read = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("header value"));
            grpc_timeout(&headers)
        };
        assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(read("3M"), Some(Duration::from_secs(180)));
        assert_eq!(read("10S"), Some(Duration::from_secs(10)));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)));
        assert_eq!(read("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(read("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "S", "10", "10s", "123456789S", "-1S", "1.5S", "１S"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_call_past_its_grpc_timeout_is_answered_cancelled() {
        let calls = tower::service_fn(|_: http::Request<Body>| {
            std::future::pending::<Result<http::Response<Body>, Infallible>>()
        });
        let (stream, _served) = serve(calls, CancellationToken::new());
        let mut sender = client(stream).await;
        let mut call = request("/vmgate.v1.Domain/Start");
        call.headers_mut()
            .insert("grpc-timeout", "50m".parse().expect("value"));
        let (response, _) = sender.send_request(call, true).expect("send");
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("answered once the deadline passed")
            .expect("response");
        assert_eq!(response.headers()["grpc-status"], "1", "CANCELLED");
    }

    fn probed_every_5s_3_times() -> Limits {
        Limits {
            max_streams: 8,
            keepalive: Some(Keepalive {
                interval: Duration::from_secs(5),
                count: 3,
            }),
        }
    }

    fn no_calls() -> impl Calls {
        tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_answering_probes_is_closed() {
        let (stream, served) = serve_with(
            no_calls(),
            CancellationToken::new(),
            probed_every_5s_3_times(),
        );
        // The client's side is never polled after the handshake: it reads no PING and
        // answers none, as a client whose host vanished.
        let (_sender, _never_polled) = h2::client::handshake(stream).await.expect("handshake");
        tokio::time::timeout(Duration::from_secs(5 + 3 * 5 + 5), served)
            .await
            .expect("closed once three intervals passed without an answer")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_probes_stays() {
        let (stream, mut served) = serve_with(
            no_calls(),
            CancellationToken::new(),
            probed_every_5s_3_times(),
        );
        let (sender, connection) = h2::client::handshake(stream).await.expect("handshake");
        tokio::spawn(connection);
        let waited = tokio::time::timeout(Duration::from_secs(120), &mut served).await;
        assert!(waited.is_err(), "still served after 24 probes");
        let (answer, _) = sender
            .ready()
            .await
            .expect("ready")
            .send_request(request("/vmgate.v1.Admin/Version"), true)
            .expect("send");
        assert_eq!(
            answer.await.expect("answered").status(),
            http::StatusCode::OK
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_speaks_http2_is_dropped() {
        let calls = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let (_silent, served) = serve(calls, CancellationToken::new());
        tokio::time::timeout(PREFACE_TIMEOUT * 2, served)
            .await
            .expect("given up after the preface timeout")
            .expect("no panic");
    }
}
