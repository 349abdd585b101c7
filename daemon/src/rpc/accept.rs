//! What every API accept loop shares: the [`Admission`] limits, the answer to a client
//! over `max_clients`, and staying up when the daemon runs out of file descriptors.
//!
//! Out of descriptors (EMFILE, ENFILE), `accept` fails without taking the connection off
//! the backlog, so a loop that retries at once spins and logs without end while every
//! client hangs. Instead: a few descriptors are held in reserve (open on /dev/null). The
//! read-write socket spends them to serve its clients, so root can still reach the daemon;
//! the other listeners spend one for a moment to accept and close a client, which then
//! learns at once rather than waiting in the backlog. When the reserve is spent too, the
//! loop backs off. Failures are logged once a minute with a count, not once each.
//!
//! A client over `max_clients` gets a gRPC answer that says so (RESOURCE_EXHAUSTED) to
//! whatever it calls first, in a short-lived task; only a bounded number of such answers
//! run at once, and past that a refused client is just closed.

use std::{
    fs::File,
    future::{Future, poll_fn},
    io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;

use super::admission::Admission;

/// How long a loop waits before it tries `accept` again after a failure.
const BACKOFF: Duration = Duration::from_millis(50);

/// Descriptors held in reserve for when the daemon has none left.
const SPARE_FDS: usize = 8;

/// Over-limit clients being told so at once, and how long each may take.
const REFUSALS_AT_ONCE: usize = 16;
const REFUSAL_TIME: Duration = Duration::from_secs(5);

/// How often a repeated event is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What every API accept loop shares.
pub struct Entrance {
    pub admission: Admission,
    pub refusals: Refusals,
    reserve: Arc<FdReserve>,
}

impl Entrance {
    pub fn new(admission: Admission, stop: CancellationToken) -> Entrance {
        Entrance {
            admission,
            refusals: Refusals {
                budget: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
                logged: Occasional::new(),
                stop,
            },
            reserve: Arc::new(FdReserve::new(SPARE_FDS)),
        }
    }

    /// An accept loop's helper; `name` names the listener in logs.
    pub fn acceptor(&self, name: String, when_out: OutOfFds) -> Acceptor {
        Acceptor {
            name,
            when_out,
            reserve: self.reserve.clone(),
            failures: Occasional::new(),
            shed: Occasional::new(),
        }
    }
}

/// What a listener does with the descriptor reserve when the daemon has none left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfFds {
    /// Serve the client on a reserved descriptor (the read-write socket).
    Serve,
    /// Accept and close the client at once, so it does not wait in the backlog.
    Shed,
}

/// A listening socket of any kind tokio has.
pub trait Listen {
    type Stream;
    type Addr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Addr)>>;
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, Self::Addr)>> {
        UnixListener::poll_accept(self, cx)
    }
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    type Addr = std::net::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, Self::Addr)>> {
        TcpListener::poll_accept(self, cx)
    }
}

/// A connection accepted, and the reserve it spent, if any (refilled when it closes).
pub struct Accepted<L: Listen> {
    pub stream: L::Stream,
    pub addr: L::Addr,
    pub reserve: Option<ReserveSpent>,
}

/// Accepts on one listener, backing off and spending the reserve as the module says.
pub struct Acceptor {
    name: String,
    when_out: OutOfFds,
    reserve: Arc<FdReserve>,
    failures: Occasional,
    shed: Occasional,
}

