//! The daemon's config file: `vmgate_config::parse_str` then `validate` against every
//! feature, as `vmgated --check-config` and the daemon's start-up judge a file. The text
//! is read as if from `/nonexistent/vmgated.toml`, so relative paths resolve under a
//! directory that does not exist; validation only looks files up (metadata and open),
//! never reads or changes them.
//!
//! Checks: no panic on any UTF-8 text; every error names a position or a key when
//! parsing failed.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vmgate_config::{Supported, parse_str, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Path::new("/nonexistent/vmgated.toml");
    match parse_str(text, source) {
        Ok(loaded) => {
            for supported in [Supported::all(), Supported::none()] {
                let _ = validate(&loaded.config, &supported);
            }
        }
        Err(errors) => assert!(!errors.errors.is_empty()),
    }
});
