//! A SCRAM-SHA-256 login as the daemon runs one: each client message passes the daemon's
//! RFC 5802 grammar check (`daemon/src/auth/scram.rs`, compiled in as it is) and, when it
//! passes, goes to rsasl's SCRAM server, whose parser panics on some malformed messages
//! the check must stop. A panic anywhere is a crash.
//!
//! Input: the client-first message, a 0 byte, the client-final message. In the final
//! message every `%N` becomes the nonce the server sent, so that the fuzzer reaches the
//! proof check without guessing the server's random nonce.

#![no_main]

#[allow(dead_code)]
#[path = "../../daemon/src/auth/scram.rs"]
mod scram;

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rsasl::{
    callback::{Context, Request, SessionCallback, SessionData},
    config::SASLConfig,
    mechanisms::scram::properties::ScramStoredPassword,
    mechname::Mechname,
    prelude::{SASLServer, SessionError, State, Validation},
    validate::{Validate, ValidationError},
};

const MECHANISM: &str = "SCRAM-SHA-256";

struct User;
impl Validation for User {
    type Value = ();
}

/// Every user has the same stored keys (as the daemon answers unknown users with decoys).
struct Keys;

impl SessionCallback for Keys {
    fn callback(
        &self,
        _session: &SessionData,
        _context: &Context,
        request: &mut Request,
    ) -> Result<(), SessionError> {
        if request.is::<ScramStoredPassword>() {
            let key = [7u8; 32];
            request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                4096, b"fuzz-salt-16byte", &key, &key,
            ))?;
        }
        Ok(())
    }

    fn validate(
        &self,
        _session: &SessionData,
        _context: &Context,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        validate.with::<User, _>(|| Ok(()))?;
        Ok(())
    }
}

fn config() -> Arc<SASLConfig> {
    SASLConfig::builder()
        .with_defaults()
        .with_callback(Keys)
        .expect("rsasl configuration")
}

/// The `r=` attribute of the server-first message.
fn server_nonce(server_first: &[u8]) -> Option<&[u8]> {
    server_first
        .split(|b| *b == b',')
        .find_map(|attr| attr.strip_prefix(b"r="))
}

fn with_nonce(message: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + nonce.len());
    let mut rest = message;
    while let Some(at) = rest.windows(2).position(|w| w == b"%N") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(nonce);
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let mut guard = scram::ScramGuard::for_mechanism(MECHANISM).expect("a SCRAM mechanism");
    if guard.check(Some(first)).is_err() {
        return;
    }
    let name = Mechname::parse(MECHANISM.as_bytes()).expect("mechanism name");
    let mut session = SASLServer::<User>::new(config())
        .start_suggested(name)
        .expect("SCRAM is built in");
    let mut server_first = Vec::new();
    match session.step(Some(first), &mut server_first) {
        Ok(State::Running) => {}
        Ok(State::Finished(_)) | Err(_) => return,
    }
    let Some(nonce) = server_nonce(&server_first) else {
        return;
    };
    let last = with_nonce(last, nonce);
    if guard.check(Some(&last)).is_err() {
        return;
    }
    let mut server_final = Vec::new();
    let _ = session.step(Some(&last), &mut server_final);
});
