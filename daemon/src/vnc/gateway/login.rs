//! User logins on a console: the SASL exchange in exactly the format QEMU uses for RFB
//! type 20 (without TLS: GSSAPI only) and VeNCrypt X509SASL (`ui/vnc-auth-sasl.c`), and
//! VeNCrypt Plain (X509Plain), whose user name and password are checked against the same
//! user database, so clients without SASL (TigerVNC) still log in as a user the ACL can
//! judge.
//!
//! Each credential (a Plain password, each SASL step) is judged in the source's turn
//! under the lockout ([`Judge`]). On a wrong credential the failure is counted and the
//! client is sent the failed SecurityResult here; on success nothing is sent, because the
//! ACL has yet to admit the user. A GSSAPI login may end with a security layer, which the caller wraps the stream
//! in once the SecurityResult has gone out in the clear (as QEMU and gtk-vnc do).
//!
//! SASL wire format: server sends `u32 len, mechlist` (comma separated); the client sends
//! `u32 len (1..=100), mechname`, then `u32 len, data` where a non-empty `data` ends with
//! a NUL that `len` counts (0 = no data; at most 1 MiB). Each server step is `u32 len,
//! data + NUL` (or `u32 0`) and a `u8` that is 1 when the exchange is complete. Further
//! client steps use the same `u32 len, data + NUL` form. gtk-vnc sends GSSAPI tokens with
//! whatever byte follows them in its buffer in place of the NUL; QEMU refuses that
//! ("Missing SASL NUL padding byte"), vmgate drops the byte unread for GSSAPI only.

use std::sync::Arc;

use super::{
    handshake::{Conn, HANDSHAKE_BUFFER, HandshakeError},
    judge::{Judge, Turn},
};
use crate::{
    auth::{
        sasl::{MAX_MESSAGE, SaslError, SaslExchange, SaslServer, Step},
        sasl_layer::{LayerPolicy, SecurityLayer},
        users::UserDb,
    },
    vnc::rfb::{ProtocolVersion, RfbError, SecurityResult},
};

/// The longest mechanism name a client may send (QEMU's limit).
pub const MAX_MECHNAME: usize = 100;
/// The longest X509Plain user name or password accepted.
pub const MAX_PLAIN_FIELD: usize = 1024;
/// A login may not go on for more steps than this (SCRAM needs two).
const MAX_STEPS: usize = 8;

/// The text every wrong credential gets, whatever was wrong (QEMU's words).
pub const AUTH_FAILED: &str = "Authentication failed";

/// Reads a `u32` length.
async fn read_len(conn: &mut Conn, during: &'static str) -> Result<usize, HandshakeError> {
    let len = u32::from_be_bytes(conn.read_array::<4>(during).await?);
    Ok(usize::try_from(len).unwrap_or(usize::MAX))
}

/// Reads exactly `len` bytes, raising the connection's buffer bound for them.
async fn read_exact(
    conn: &mut Conn,
    len: usize,
    during: &'static str,
) -> Result<Vec<u8>, HandshakeError> {
    conn.set_max(len.max(HANDSHAKE_BUFFER));
    let bytes = conn
        .expect(during, |b| {
            Ok((b.len() >= len).then(|| (b[..len].to_vec(), len)))
        })
        .await;
    conn.set_max(HANDSHAKE_BUFFER);
    Ok(bytes?)
}

/// One client SASL message: None for "no data", else the data without its NUL (or, with
/// `any_padding`, without its last byte, whatever it is).
async fn read_client_data(
    conn: &mut Conn,
    during: &'static str,
    any_padding: bool,
) -> Result<Option<Vec<u8>>, HandshakeError> {
    let len = read_len(conn, during).await?;
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_MESSAGE {
        return Err(RfbError::TooLong {
            what: "SASL client data",
            len: len as u64,
            max: MAX_MESSAGE,
        }
        .into());
    }
    let mut data = read_exact(conn, len, during).await?;
    let padding = data.pop();
    if let Some(byte @ 1..) = padding
        && any_padding
    {
        tracing::debug!("SASL client data padded with {byte:#04x} instead of a NUL (gtk-vnc)");
    }
    if padding != Some(0) && !any_padding {
        return Err(RfbError::Unsupported("SASL client data without its NUL byte".into()).into());
    }
    Ok(Some(data))
}

