//! The gRPC body framing the daemon reads API requests with: tonic's `Streaming` decoder
//! (the 5-byte prefix of a compressed flag and a big-endian length, then a protobuf
//! message) over an HTTP/2 request body, with the limits the daemon's services set: 256
//! KiB for the `Auth` service, the one unauthenticated clients reach (`SaslStart`,
//! `SaslStep`), tonic's default 4 MiB for the others (`DefineRequest`,
//! `AclChangeRequest`, the largest requests). The daemon's HTTP/2 server hands tonic
//! exactly such a body (`vmgate_proto::h2_body::H2Body`); h2's own framing is not fuzzed
//! here.
//!
//! Input: one byte choosing the message type, one setting the size of the body's DATA
//! frames (0 = one frame), then the body. Checks: no panic and no wait on a ready body;
//! the decoder allocates within its buffer, the service's limit and a few times the input
//! (tonic reserves a message's declared length as soon as its prefix arrives, see
//! docs/fuzzing.md); each decoded message re-encodes to bytes that decode to the same
//! message.
#![no_main]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::codec::{Codec, Streaming};
use tonic_prost::ProstCodec;
use vmgate_fuzz::{allocated_by, budget, run};
use vmgate_proto::v1::{AclChangeRequest, DefineRequest, SaslStart, SaslStep};

/// The daemon's limit on an `Auth` request (`MAX_AUTH_MESSAGE` in `daemon/src/rpc/mod.rs`).
const MAX_AUTH_MESSAGE: usize = 256 * 1024;
/// tonic's default limit on a received message, which the other services keep.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// tonic's default decode buffer, allocated before the first byte arrives.
const TONIC_BUFFER: usize = 8 * 1024;

/// A request body whose DATA frames are the fuzzer's chunks, always ready.
struct Body(VecDeque<Bytes>);

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }
}

/// Decodes every message of `body`, checking each round trip; returns the bytes the
/// decoder allocated (the checks' own copies are not counted).
fn decode_all<T: Message + Default + PartialEq + Send + 'static>(
    body: Body,
    limit: usize,
) -> usize {
    let (mut stream, mut used) = allocated_by(|| {
        let decoder = ProstCodec::<T, T>::default().decoder();
        Streaming::<T>::new_request(decoder, body, None, Some(limit))
    });
    loop {
        let (next, more) = allocated_by(|| run(stream.message()));
        used += more;
        let Ok(Some(msg)) = next else {
            return used;
        };
        let encoded = msg.encode_to_vec();
        assert!(T::decode(&encoded[..]).is_ok_and(|again| again == msg));
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, chunk, body @ ..] = data else {
        return;
    };
    let chunk = if *chunk == 0 {
        body.len().max(1)
    } else {
        usize::from(*chunk)
    };
    let frames = body.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let n = body.len();
    let body = Body(frames);
    let (used, limit) = match kind % 4 {
        0 => (
            decode_all::<SaslStart>(body, MAX_AUTH_MESSAGE),
            MAX_AUTH_MESSAGE,
        ),
        1 => (
            decode_all::<SaslStep>(body, MAX_AUTH_MESSAGE),
            MAX_AUTH_MESSAGE,
        ),
        2 => (decode_all::<DefineRequest>(body, MAX_MESSAGE), MAX_MESSAGE),
        _ => (
            decode_all::<AclChangeRequest>(body, MAX_MESSAGE),
            MAX_MESSAGE,
        ),
    };
    // The frames were allocated before counting started; the rest is the decoder's: its
    // buffer, then room for each message's declared length (at most the limit) as soon as
    // the 5-byte prefix is in, then the messages.
    assert!(
        used <= TONIC_BUFFER + limit + budget(n),
        "{used} bytes for a body of {n} bytes"
    );
});
