//! What the fuzz targets share: a counting global allocator, so that a target can assert
//! that a decoder allocates in proportion to the bytes it was given and never to a length
//! the input merely claims; and [`Scripted`] with [`run`], which drive the crate's async
//! handshake code over the fuzzer's bytes without a runtime.
//!
//! libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator hooks, and these
//! targets may be built with `--sanitizer none`; counting here works either way. The
//! count is per thread (each target runs its input on one thread) and only covers Rust
//! allocations, which is all the code under test makes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping
// touches only a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the bytes this thread allocated meanwhile
/// (reallocations count their new size, so growth is counted more than once).
pub fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATED.with(|a| a.set(0));
    let out = f();
    (out, ALLOCATED.with(Cell::get))
}

/// The allocation budget for decoding `n` input bytes: a constant for error messages
/// plus a few times the input, since decoded structures are somewhat larger than their
/// wire form (a 6-byte colour map entry becomes a 6-byte array, a 4-byte encoding an
/// `i32`, a 12-byte rectangle header a `Rectangle`).
pub fn budget(n: usize) -> usize {
    4096 + 8 * n
}

/// The allocation budget for a whole exchange over an `RfbStream` fed `n` bytes: its
/// read buffer asks for twice what it holds (from 4 KiB) and grows by doubling, so it may
/// allocate about 8 times what arrives; a reason string decoded lossily turns each
/// invalid byte into 3, and grows by doubling too.
pub fn stream_budget(n: usize) -> usize {
    16 * 1024 + 16 * n
}

/// Asserts `used <= budget(n)`, naming `what`.
#[track_caller]
pub fn assert_bounded(what: &str, used: usize, n: usize) {
    assert!(
        used <= budget(n),
        "{what} allocated {used} bytes for {n} input bytes (budget {})",
        budget(n)
    );
}

/// A peer that sends the fuzzer's bytes, at most `chunk` per read (so that messages
/// arrive split at every position), and records what it is sent.
#[derive(Debug)]
pub struct Scripted<'a> {
    input: &'a [u8],
    chunk: usize,
    /// Everything written to the peer.
    pub sent: Vec<u8>,
}

impl<'a> Scripted<'a> {
    /// Takes the read size from the first byte (0 = as much as asked), the rest is what
    /// the peer sends.
    pub fn new(data: &'a [u8]) -> Scripted<'a> {
        let (chunk, input) = match data.split_first() {
            Some((0, rest)) => (usize::MAX, rest),
            Some((&n, rest)) => (usize::from(n), rest),
            None => (usize::MAX, data),
        };
        Scripted {
            input,
            chunk,
            sent: Vec::new(),
        }
    }

    /// The bytes the peer has not sent yet.
    pub fn unread(&self) -> usize {
        self.input.len()
    }
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.input.len().min(self.chunk).min(buf.remaining());
        let (now, later) = self.input.split_at(n);
        buf.put_slice(now);
        self.input = later;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.sent.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose I/O is all [`Scripted`], which is always ready: it must finish
/// on its first poll, so a `Pending` is a bug (a wait that nothing would ever end).
pub fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited on an always-ready stream"),
    }
}