/// Encodes a server step: the data with its NUL (or an empty length) and `complete`.
pub fn encode_server_step(data: Option<&[u8]>, complete: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 6);
    match data {
        Some(d) => {
            let len = u32::try_from(d.len() + 1).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(d);
            out.push(0);
        }
        None => out.extend_from_slice(&0_u32.to_be_bytes()),
    }
    out.push(u8::from(complete));
    out
}

/// Counts the failure (in the source's `turn`, so before its next credential is judged),
/// then tells the client its credentials failed and returns the matching error.
async fn fail<T>(
    conn: &mut Conn,
    version: ProtocolVersion,
    security: &'static str,
    turn: Turn<'_>,
) -> Result<T, HandshakeError> {
    turn.wrong();
    conn.send(&SecurityResult::Failed(AUTH_FAILED.into()).encode(version))
        .await?;
    Err(HandshakeError::BadCredentials {
        security,
        reason: "authentication failed (wrong user or password)".into(),
    })
}

/// Waits for the source's turn to judge a credential; a locked-out source is told so and
/// refused.
async fn take_turn<'a>(
    conn: &mut Conn,
    version: ProtocolVersion,
    security: &'static str,
    judge: &'a Judge<'a>,
) -> Result<Turn<'a>, HandshakeError> {
    match judge.turn().await {
        Ok(turn) => Ok(turn),
        Err(locked_out) => {
            conn.send(&SecurityResult::Failed(locked_out.clone()).encode(version))
                .await?;
            Err(HandshakeError::Refused {
                security: Some(security),
                reason: locked_out,
            })
        }
    }
}

