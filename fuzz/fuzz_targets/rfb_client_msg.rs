//! RFB client-to-server messages (`decode_client_message`, what the test driver's RFB
//! server and the gateway's clients' streams are read with), fed back to back as a client
//! would send them. Checks: no panic; each decode allocates in proportion to its input;
//! a decoded message took between 1 and `MAX_CLIENT_MESSAGE_LEN` bytes, and every strict
//! prefix of it is "need more", never an error; encoding it and decoding the result
//! gives it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate_fuzz::{allocated_by, assert_bounded};
use vmgate_rfb::{MAX_CLIENT_MESSAGE_LEN, decode_client_message};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while !rest.is_empty() {
        let (decoded, used) = allocated_by(|| decode_client_message(rest));
        assert_bounded("decode_client_message", used, rest.len());
        let Ok(Some((msg, n))) = decoded else {
            return;
        };
        assert!((1..=rest.len().min(MAX_CLIENT_MESSAGE_LEN)).contains(&n));
        let whole = &rest[..n];
        for cut in [0, n / 2, n - 1] {
            assert!(
                matches!(decode_client_message(&whole[..cut]), Ok(None)),
                "{msg:?} cut at {cut} of {n}"
            );
        }
        let mut encoded = Vec::new();
        msg.encode(&mut encoded)
            .unwrap_or_else(|e| panic!("{msg:?} decoded but does not encode: {e}"));
        match decode_client_message(&encoded) {
            Ok(Some((again, m))) => {
                assert_eq!(again, msg);
                assert_eq!(m, encoded.len());
            }
            other => panic!("{msg:?} encodes to {encoded:?}, which decodes as {other:?}"),
        }
        rest = &rest[n..];
    }
});
