//! The per-guest VNC gateway end to end: the real daemon (test driver), gtk-vnc's real
//! `gvnccapture`, and the harness's own RFB client for sessions that must stay open.
//! Security None and VNC password, brute-force lockout (and what must not count towards
//! it), the bound on idle unauthenticated connections, live sessions listed and cut by an
//! operator or by a password change under each `connected` policy, the three share
//! policies, password expiry, garbage on the wire, UNIX-socket consoles, and the audit
//! trail (complete, free of passwords, kept across a restart).
//!
//! Each test's daemon autoports from its own range of ports (tests run in parallel
//! processes), and every wait is a condition with a deadline. The tests are async only to
//! drive `RfbClient`; the CLI calls in between block the (current-thread) runtime on
//! purpose, since nothing of the test's own needs polling while the CLI runs.

use std::{net::TcpStream, os::unix::fs::PermissionsExt, time::Duration};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmgate_tests::{
    TestDaemon,
    console::{start_guest, vnc_section},
    require_tool,
    vnc::{ConsoleAddr, RfbClient, gvnccapture, png_size},
    wait_until,
};

/// How long an operator's cut or a policy may take to reach a client's socket.
const CUT_DEADLINE: Duration = Duration::from_secs(5);
/// How long audit records may take to reach the database.
const AUDIT_DEADLINE: Duration = Duration::from_secs(10);

/// A `[vnc]` section whose autoport range is this test's own (`slot` is unique per test).
fn vnc_config(slot: u16, extra: &str) -> String {
    let min = 17_000 + slot * 40;
    vnc_section(min..=min + 39, extra)
}

fn tools_present() -> bool {
    require_tool("gvnccapture", "gvncviewer") && require_tool("expect", "expect")
}

/// `HOST:DISPLAY` for gvnccapture.
fn target(port: u16) -> String {
    format!("127.0.0.1:{}", port - 5900)
}

fn json_array(text: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        other => panic!("not a JSON array ({other:?}):\n{text}"),
    }
}

fn audit(d: &TestDaemon, domain: &str) -> Vec<Value> {
    json_array(d.vmgate(&["audit", "--domain", domain, "--json"]).ok())
}

/// The audit records of `domain` once `done` holds for them (panics with them otherwise).
#[track_caller]
fn audit_until(d: &TestDaemon, domain: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    if wait_until(AUDIT_DEADLINE, || {
        last = audit(d, domain);
        done(&last)
    }) {
        return last;
    }
    panic!("audit of {domain} never got there:\n{last:#?}");
}

fn field<'a>(record: &'a Value, name: &str) -> &'a str {
    record[name].as_str().unwrap_or_default()
}

fn events<'a>(records: &'a [Value], event: &'a str) -> impl Iterator<Item = &'a Value> {
    records.iter().filter(move |r| field(r, "event") == event)
}

fn has_event(records: &[Value], event: &str, reason_part: &str) -> bool {
    events(records, event).any(|r| field(r, "reason").contains(reason_part))
}

fn sessions(d: &TestDaemon, name: &str) -> Vec<Value> {
    json_array(d.vmgate(&["console-sessions", name, "--json"]).ok())
}

/// The session id `console-sessions` lists for `client`.
#[track_caller]
fn session_id(d: &TestDaemon, name: &str, client: &str) -> u64 {
    let list = sessions(d, name);
    list.iter()
        .find(|s| field(s, "client") == client)
        .and_then(|s| s["id"].as_u64())
        .unwrap_or_else(|| panic!("no session of {client}:\n{list:#?}"))
}

fn client_of(c: &RfbClient) -> String {
    c.local_addr().expect("a TCP client").to_string()
}

/// Connects with `password` and checks that the session serves a full frame.
async fn open_session(port: u16, password: Option<&str>, shared: bool) -> RfbClient {
    let mut c = RfbClient::connect(port, password, shared)
        .await
        .expect("console session");
    assert!(c.full_update().await.expect("first frame") > 0);
    c
}

