//! Allocation bounds of the RFB decoders, measured with a counting allocator.
//!
//! Owns the one check the unit tests cannot make: that a decoder fed a header
//! claiming a huge length (or any arbitrary bytes) allocates in proportion to the
//! bytes it was actually given, never to the length it was promised. Kept as an
//! integration test because it installs a global allocator for its binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use vmgate_rfb::{
    PixelFormat, ProtocolVersion, SecurityResult, ServerInit, decode_client_message,
    decode_security_offer, decode_server_message,
};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: forwards every call to the system allocator unchanged; the bookkeeping
// touches only a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
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

/// Bytes allocated on this thread while running `f`.
fn allocated_by<T>(f: impl FnOnce() -> T) -> usize {
    ALLOCATED.with(|a| a.set(0));
    let out = f();
    let used = ALLOCATED.with(|a| a.get());
    drop(out);
    used
}

/// The budget for decoding `n` input bytes: a small constant (error strings) plus
/// a few times the input (decoded structures are somewhat larger than the wire).
fn budget(n: usize) -> usize {
    4096 + 8 * n
}

fn all_decoders(buf: &[u8]) -> usize {
    let pf = PixelFormat::NATIVE;
    [
        allocated_by(|| decode_client_message(buf)),
        allocated_by(|| decode_server_message(buf, &pf)),
        allocated_by(|| decode_security_offer(ProtocolVersion::V3_8, buf)),
        allocated_by(|| SecurityResult::decode(ProtocolVersion::V3_8, buf)),
        allocated_by(|| ServerInit::decode(buf)),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

#[test]
fn promised_lengths_cost_nothing_until_the_bytes_arrive() {
    let server_init_1mib_name = [
        &[0u8, 1, 0, 1][..],
        &PixelFormat::NATIVE.encode(),
        &[0, 0x10, 0, 0, b'n'],
    ]
    .concat();
    let claims: [(&str, &[u8]); 8] = [
        ("ClientCutText of 1 MiB", &[6, 0, 0, 0, 0, 0x10, 0, 0, b'x']),
        (
            "extended ClientCutText of 1 MiB",
            &[6, 0, 0, 0, 0xff, 0xf0, 0, 0, 1],
        ),
        ("1024 encodings", &[2, 0, 0x04, 0x00, 0, 0, 0, 0]),
        ("ServerCutText of 1 MiB", &[3, 0, 0, 0, 0, 0x10, 0, 0, b'y']),
        (
            "4096x4096 Raw",
            &[
                0, 0, 0xff, 0xff, 0, 0, 0, 0, 0x10, 0, 0x10, 0, 0, 0, 0, 0, 1,
            ],
        ),
        ("65535 colour map entries", &[1, 0, 0, 0, 0xff, 0xff, 0, 0]),
        ("refusal with a 64 KiB reason", &[0, 0, 1, 0, 0, b'r']),
        ("ServerInit with a 1 MiB name", &server_init_1mib_name),
    ];
    for (what, buf) in claims {
        let used = all_decoders(buf);
        assert!(used <= 256, "{what}: allocated {used} bytes");
    }
}

proptest! {
    #[test]
    fn decoders_allocate_in_proportion_to_their_input(
        buf in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let used = all_decoders(&buf);
        prop_assert!(used <= budget(buf.len()), "{} bytes for {} input bytes", used, buf.len());
    }

    #[test]
    fn many_empty_rectangles_stay_proportional(n in 0u16..2000) {
        let mut buf = vec![0, 0];
        buf.extend_from_slice(&n.to_be_bytes());
        for _ in 0..n {
            buf.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]);
        }
        let used = allocated_by(|| decode_server_message(&buf, &PixelFormat::NATIVE));
        prop_assert!(used <= budget(buf.len()));
    }
}
