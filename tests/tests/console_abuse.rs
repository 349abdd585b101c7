//! Console defences attacked as a hostile client would, against the real daemon (test
//! driver): a lockout that successful logins must not reset, answers held at the VNC
//! challenge on many connections and sent at once, one address flooding idle connections
//! while people from other addresses type their passwords, and the daemon-wide session
//! cap. Several source addresses come from binding clients to 127.0.0.2, 127.0.0.3, ...
//! (all of 127.0.0.0/8 is loopback).
//!
//! Each test's daemon autoports from its own range, and every wait has a deadline.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use vmgate_tests::{
    TestDaemon,
    console::{audit_until, events, field, start_guest, vnc_section},
    vnc::RfbClient,
};
use vmgated::vnc::rfb::vnc_auth_response;

/// How long one step of a raw handshake may take.
const STEP: Duration = Duration::from_secs(10);

fn config(slot: u16, extra: &str) -> String {
    let min = 24_000 + slot * 40;
    vnc_section(min..=min + 39, extra)
}

/// A raw RFB 3.8 client stopped at the VNC authentication challenge.
struct AtChallenge {
    stream: TcpStream,
    challenge: [u8; 16],
}

/// Connects from `from` (a loopback address of the test's choice) and runs the handshake
/// up to the VNC challenge.
async fn to_challenge(port: u16, from: [u8; 4]) -> anyhow::Result<AtChallenge> {
    let step = async {
        let mut stream = connect_from(port, from).await?;
        let mut version = [0; 12];
        stream.read_exact(&mut version).await?;
        stream.write_all(b"RFB 003.008\n").await?;
        let count = stream.read_u8().await?;
        anyhow::ensure!(count > 0, "refused: {}", read_reason(&mut stream).await?);
        let mut types = vec![0; usize::from(count)];
        stream.read_exact(&mut types).await?;
        anyhow::ensure!(types.contains(&2), "no VNC authentication in {types:?}");
        stream.write_all(&[2]).await?;
        let mut challenge = [0; 16];
        stream.read_exact(&mut challenge).await?;
        Ok(AtChallenge { stream, challenge })
    };
    tokio::time::timeout(STEP, step).await?
}