/// The error text of a connection the gateway must refuse.
async fn refusal(addr: impl Into<ConsoleAddr>, password: Option<&str>, shared: bool) -> String {
    match RfbClient::connect(addr, password, shared).await {
        Ok(c) => panic!("the gateway admitted {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// Waits for the server to close a raw TCP connection (EOF or error), dropping what it sent.
async fn server_closes(stream: &mut tokio::net::TcpStream, deadline: Duration) -> bool {
    let drain = async {
        let mut buf = [0u8; 256];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(deadline, drain).await.is_ok()
}

#[tokio::test]
async fn none_console_is_captured_and_goes_away_with_the_guest() {
    if !tools_present() {
        return;
    }
    let d = TestDaemon::start_with(&vnc_config(0, ""));
    let port = start_guest(&d, "g", "");
    assert!((17_000..17_040).contains(&port), "port {port}");
    let display = port - 5900;
    assert_eq!(
        d.vmgate(&["vncdisplay", "g"]).ok(),
        format!("127.0.0.1:{display}\n")
    );
    assert_eq!(
        d.vmgate(&["domdisplay", "g"]).ok(),
        format!("vnc://127.0.0.1:{display}\n")
    );
    let info = d.vmgate(&["dominfo", "g"]).ok().to_owned();
    assert!(
        info.lines().any(|l| l
            .split_whitespace()
            .eq(["Graphics:", &format!("vnc://127.0.0.1:{display}")])),
        "{info}"
    );

    let png = d.dir().join("g.png");
    let cap = gvnccapture(&target(port), &png, None);
    assert!(cap.ok, "{}", cap.transcript);
    assert_eq!(png_size(&png), Some((640, 480)));

    d.vmgate(&["destroy", "g"]).ok();
    assert!(
        wait_until(CUT_DEADLINE, || TcpStream::connect(("127.0.0.1", port))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)),
        "the console still listens after destroy"
    );
    assert!(d.vmgate(&["list", "--all"]).ok().contains("shut off"));
    let err = d.vmgate(&["vncdisplay", "g"]).err().to_owned();
    assert!(!err.is_empty());
}

#[tokio::test]
async fn password_console_audits_everything_and_never_the_password() {
    if !tools_present() {
        return;
    }
    const PASSWORD: &str = "Qx7!pZ2w";
    const WRONG: &str = "Wr0ng#9k";
    let d = TestDaemon::start_with(&vnc_config(1, ""));
    let port = start_guest(&d, "g", &format!("passwd = \"{PASSWORD}\""));

    let png = d.dir().join("right.png");
    let cap = gvnccapture(&target(port), &png, Some(PASSWORD));
    assert!(cap.ok, "{}", cap.transcript);
    assert_eq!(png_size(&png), Some((640, 480)));
    let png = d.dir().join("wrong.png");
    let cap = gvnccapture(&target(port), &png, Some(WRONG));
    assert!(!cap.ok, "a wrong password captured:\n{}", cap.transcript);
    assert!(!png.exists());

    let records = audit_until(&d, "g", |r| {
        ["connect", "auth-success", "auth-failure", "disconnect"]
            .iter()
            .all(|e| events(r, e).next().is_some())
    });
    for r in &records {
        assert_eq!(field(r, "domain"), "g", "{r}");
        let source = field(r, "source");
        let port = source.strip_prefix("127.0.0.1:").map(str::parse::<u16>);
        assert!(matches!(port, Some(Ok(_))), "source of {r}");
    }
    for event in ["auth-success", "auth-failure", "disconnect"] {
        for r in events(&records, event) {
            assert_eq!(field(r, "security_type"), "vnc", "{r}");
        }
    }
    assert!(has_event(&records, "auth-failure", "authentication failed"));

    let text = d.vmgate(&["audit", "--domain", "g"]).ok().to_owned();
    let json = d
        .vmgate(&["audit", "--domain", "g", "--json"])
        .ok()
        .to_owned();
    let log = d.log();
    for secret in [PASSWORD, WRONG] {
        assert!(!text.contains(secret), "audit shows {secret}:\n{text}");
        assert!(!json.contains(secret), "audit --json shows {secret}");
        assert!(
            !log.contains(secret),
            "the daemon log shows {secret}:\n{log}"
        );
    }
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_source_out() {
    let d = TestDaemon::start_with(&vnc_config(2, "vnc_auth_max_failures = 3"));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    for i in 0..3 {
        let err = refusal(port, Some("wrong"), true).await;
        assert!(err.contains("authentication failed"), "attempt {i}: {err}");
    }
    let err = refusal(port, Some("secret"), true).await;
    assert!(err.contains("locked out"), "{err}");
    let records = audit_until(&d, "g", |r| {
        events(r, "lockout").next().is_some() && has_event(r, "auth-failure", "locked out")
    });
    assert_eq!(events(&records, "lockout").count(), 1, "{records:#?}");
}

#[tokio::test]
async fn timeouts_and_garbage_do_not_count_towards_the_lockout() {
    let extra = "vnc_auth_max_failures = 2\nvnc_handshake_timeout_secs = 1";
    let d = TestDaemon::start_with(&vnc_config(3, extra));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    for _ in 0..2 {
        let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        assert!(
            server_closes(&mut idle, CUT_DEADLINE).await,
            "an idle handshake was not timed out"
        );
    }
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("send junk");
    assert!(server_closes(&mut junk, CUT_DEADLINE).await);
    let err = refusal(port, Some("wrong"), true).await;
    assert!(err.contains("authentication failed"), "{err}");

    open_session(port, Some("secret"), true).await;
    let records = audit_until(&d, "g", |r| events(r, "auth-success").next().is_some());
    assert!(
        has_event(&records, "disconnect", "timed out"),
        "{records:#?}"
    );
    assert_eq!(events(&records, "lockout").count(), 0, "{records:#?}");
}

#[tokio::test]
async fn idle_connections_cannot_keep_a_user_out() {
    if !tools_present() {
        return;
    }
    let d = TestDaemon::start_with(&vnc_config(4, "vnc_max_pending = 3"));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    // The gateway has seen all ten before the real client comes.
    audit_until(&d, "g", |r| events(r, "connect").count() >= 10);
    let png = d.dir().join("g.png");
    let cap = gvnccapture(&target(port), &png, Some("secret"));
    assert!(cap.ok, "{}", cap.transcript);
    assert_eq!(png_size(&png), Some((640, 480)));
    let records = audit_until(&d, "g", |r| {
        events(r, "disconnect")
            .filter(|e| field(e, "reason").contains("evicted"))
            .count()
            >= 7
    });
    assert!(events(&records, "auth-success").next().is_some());
    drop(idle);
}

#[tokio::test]
async fn sessions_are_listed_and_cut_by_operators_and_password_changes() {
    let d = TestDaemon::start_with(&vnc_config(5, ""));
    let port = start_guest(&d, "g", "passwd = \"secret\"");

    let mut c1 = open_session(port, Some("secret"), true).await;
    let client = client_of(&c1);
    let listed = sessions(&d, "g");
    let entry = listed
        .iter()
        .find(|s| field(s, "client") == client)
        .unwrap_or_else(|| panic!("{client} not listed:\n{listed:#?}"));
    assert_eq!(field(entry, "security_type"), "vnc");
    assert_eq!(entry["shared"], Value::Bool(true));
    assert!(entry["bytes_out"].as_u64().is_some_and(|b| b > 640 * 480));
    let id = session_id(&d, "g", &client);
    d.vmgate(&["console-disconnect", "g", &id.to_string()]).ok();
    assert!(
        c1.wait_closed(CUT_DEADLINE).await,
        "console-disconnect did not cut"
    );
    let records = audit_until(&d, "g", |r| {
        events(r, "disconnect")
            .any(|e| field(e, "source") == client && field(e, "reason").contains("disconnected by"))
    });
    assert!(!records.is_empty());
    assert!(
        wait_until(CUT_DEADLINE, || sessions(&d, "g").is_empty()),
        "the cut session is still listed"
    );

    // --connected disconnect: the old password's session goes, the new password works.
    let mut c2 = open_session(port, Some("secret"), true).await;
    let client2 = client_of(&c2);
    let out = d.vmgate_stdin(
        &[
            "vnc-passwd",
            "g",
            "--password-stdin",
            "--connected",
            "disconnect",
        ],
        Some("newpw\n"),
    );
    out.ok();
    assert!(
        c2.wait_closed(CUT_DEADLINE).await,
        "the old password's session stayed"
    );
    audit_until(&d, "g", |r| {
        events(r, "revoked").any(|e| field(e, "source") == client2)
            && events(r, "password-change").next().is_some()
    });
    let err = refusal(port, Some("secret"), true).await;
    assert!(err.contains("authentication failed"), "{err}");
    let mut c3 = open_session(port, Some("newpw"), true).await;

    // --connected keep: the session outlives the change.
    d.vmgate_stdin(
        &["vnc-passwd", "g", "--password-stdin", "--connected", "keep"],
        Some("pw3\n"),
    )
    .ok();
    assert!(c3.full_update().await.expect("frame after keep") > 0);
    assert_eq!(sessions(&d, "g").len(), 1);

    // --connected fail: refused while a session is open; nothing changes.
    let out = d.vmgate_stdin(
        &["vnc-passwd", "g", "--password-stdin", "--connected", "fail"],
        Some("pw4\n"),
    );
    let err = out.err().to_owned();
    assert!(err.contains("session"), "{err}");
    open_session(port, Some("pw3"), true).await;
    let err = refusal(port, Some("pw4"), true).await;
    assert!(err.contains("authentication failed"), "{err}");
    assert!(c3.full_update().await.expect("frame after fail") > 0);
}

#[tokio::test]
async fn allow_exclusive_cuts_the_others_and_then_refuses_newcomers() {
    let d = TestDaemon::start_with(&vnc_config(6, ""));
    let port = start_guest(&d, "g", "share_policy = \"allow-exclusive\"");
    let mut shared = open_session(port, None, true).await;
    let mut exclusive = open_session(port, None, false).await;
    assert!(
        shared.wait_closed(CUT_DEADLINE).await,
        "the shared session survived an exclusive client"
    );
    let err = refusal(port, None, true).await;
    assert!(err.contains("initialisation"), "{err}");
    assert!(exclusive.full_update().await.expect("exclusive frame") > 0);
    audit_until(&d, "g", |r| has_event(r, "disconnect", "exclusive"));
}

#[tokio::test]
async fn force_shared_refuses_exclusive_access() {
    let d = TestDaemon::start_with(&vnc_config(7, ""));
    let port = start_guest(&d, "g", "share_policy = \"force-shared\"");
    let mut first = open_session(port, None, true).await;
    let err = refusal(port, None, false).await;
    assert!(err.contains("initialisation"), "{err}");
    open_session(port, None, true).await;
    assert!(first.full_update().await.expect("frame") > 0);
    audit_until(&d, "g", |r| has_event(r, "disconnect", "force-shared"));
}

#[tokio::test]
async fn ignore_admits_every_exclusive_client() {
    let d = TestDaemon::start_with(&vnc_config(8, ""));
    let port = start_guest(&d, "g", "share_policy = \"ignore\"");
    let mut a = open_session(port, None, false).await;
    let mut b = open_session(port, None, false).await;
    assert!(a.full_update().await.expect("a's frame") > 0);
    assert!(b.full_update().await.expect("b's frame") > 0);
    assert_eq!(sessions(&d, "g").len(), 2);
}

#[tokio::test]
async fn expired_passwords_refuse_logins_and_cut_sessions() {
    let d = TestDaemon::start_with(&vnc_config(9, ""));
    let old = start_guest(
        &d,
        "old",
        "passwd = \"secret\"\npasswd_valid_to = \"2000-01-01T00:00:00Z\"",
    );
    let err = refusal(old, Some("secret"), true).await;
    assert!(err.contains("password expired"), "{err}");

    let port = start_guest(&d, "g", "passwd = \"secret\"");
    let mut c = open_session(port, Some("secret"), true).await;
    d.vmgate_stdin(
        &["vnc-passwd", "g", "--password-stdin", "--expire-now"],
        Some("secret\n"),
    )
    .ok();
    assert!(
        c.wait_closed(CUT_DEADLINE).await,
        "--expire-now left the session open"
    );
    let err = refusal(port, Some("secret"), true).await;
    assert!(err.contains("password expired"), "{err}");
    // Expiry is not a guess: none of this counts towards the lockout.
    let records = audit_until(&d, "old", |r| has_event(r, "auth-failure", "expired"));
    assert_eq!(events(&records, "lockout").count(), 0);
}

#[tokio::test]
async fn garbage_is_dropped_and_the_console_keeps_serving() {
    if !tools_present() {
        return;
    }
    let d = TestDaemon::start_with(&vnc_config(10, ""));
    let port = start_guest(&d, "g", "");
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut version = [0u8; 12];
    junk.read_exact(&mut version).await.expect("server version");
    assert_eq!(&version, b"RFB 003.008\n");
    junk.write_all(b"\x16\x03\x01\x02\x00garbage, not a version\r\n")
        .await
        .expect("send junk");
    assert!(
        server_closes(&mut junk, CUT_DEADLINE).await,
        "a client sending junk was kept"
    );
    let png = d.dir().join("g.png");
    let cap = gvnccapture(&target(port), &png, None);
    assert!(cap.ok, "{}", cap.transcript);
    assert_eq!(png_size(&png), Some((640, 480)));
    audit_until(&d, "g", |r| has_event(r, "disconnect", "handshake failed"));
}

#[tokio::test]
async fn unix_socket_console() {
    let d = TestDaemon::start_with(&vnc_config(11, "vnc_auto_unix_socket = true"));
    let text = "name = \"g\"\n[graphics]\ntype = \"vnc\"\n";
    let path = d.file("g.toml", text);
    d.vmgate(&["define", path.to_str().expect("utf-8 path")])
        .ok();
    d.vmgate(&["start", "g"]).ok();
    let socket = d.sock_dir().join("vnc/g.sock");
    assert_eq!(
        d.vmgate(&["domdisplay", "g"]).ok(),
        format!("vnc+unix://{}\n", socket.display())
    );
    assert_eq!(
        std::fs::metadata(&socket)
            .expect("console socket")
            .permissions()
            .mode()
            & 0o777,
        0o660
    );
    let mut c = RfbClient::connect(socket.as_path(), None, true)
        .await
        .expect("session over the socket");
    assert!(c.full_update().await.expect("frame") > 0);
    let uid = nix::unistd::getuid();
    let listed = sessions(&d, "g");
    assert!(
        listed
            .iter()
            .any(|s| field(s, "client") == format!("uid {uid}")),
        "{listed:#?}"
    );
    d.vmgate(&["destroy", "g"]).ok();
    assert!(c.wait_closed(CUT_DEADLINE).await);
    assert!(wait_until(CUT_DEADLINE, || !socket.exists()));
}

#[tokio::test]
async fn audit_survives_a_restart() {
    let mut d = TestDaemon::start_with(&vnc_config(12, ""));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    open_session(port, Some("secret"), true).await;
    refusal(port, Some("wrong"), true).await;
    let before = audit_until(&d, "g", |r| {
        has_event(r, "disconnect", "client closed") && events(r, "auth-failure").next().is_some()
    });
    assert!(d.stop(), "vmgated did not stop cleanly:\n{}", d.log());
    d.restart();
    let after = audit(&d, "g");
    for record in &before {
        assert!(after.contains(record), "lost {record} after restart");
    }
}
