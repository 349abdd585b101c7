//! RFB server-to-client messages (`decode_server_message`, what the gateway's backend
//! side, the tests and the benchmarks read a guest's console with), under a pixel format
//! taken from the input, fed back to back. Checks: no panic; each decode allocates in
//! proportion to its input; a decoded message took at least one byte and at most what
//! was there, and every strict prefix of it is "need more"; encoding it and decoding the
//! result gives it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate_fuzz::{allocated_by, assert_bounded};
use vmgate_rfb::{PIXEL_FORMAT_LEN, PixelFormat, decode_server_message};

fuzz_target!(|data: &[u8]| {
    let Some((pf, mut rest)) = data.split_first_chunk::<PIXEL_FORMAT_LEN>() else {
        return;
    };
    let pf = PixelFormat::parse(pf);
    while !rest.is_empty() {
        let (decoded, used) = allocated_by(|| decode_server_message(rest, &pf));
        assert_bounded("decode_server_message", used, rest.len());
        let Ok(Some((msg, n))) = decoded else {
            return;
        };
        assert!((1..=rest.len()).contains(&n));
        let whole = &rest[..n];
        for cut in [0, n / 2, n - 1] {
            assert!(
                matches!(decode_server_message(&whole[..cut], &pf), Ok(None)),
                "{msg:?} cut at {cut} of {n}"
            );
        }
        let mut encoded = Vec::new();
        msg.encode(&mut encoded)
            .unwrap_or_else(|e| panic!("{msg:?} decoded but does not encode: {e}"));
        match decode_server_message(&encoded, &pf) {
            Ok(Some((again, m))) => {
                assert_eq!(again, msg);
                assert_eq!(m, encoded.len());
            }
            other => panic!("{msg:?} encodes to {encoded:?}, which decodes as {other:?}"),
        }
        rest = &rest[n..];
    }
});