async fn connect_from(port: u16, from: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

async fn read_reason(stream: &mut TcpStream) -> anyhow::Result<String> {
    let len = stream.read_u32().await?;
    anyhow::ensure!(len <= 4096, "reason of {len} bytes");
    let mut reason = vec![0; len as usize];
    stream.read_exact(&mut reason).await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

impl AtChallenge {
    /// Answers with `password`: Ok once a shared ClientInit got the ServerInit, else the
    /// server's reason.
    async fn answer(mut self, password: &str) -> anyhow::Result<Result<(), String>> {
        let response = vnc_auth_response(password.as_bytes(), &self.challenge);
        let step = async {
            self.stream.write_all(&response).await?;
            if self.stream.read_u32().await? != 0 {
                return Ok(Err(read_reason(&mut self.stream).await?));
            }
            self.stream.write_all(&[1]).await?;
            let mut server_init = [0; 24];
            self.stream.read_exact(&mut server_init).await?;
            Ok(Ok(()))
        };
        tokio::time::timeout(STEP, step).await?
    }
}

fn audit(d: &TestDaemon, domain: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    audit_until(d, domain, done)
}

/// Issue: a successful login anywhere (a guest with security None, the attacker's own
/// guest) cleared the source's failures, so wrong guesses interleaved with successes were
/// never locked out.
#[tokio::test]
async fn successful_logins_do_not_reset_the_lockout() {
    let d = TestDaemon::start_with(&config(0, "vnc_auth_max_failures = 3"));
    let open = start_guest(&d, "open", "");
    let target = start_guest(&d, "target", "passwd = \"secret\"");
    for round in 0..3 {
        let wrong = to_challenge(target, [127, 0, 0, 1])
            .await
            .expect("challenge");
        let result = wrong.answer("guess").await.expect("answer");
        assert!(result.is_err(), "round {round}: a wrong password got in");
        if round < 2 {
            // A login the attacker can always make, between its guesses.
            RfbClient::connect(open, None, true)
                .await
                .expect("the open console admits anyone");
        }
    }
    let right = to_challenge(target, [127, 0, 0, 1]).await;
    let refusal = match right {
        Ok(at) => at
            .answer("secret")
            .await
            .expect("answer")
            .expect_err("locked"),
        Err(e) => e.to_string(),
    };
    assert!(refusal.contains("locked out"), "{refusal}");
    audit(&d, "target", |r| events(r, "lockout").count() == 1);
}

/// Issue: 20 connections waiting at the challenge all had their answers checked, even
/// after the lockout began, and a right answer among them was accepted.
#[tokio::test]
async fn answers_held_at_the_challenge_are_judged_under_the_lockout() {
    let extra = "vnc_auth_max_failures = 5\nvnc_max_pending = 40\nvnc_max_pending_per_source = 40";
    let d = TestDaemon::start_with(&config(1, extra));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    let mut waiting = Vec::new();
    for _ in 0..20 {
        waiting.push(to_challenge(port, [127, 0, 0, 1]).await.expect("challenge"));
    }
    let right = waiting.pop().expect("twenty");
    let answers = waiting
        .into_iter()
        .map(|at| tokio::spawn(at.answer("guess")));
    let mut reasons = Vec::new();
    for answer in answers {
        let result = answer.await.expect("join").expect("answer");
        reasons.push(result.expect_err("a wrong password got in"));
    }
    let judged = reasons.iter().filter(|r| !r.contains("locked out")).count();
    assert_eq!(judged, 5, "wrong answers judged: {reasons:#?}");
    let refusal = right.answer("secret").await.expect("answer");
    assert!(
        refusal.as_ref().is_err_and(|r| r.contains("locked out")),
        "the right answer after the lockout: {refusal:?}"
    );
    let records = audit(&d, "g", |r| events(r, "lockout").count() == 1);
    assert_eq!(events(&records, "auth-success").count(), 0);
}

/// Issue: one address opening idle connections at 20/s evicted everyone who took 3 s to
/// type a password. Now it only evicts its own: three people from other addresses, each
/// waiting 3 s at the challenge during the flood, all get in.
#[tokio::test]
async fn one_flooding_source_cannot_keep_people_out() {
    let d = TestDaemon::start_with(&config(2, "vnc_max_pending = 8"));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    let people: Vec<_> = (2..=4u8)
        .map(|n| {
            tokio::spawn(async move {
                let at = to_challenge(port, [127, 0, 0, n]).await?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                at.answer("secret").await
            })
        })
        .collect();
    let flood = tokio::spawn(async move {
        let mut held = Vec::new();
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            if let Ok(s) = connect_from(port, [127, 0, 0, 1]).await {
                held.push(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        held.len()
    });
    for (n, person) in people.into_iter().enumerate() {
        let result = person.await.expect("join").expect("handshake");
        assert_eq!(result, Ok(()), "person {n} was kept out");
    }
    assert!(flood.await.expect("join") >= 100, "the flood was too slow");
    let records = audit(&d, "g", |r| events(r, "auth-success").count() == 3);
    assert!(
        events(&records, "disconnect")
            .filter(|r| field(r, "reason").contains("evicted"))
            .all(|r| field(r, "source").starts_with("127.0.0.1:")),
        "only the flooding source lost connections: {records:#?}"
    );
}

/// Issue: one guest held 10,000 sessions and the daemon ran out of descriptors. Now the
/// daemon-wide `vnc_max_sessions` refuses the next client with a reason it can show, the
/// API keeps answering, and a freed slot admits a new client.
#[tokio::test]
async fn the_daemon_wide_session_cap_refuses_with_a_reason() {
    let d = TestDaemon::start_with(&config(3, "vnc_max_sessions = 3"));
    let a = start_guest(&d, "a", "");
    let b = start_guest(&d, "b", "");
    let mut held = vec![
        RfbClient::connect(a, None, true).await.expect("first"),
        RfbClient::connect(b, None, true).await.expect("second"),
        RfbClient::connect(a, None, true).await.expect("third"),
    ];
    let refused = RfbClient::connect(b, None, true)
        .await
        .expect_err("over the cap");
    assert!(
        format!("{refused:#}").contains("vnc_max_sessions"),
        "{refused:#}"
    );
    d.vmgate(&["list", "--all"]).ok();
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = RfbClient::connect(b, None, true).await {
        assert!(
            std::time::Instant::now() < deadline,
            "a freed slot did not admit a new client: {e:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    audit(&d, "b", |r| {
        events(r, "disconnect").any(|e| field(e, "reason").contains("vnc_max_sessions"))
    });
}

/// Runs VeNCrypt up to the TLS handshake (subtype chosen and acknowledged), then stalls.
async fn stalled_before_client_hello(port: u16) -> anyhow::Result<TcpStream> {
    let step = async {
        let mut s = connect_from(port, [127, 0, 0, 1]).await?;
        let mut version = [0; 12];
        s.read_exact(&mut version).await?;
        s.write_all(b"RFB 003.008\n").await?;
        let count = s.read_u8().await?;
        let mut types = vec![0; usize::from(count)];
        s.read_exact(&mut types).await?;
        anyhow::ensure!(types == [19], "not VeNCrypt only: {types:?}");
        s.write_all(&[19]).await?;
        let mut vencrypt = [0; 2];
        s.read_exact(&mut vencrypt).await?;
        s.write_all(&[0, 2]).await?;
        anyhow::ensure!(s.read_u8().await? == 0, "VeNCrypt 0.2 refused");
        let subtypes = s.read_u8().await?;
        let mut offered = vec![0; 4 * usize::from(subtypes)];
        s.read_exact(&mut offered).await?;
        s.write_all(&offered[..4]).await?;
        anyhow::ensure!(s.read_u8().await? == 1, "subtype refused");
        Ok(s)
    };
    tokio::time::timeout(STEP, step).await?
}

/// Issue: connections that never send a TLS ClientHello held their slots for the whole
/// handshake timeout. On a VeNCrypt console they are closed after the ClientHello deadline
/// (5 s, not the 60 s handshake timeout), and while 20 of them stall a real TLS client
/// still gets its session.
#[tokio::test]
async fn vencrypt_clients_that_stall_before_the_client_hello_hold_nothing() {
    let Some(pki) = vmgate_tests::console::ConsolePki::new() else {
        return;
    };
    let base = 24_000 + 4 * 40;
    let conf = vmgate_tests::console::tls_console_config(base, &pki.cert_dir, "");
    let d = TestDaemon::start_with(&conf);
    let port = start_guest(&d, "g", "");
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(stalled_before_client_hello(port).await.expect("stall"));
    }
    let started = std::time::Instant::now();
    let creds = pki.creds(Some(&pki.client));
    RfbClient::connect_tls(port, &creds, None, true)
        .await
        .expect("a real client while 20 stall");
    // The newest stalled connection is the last the gateway would evict: it must close
    // on the ClientHello deadline.
    let mut newest = stalled.pop().expect("twenty");
    let mut buf = [0; 64];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while newest.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "a stalled handshake was still open after 15 s"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "closed too early"
    );
    audit(&d, "g", |r| {
        events(r, "auth-failure").any(|e| field(e, "reason").contains("ClientHello"))
    });
}
