//! Connection URIs: `vmgate::uri::ConnectUri::parse`, which reads `-c`, the
//! `VMGATE_DEFAULT_URI` variable and the shell's `connect`.
//!
//! Checks: no panic on any UTF-8 text; a URI that parses has a host exactly when its
//! transport is not `unix`; its canonical form (`Display`) parses back into an equal
//! URI and is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate::uri::{ConnectUri, Transport};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = ConnectUri::parse(text) else {
        return;
    };
    assert_eq!(
        uri.host.is_some(),
        uri.transport != Transport::Unix,
        "{uri:?}"
    );
    let canonical = uri.to_string();
    match ConnectUri::parse(&canonical) {
        Ok(again) => {
            assert_eq!(again, uri, "{text:?} written as {canonical:?}");
            assert_eq!(again.to_string(), canonical);
        }
        Err(e) => panic!("{text:?} written as {canonical:?} does not parse: {e}"),
    }
});