/// Runs one SASL step off the async threads (PLAIN runs PBKDF2).
async fn step(
    mut exchange: SaslExchange,
    input: Option<Vec<u8>>,
) -> (SaslExchange, Result<Step, SaslError>) {
    let joined = tokio::task::spawn_blocking(move || {
        let result = exchange.step(input.as_deref());
        (exchange, result)
    })
    .await;
    match joined {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A successful SASL login.
pub struct SaslLogin {
    pub user: String,
    /// The security layer to wrap the connection in after the SecurityResult.
    pub layer: Option<Box<dyn SecurityLayer>>,
}

/// The SASL exchange, offering `offered`; a layer may be negotiated as `layers` allows.
pub async fn sasl(
    conn: &mut Conn,
    version: ProtocolVersion,
    server: &SaslServer,
    offered: &[String],
    layers: LayerPolicy,
    security: &'static str,
    judge: &Judge<'_>,
) -> Result<SaslLogin, HandshakeError> {
    let mechlist = offered.join(",");
    let mut out = u32::try_from(mechlist.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(mechlist.as_bytes());
    conn.send(&out).await?;

    let len = read_len(conn, "the SASL mechanism name").await?;
    if !(1..=MAX_MECHNAME).contains(&len) {
        return Err(RfbError::TooLong {
            what: "SASL mechanism name",
            len: len as u64,
            max: MAX_MECHNAME,
        }
        .into());
    }
    let name = read_exact(conn, len, "the SASL mechanism name").await?;
    let name = String::from_utf8_lossy(&name).into_owned();
    let mut exchange = match server.start(&name, offered, layers) {
        Ok(exchange) => exchange,
        Err(e) => {
            conn.send(&SecurityResult::Failed(e.to_string()).encode(version))
                .await?;
            return Err(HandshakeError::Refused {
                security: Some(security),
                reason: e.to_string(),
            });
        }
    };
    let any_padding = exchange.tolerates_any_padding();
    let mut input = read_client_data(conn, "the SASL start", any_padding).await?;
    for _ in 0..MAX_STEPS {
        let turn = take_turn(conn, version, security, judge).await?;
        let (back, result) = step(exchange, input).await;
        exchange = back;
        let reply = match result {
            Ok(reply) => reply,
            Err(SaslError::Failed) => return fail(conn, version, security, turn).await,
            Err(SaslError::Refused(reason)) => {
                conn.send(&SecurityResult::Failed(AUTH_FAILED.into()).encode(version))
                    .await?;
                return Err(HandshakeError::Refused {
                    security: Some(security),
                    reason,
                });
            }
            Err(e) => {
                conn.send(&SecurityResult::Failed(AUTH_FAILED.into()).encode(version))
                    .await?;
                return Err(RfbError::Unsupported(e.to_string()).into());
            }
        };
        if reply.done {
            // A failed proof is answered with the failure alone, as Cyrus SASL does.
            let Ok(user) = exchange.user() else {
                return fail(conn, version, security, turn).await;
            };
            drop(turn);
            conn.send(&encode_server_step(reply.output.as_deref(), true))
                .await?;
            let layer = exchange.take_layer();
            return Ok(SaslLogin { user, layer });
        }
        drop(turn);
        conn.send(&encode_server_step(reply.output.as_deref(), false))
            .await?;
        input = read_client_data(conn, "a SASL step", any_padding).await?;
    }
    Err(RfbError::Unsupported(format!("SASL exchange longer than {MAX_STEPS} steps")).into())
}

/// VeNCrypt Plain: `u32 ulen, u32 plen, user, password`; returns the user name.
pub async fn plain(
    conn: &mut Conn,
    version: ProtocolVersion,
    users: &Arc<UserDb>,
    security: &'static str,
    judge: &Judge<'_>,
) -> Result<String, HandshakeError> {
    let lens = conn.read_array::<8>("the VeNCrypt Plain lengths").await?;
    let ulen = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
    let plen = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
    for (what, len) in [("Plain user name", ulen), ("Plain password", plen)] {
        if len > MAX_PLAIN_FIELD {
            return Err(RfbError::TooLong {
                what,
                len: len as u64,
                max: MAX_PLAIN_FIELD,
            }
            .into());
        }
    }
    let both = read_exact(conn, ulen + plen, "the VeNCrypt Plain credentials").await?;
    let (user, password) = both.split_at(ulen);
    let user = String::from_utf8_lossy(user).into_owned();
    let password = password.to_vec();
    let check_users = users.clone();
    let check_user = user.clone();
    let turn = take_turn(conn, version, security, judge).await?;
    let ok =
        tokio::task::spawn_blocking(move || check_users.check_password(&check_user, &password))
            .await
            .unwrap_or(false);
    if ok {
        Ok(user)
    } else {
        fail(conn, version, security, turn).await
    }
}

#[cfg(test)]
mod tests {
    use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use std::time::Duration;

    use super::*;
    use crate::{
        auth::users::make_record,
        vnc::{
            gateway::SourceGates,
            rfb::io::RfbStream,
            source::Source,
            throttle::{Throttle, ThrottleConfig},
        },
    };

    fn server() -> SaslServer {
        let users = Arc::new(UserDb::new(vec![make_record("alice", b"pw")]));
        SaslServer::new(users, &["SCRAM-SHA-256".into(), "PLAIN".into()]).expect("server")
    }

    /// Runs `login::sasl` against the client half it returns.
    fn serve(
        server: SaslServer,
    ) -> (
        tokio::task::JoinHandle<Result<String, HandshakeError>>,
        DuplexStream,
    ) {
        let (ours, theirs) = tokio::io::duplex(4 << 20);
        let task = tokio::spawn(async move {
            let mut conn: Conn = RfbStream::new(Box::new(ours), HANDSHAKE_BUFFER);
            let offered = server.offered().to_vec();
            let layers = LayerPolicy::Any;
            let throttle = Throttle::new(ThrottleConfig {
                max_failures: 5,
                window: Duration::from_secs(60),
                lockout: Duration::from_secs(60),
            });
            let gates = SourceGates::default();
            let judge = Judge::new(&throttle, &gates, Source::Uid(0));
            sasl(
                &mut conn,
                ProtocolVersion::V3_8,
                &server,
                &offered,
                layers,
                "test",
                &judge,
            )
            .await
            .map(|login| login.user)
        });
        (task, theirs)
    }

    async fn read_u32(c: &mut DuplexStream) -> u32 {
        c.read_u32().await.expect("u32")
    }

    async fn read_mechlist(c: &mut DuplexStream) -> String {
        let len = read_u32(c).await as usize;
        let mut list = vec![0; len];
        c.read_exact(&mut list).await.expect("mechlist");
        String::from_utf8(list).expect("utf8")
    }

    /// Sends `data` in the client format: length with the NUL, data, NUL.
    async fn send_data(c: &mut DuplexStream, data: &[u8]) {
        c.write_u32(u32::try_from(data.len() + 1).expect("len"))
            .await
            .expect("len");
        c.write_all(data).await.expect("data");
        c.write_u8(0).await.expect("nul");
    }

    /// Reads a server step: data without its NUL, and the complete flag.
    async fn read_step(c: &mut DuplexStream) -> (Vec<u8>, bool) {
        let len = read_u32(c).await as usize;
        let mut data = vec![0; len];
        c.read_exact(&mut data).await.expect("data");
        data.pop();
        (data, c.read_u8().await.expect("complete") == 1)
    }

    #[tokio::test]
    async fn scram_over_the_qemu_wire_format() {
        let (task, mut c) = serve(server());
        assert_eq!(read_mechlist(&mut c).await, "SCRAM-SHA-256,PLAIN");
        c.write_u32(13).await.expect("len");
        c.write_all(b"SCRAM-SHA-256").await.expect("name");
        let config = SASLConfig::with_credentials(None, "alice".into(), "pw".into()).expect("cfg");
        let mech = Mechname::parse(b"SCRAM-SHA-256").expect("mech");
        let mut client = SASLClient::new(config)
            .start_suggested(&[mech])
            .expect("client");
        let mut out = Vec::new();
        client.step(None, &mut out).expect("client first");
        send_data(&mut c, &out).await;
        let (server_first, complete) = read_step(&mut c).await;
        assert!(!complete);
        out.clear();
        client
            .step(Some(&server_first), &mut out)
            .expect("client final");
        send_data(&mut c, &out).await;
        let (server_final, complete) = read_step(&mut c).await;
        assert!(complete && server_final.starts_with(b"v="));
        assert_eq!(task.await.expect("join").expect("login"), "alice");
    }

    #[tokio::test]
    async fn mechanism_names_over_100_bytes_are_refused() {
        let (task, mut c) = serve(server());
        read_mechlist(&mut c).await;
        c.write_u32(101).await.expect("len");
        let err = task.await.expect("join").expect_err("refused");
        assert!(err.to_string().contains("mechanism name"), "{err}");
    }

    #[tokio::test]
    async fn client_data_over_1_mib_is_refused_and_data_without_nul_too() {
        let (task, mut c) = serve(server());
        read_mechlist(&mut c).await;
        c.write_u32(5).await.expect("len");
        c.write_all(b"PLAIN").await.expect("name");
        c.write_u32(u32::try_from(MAX_MESSAGE + 1).expect("len"))
            .await
            .expect("len");
        let err = task.await.expect("join").expect_err("refused");
        assert!(err.to_string().contains("1048576"), "{err}");

        let (task, mut c) = serve(server());
        read_mechlist(&mut c).await;
        c.write_u32(5).await.expect("len");
        c.write_all(b"PLAIN").await.expect("name");
        c.write_u32(9).await.expect("len");
        c.write_all(b"\0alice\0pw").await.expect("data");
        let err = task.await.expect("join").expect_err("refused");
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[tokio::test]
    async fn wrong_plain_password_gets_the_failure_result() {
        let (task, mut c) = serve(server());
        read_mechlist(&mut c).await;
        c.write_u32(5).await.expect("len");
        c.write_all(b"PLAIN").await.expect("name");
        send_data(&mut c, b"\0alice\0wrong").await;
        assert_eq!(read_u32(&mut c).await, 1, "SecurityResult failed");
        let err = task.await.expect("join").expect_err("refused");
        assert!(err.counts_as_failure());
    }

    #[test]
    fn server_steps_carry_a_nul_and_the_complete_flag() {
        assert_eq!(
            encode_server_step(Some(b"r=abc"), false),
            [0, 0, 0, 6, b'r', b'=', b'a', b'b', b'c', 0, 0]
        );
        assert_eq!(encode_server_step(None, true), [0, 0, 0, 0, 1]);
    }
}