impl Acceptor {
    /// The next connection; waits (backing off after failures) until there is one.
    pub async fn next<L: Listen>(&self, listener: &L) -> Accepted<L> {
        loop {
            let err = match poll_fn(|cx| listener.poll_accept(cx)).await {
                Ok((stream, addr)) => {
                    self.reserve.refill();
                    return Accepted {
                        stream,
                        addr,
                        reserve: None,
                    };
                }
                Err(e) => e,
            };
            if is_out_of_fds(&err) {
                match self.on_reserve(listener) {
                    OnReserve::Served(accepted) => return accepted,
                    OnReserve::Shed => continue,
                    OnReserve::Spent => {}
                }
            }
            if let Some(unlogged) = self.failures.due() {
                tracing::warn!(
                    "{}: accept failed: {err}; retrying every {} ms ({unlogged} failures not \
                     logged since the last message)",
                    self.name,
                    BACKOFF.as_millis()
                );
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }

    /// Out of descriptors: spends the reserve on the client waiting in the backlog. Serves
    /// it (returned) or closes it at once, as the listener's mode says.
    fn on_reserve<L: Listen>(&self, listener: &L) -> OnReserve<L> {
        let spend = match self.when_out {
            // One for the socket, one for what its call needs (a file, a database handle).
            OutOfFds::Serve => 2,
            OutOfFds::Shed => 1,
        };
        if self.reserve.release(spend) == 0 {
            return OnReserve::Spent;
        }
        let spent = ReserveSpent(self.reserve.clone());
        // Try once without waiting: the client that failed is still in the backlog, unless
        // another thread took the freed descriptors first.
        let again = poll_fn(|cx| Poll::Ready(listener.poll_accept(cx)));
        let Poll::Ready(Ok((stream, addr))) = now(again) else {
            return OnReserve::Spent;
        };
        let unlogged = self.shed.due();
        if self.when_out == OutOfFds::Serve {
            if let Some(unlogged) = unlogged {
                tracing::warn!(
                    "{}: out of file descriptors; serving its clients on the daemon's reserve \
                     ({unlogged} such clients not logged since the last message)",
                    self.name
                );
            }
            return OnReserve::Served(Accepted {
                stream,
                addr,
                reserve: Some(spent),
            });
        }
        drop(stream);
        if let Some(unlogged) = unlogged {
            tracing::warn!(
                "{}: out of file descriptors, so clients are closed as they connect; raise \
                 the daemon's open-file limit (LimitNOFILE) or lower vnc_max_sessions ({unlogged} \
                 closings not logged since the last message)",
                self.name
            );
        }
        OnReserve::Shed
    }
}

/// What spending the reserve came to.
enum OnReserve<L: Listen> {
    /// The client is served on reserved descriptors.
    Served(Accepted<L>),
    /// The client was closed, and the reserve refilled.
    Shed,
    /// Nothing left in reserve, or the client was gone: back off.
    Spent,
}

/// Runs a future that is ready at its first poll.
fn now<T>(ready: impl Future<Output = Poll<T>>) -> Poll<T> {
    let mut ready = std::pin::pin!(ready);
    let waker = std::task::Waker::noop();
    match ready.as_mut().poll(&mut Context::from_waker(waker)) {
        Poll::Ready(inner) => inner,
        Poll::Pending => Poll::Pending,
    }
}

fn is_out_of_fds(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(err.raw_os_error(), Some(code) if code == Errno::EMFILE as i32 || code == Errno::ENFILE as i32)
}

/// Descriptors kept open on /dev/null, to be closed when the daemon has no other.
struct FdReserve {
    spares: Mutex<Vec<File>>,
    target: usize,
    /// Fewer than `target` are held.
    short: AtomicBool,
}

impl FdReserve {
    fn new(target: usize) -> FdReserve {
        let reserve = FdReserve {
            spares: Mutex::new(Vec::with_capacity(target)),
            target,
            short: AtomicBool::new(true),
        };
        reserve.refill();
        reserve
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<File>> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes up to `n` spares; returns how many.
    fn release(&self, n: usize) -> usize {
        let mut spares = self.lock();
        let keep = spares.len().saturating_sub(n);
        let released = spares.len() - keep;
        spares.truncate(keep);
        self.short.store(true, Ordering::Relaxed);
        released
    }

    /// Opens spares again up to the target, as far as descriptors allow.
    fn refill(&self) {
        if !self.short.load(Ordering::Relaxed) {
            return;
        }
        let mut spares = self.lock();
        while spares.len() < self.target {
            match File::open("/dev/null") {
                Ok(file) => spares.push(file),
                Err(_) => break,
            }
        }
        self.short
            .store(spares.len() < self.target, Ordering::Relaxed);
    }
}

/// Held by a connection served on reserved descriptors: refills the reserve when it closes.
pub struct ReserveSpent(Arc<FdReserve>);

impl Drop for ReserveSpent {
    fn drop(&mut self) {
        self.0.refill();
    }
}

/// Tells clients over `max_clients` that they were refused, and why.
pub struct Refusals {
    budget: Arc<Semaphore>,
    logged: Occasional,
    stop: CancellationToken,
}

impl Refusals {
    /// Answers every call of the client `connect` yields (once its transport is up) with
    /// `status`, then closes; just closes when too many refusals are in flight.
    pub fn refuse<S, F>(&self, status: tonic::Status, connect: F)
    where
        F: Future<Output = Option<S>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(unlogged) = self.logged.due() {
            tracing::warn!(
                "too many clients (max_clients): refusing new connections ({unlogged} refusals \
                 not logged since the last message)"
            );
        }
        let Ok(permit) = self.budget.clone().try_acquire_owned() else {
            return;
        };
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let refuse = async {
                if let Some(stream) = connect.await {
                    answer(stream, status).await;
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::timeout(REFUSAL_TIME, refuse) => {}
            }
        });
    }
}

/// Serves HTTP/2 on `stream` only to answer each call with `status`.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: S, status: tonic::Status) {
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((_request, mut respond))) = connection.accept().await {
        let response: http::Response<()> = status.clone().into_http();
        let _ = respond.send_response(response, true);
        // GOAWAY: the connection ends once this answer is out.
        connection.graceful_shutdown();
    }
}

