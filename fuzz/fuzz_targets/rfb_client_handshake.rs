//! The client side of the RFB handshake against a fuzzed server: `io::client_handshake`
//! as the gateway runs it towards a guest's console (and the tests and benchmarks towards
//! the gateway), over the same bounded `RfbStream`, then the pure steps on their own
//! (`negotiate_from_server`, the security offer of each version, SecurityResult, and
//! ServerInit).
//!
//! Input: one byte for the client's settings (bit 0: has a VNC password; bit 1: shared),
//! one byte setting how many bytes each read returns (0 = all), then what the server
//! sends. Checks: no panic, no wait on an always-ready stream, allocation in proportion
//! to the input; a completed handshake answered a version it speaks, used a security type
//! it may, and its ServerInit round-trips; each decoder's output re-encodes to bytes that
//! decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate_fuzz::{Scripted, allocated_by, assert_bounded, run, stream_budget};
use vmgate_rfb::{
    ClientConfig, MAX_NAME_LEN, MAX_REASON_LEN, ProtocolVersion, SecurityOffer, SecurityResult,
    SecurityType, ServerInit, decode_security_offer, encode_security_types,
    io::{RfbStream, client_handshake},
};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_3,
    ProtocolVersion::V3_7,
    ProtocolVersion::V3_8,
];

fn handshake(settings: u8, rest: &[u8]) {
    let config = ClientConfig {
        password: (settings & 1 != 0).then(|| b"fuzzpass".to_vec()),
        shared: settings & 2 != 0,
    };
    let ((outcome, sent), used) = allocated_by(|| {
        // The relay's bound towards a guest.
        let mut conn = RfbStream::new(Scripted::new(rest), MAX_NAME_LEN + 64);
        let outcome = run(client_handshake(&mut conn, &config));
        (outcome, conn.into_parts().0.sent)
    });
    assert!(
        used <= stream_budget(rest.len()),
        "{used} bytes for {} input bytes",
        rest.len()
    );
    let Ok(session) = outcome else {
        return;
    };
    assert!(sent.starts_with(&session.version.encode()));
    assert!(
        session.security == SecurityType::None
            || (session.security == SecurityType::VncAuth && config.password.is_some()),
        "{session:?} with {config:?}"
    );
    server_init_round_trips(&session.server_init);
}

fn steps(rest: &[u8]) {
    if let Some(version) = rest.first_chunk::<{ ProtocolVersion::LEN }>()
        && let Ok(v) = ProtocolVersion::negotiate_from_server(version)
    {
        assert_eq!(
            ProtocolVersion::negotiate_from_server(&v.encode()).ok(),
            Some(v)
        );
    }
    for version in VERSIONS {
        let (offer, used) = allocated_by(|| decode_security_offer(version, rest));
        assert_bounded("decode_security_offer", used, rest.len());
        if let Ok(Some((offer, n))) = offer {
            assert!((1..=rest.len()).contains(&n));
            if let (SecurityOffer::Types(types), true) = (&offer, version.has_security_list()) {
                let encoded = encode_security_types(types).expect("a decoded list encodes");
                assert_eq!(&encoded[..], &rest[..n]);
            }
        }
        let (result, used) = allocated_by(|| SecurityResult::decode(version, rest));
        assert_bounded("SecurityResult::decode", used, rest.len());
        if let Ok(Some((result, n))) = result {
            assert!((1..=rest.len()).contains(&n));
            let fits = !matches!(&result, SecurityResult::Failed(r) if r.len() > MAX_REASON_LEN);
            if fits {
                let encoded = result.encode(version);
                let again = SecurityResult::decode(version, &encoded);
                assert!(
                    matches!(&again, Ok(Some((r, m))) if *r == result && *m == encoded.len()),
                    "{result:?} under {version} gives {again:?}"
                );
            }
        }
    }
    let (init, used) = allocated_by(|| ServerInit::decode(rest));
    assert_bounded("ServerInit::decode", used, rest.len());
    if let Ok(Some((init, n))) = init {
        assert!((24..=rest.len()).contains(&n));
        server_init_round_trips(&init);
    }
}

/// Flags and padding are normalised on decoding, so the round trip is value to value.
fn server_init_round_trips(init: &ServerInit) {
    let encoded = init.encode().expect("a decoded ServerInit encodes");
    match ServerInit::decode(&encoded) {
        Ok(Some((again, n))) => {
            assert_eq!(&again, init);
            assert_eq!(n, encoded.len());
        }
        other => panic!("{encoded:?} decodes as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    handshake(settings, rest);
    // Past the read-size byte, what the server sends.
    steps(rest.get(1..).unwrap_or_default());
});
