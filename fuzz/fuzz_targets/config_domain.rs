//! Domain definitions: `DomainDef::parse`, the one parse-and-validate path shared by
//! definition files and `define` requests over the API.
//!
//! Checks: no panic on any UTF-8 text; a definition that parses also passes `validate`;
//! `to_toml` writes it as text that parses back into an equal definition (the promise
//! `vmgate dumpxml`-style output and the store rely on), and writing that again gives the
//! same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate_config::domain::DomainDef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = DomainDef::parse(text, "<fuzz>") else {
        return;
    };
    if let Err(e) = def.validate() {
        panic!("{def:?} parsed but does not validate: {e}");
    }
    let written = def.to_toml(true);
    match DomainDef::parse(&written, "<written>") {
        Ok(again) => {
            assert_eq!(again, def, "written as:\n{written}");
            assert_eq!(again.to_toml(true), written);
        }
        Err(e) => panic!("{def:?} written as\n{written}\ndoes not parse: {e}"),
    }
});