/// Logs a repeated event at most once per minute, counting those it did not log.
#[derive(Default)]
pub struct Occasional {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Occasional {
    pub fn new() -> Occasional {
        Occasional::default()
    }

    /// Some(events not logged since the last time) when this one should be logged.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, unlogged) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            *unlogged += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_event_is_logged_once_with_a_count() {
        let log = Occasional::new();
        assert_eq!(log.due(), Some(0));
        assert_eq!((0..100).filter_map(|_| log.due()).count(), 0);
        log.state.lock().expect("lock").0 = Some(Instant::now() - LOG_EVERY);
        assert_eq!(log.due(), Some(100));
    }

    #[test]
    fn the_reserve_is_spent_and_refilled() {
        let reserve = FdReserve::new(3);
        assert_eq!(reserve.lock().len(), 3);
        assert_eq!(reserve.release(2), 2);
        assert_eq!(reserve.release(5), 1);
        assert_eq!(reserve.release(1), 0);
        reserve.refill();
        assert_eq!(reserve.lock().len(), 3);
    }

    #[tokio::test]
    async fn a_refused_client_is_told_why() {
        let (client, server) = tokio::io::duplex(4096);
        let refusals = Refusals {
            budget: Arc::new(Semaphore::new(1)),
            logged: Occasional::new(),
            stop: CancellationToken::new(),
        };
        let status =
            crate::rpc::status::too_many_clients("Too many clients (max_clients = 1)".into());
        refusals.refuse(status, async move { Some(server) });
        let (mut sender, connection) = h2::client::handshake(client).await.expect("handshake");
        tokio::spawn(connection);
        let request = http::Request::post("http://localhost/vmgate.v1.Admin/Version")
            .body(())
            .expect("request");
        let (answer, _) = sender.send_request(request, true).expect("send");
        let answer = answer.await.expect("answered");
        assert_eq!(answer.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
        let message = answer.headers()["grpc-message"].to_str().expect("ascii");
        assert!(message.starts_with("Too%20many%20clients"), "{message}");
    }
}
