//! The server side of the RFB handshake, driven by a fuzzed client: the steps the
//! gateway and the test driver's RFB server take with the RFB crate (ProtocolVersion
//! parse, the 3.3 or 3.7+ security offer, the client's security choice, VNC
//! authentication's response, VeNCrypt's version and subtype up to the point TLS would
//! start, ClientInit), then client messages through the same bounded `RfbStream` until
//! the client stops. The gateway's own policy (lockout, ACL, SASL, TLS) needs the daemon
//! and is not built here.
//!
//! Input: one byte choosing the offered security type, one byte setting how many bytes
//! each read returns (0 = all), then what the client sends. Checks: no panic, no wait on
//! an always-ready stream, allocation in proportion to the input, and the server's first
//! bytes are its version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate_fuzz::{Scripted, allocated_by, run, stream_budget};
use vmgate_rfb::{
    CHALLENGE_LEN, ClientInit, MAX_CLIENT_MESSAGE_LEN, ProtocolVersion, RfbError, SecurityResult,
    SecurityType, decode_client_message, encode_security_failure, encode_security_type_v3_3,
    encode_security_types, io::RfbStream, parse_security_choice, vencrypt, verify_vnc_auth,
};

/// The gateway's bound before authentication.
const HANDSHAKE_BUFFER: usize = 4096;
const PASSWORD: &[u8] = b"fuzzpass";
const CHALLENGE: [u8; CHALLENGE_LEN] = *b"0123456789abcdef";
const OFFERS: [SecurityType; 4] = [
    SecurityType::None,
    SecurityType::VncAuth,
    SecurityType::VeNCrypt,
    SecurityType::Sasl,
];
const SUBTYPES: [vencrypt::Subtype; 2] = [vencrypt::Subtype::X509None, vencrypt::Subtype::X509Vnc];

async fn serve(
    conn: &mut RfbStream<Scripted<'_>>,
    offered: SecurityType,
) -> Result<usize, RfbError> {
    conn.send(&ProtocolVersion::V3_8.encode()).await?;
    let version = ProtocolVersion::parse(&conn.read_array("the version exchange").await?)?;
    let chosen = if version.has_security_list() {
        conn.send(&encode_security_types(&[offered])?).await?;
        let [choice] = conn.read_array("the security type choice").await?;
        parse_security_choice(choice, &[offered])?
    } else {
        match encode_security_type_v3_3(offered) {
            Ok(bytes) => conn.send(&bytes).await?,
            Err(e) => {
                conn.send(&encode_security_failure(version, "needs 3.7"))
                    .await?;
                return Err(e);
            }
        }
        offered
    };
    match chosen {
        SecurityType::VncAuth => {
            conn.send(&CHALLENGE).await?;
            let response = conn.read_array("VNC authentication").await?;
            let result = if verify_vnc_auth(PASSWORD, &CHALLENGE, &response) {
                SecurityResult::Ok
            } else {
                SecurityResult::Failed("Authentication failed".into())
            };
            conn.send(&result.encode(version)).await?;
            if result != SecurityResult::Ok {
                return Ok(0);
            }
        }
        SecurityType::VeNCrypt => {
            conn.send(&vencrypt::VERSION).await?;
            let theirs = conn.read_array("the VeNCrypt version").await?;
            match vencrypt::version_reply(theirs, &SUBTYPES) {
                Ok(reply) => conn.send(&reply).await?,
                Err(refusal) => {
                    conn.send(&refusal).await?;
                    return Ok(0);
                }
            }
            let choice = conn.read_array("the VeNCrypt subtype").await?;
            let chosen = vencrypt::parse_choice(choice, &SUBTYPES);
            conn.send(&vencrypt::choice_ack(chosen.is_some())).await?;
            // TLS would start here.
            return Ok(0);
        }
        // SASL's exchange is the daemon's.
        SecurityType::Sasl => return Ok(0),
        _ => {
            if SecurityResult::follows(version, chosen) {
                conn.send(&SecurityResult::Ok.encode(version)).await?;
            }
        }
    }
    let _ = ClientInit::parse(conn.read_array("ClientInit").await?);
    conn.set_max(MAX_CLIENT_MESSAGE_LEN);
    let mut messages = 0;
    while conn.next(decode_client_message).await?.is_some() {
        messages += 1;
    }
    Ok(messages)
}

fuzz_target!(|data: &[u8]| {
    let Some((&offer, rest)) = data.split_first() else {
        return;
    };
    let offered = OFFERS[usize::from(offer) % OFFERS.len()];
    let ((_, sent), used) = allocated_by(|| {
        let mut conn = RfbStream::new(Scripted::new(rest), HANDSHAKE_BUFFER);
        let outcome = run(serve(&mut conn, offered));
        (outcome, conn.into_parts().0.sent)
    });
    assert!(sent.starts_with(b"RFB 003.008\n"));
    assert!(
        used <= stream_budget(rest.len()),
        "{used} bytes for {} input bytes",
        rest.len()
    );
});
