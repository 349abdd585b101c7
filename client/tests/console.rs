//! The console commands against the fake daemon: `vncdisplay`, `domdisplay` (and that
//! `dominfo` prints the same address), `console-sessions`, `console-disconnect`, `vnc-passwd`
//! (what reaches the daemon, stdin and script modes, the prompt on a real terminal) and `audit`.

mod fake;
mod run;

use std::time::Duration;

use fake::{ALPHA_UUID, Fake, SINCE};
use run::{Run, finish, vmgate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmgate_proto::v1::{ConnectedPolicy, Display, SetPasswordRequest};

async fn ok(fake: &Fake, args: &[&str], stdin: Option<&str>) -> String {
    let run = vmgate(&fake.uri("test"), args, stdin).await;
    assert!(run.ok, "{args:?} failed: {}", run.stderr);
    assert_eq!(run.stderr, "", "{args:?}");
    run.stdout
}

async fn fails(fake: &Fake, args: &[&str], stdin: Option<&str>) -> Run {
    let run = vmgate(&fake.uri("test"), args, stdin).await;
    assert!(!run.ok, "{args:?} succeeded: {}", run.stdout);
    assert_eq!(run.stdout, "", "{args:?}");
    run
}

fn tcp(host: &str, port: u32) -> Display {
    Display {
        kind: "vnc".into(),
        host: host.into(),
        port,
        socket_path: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn display_addresses_and_dominfo_agree() {
    let fake = Fake::start("test").await;
    let unix = Display {
        kind: "vnc".into(),
        host: String::new(),
        port: 0,
        socket_path: "/run/vmgate/vnc/alpha.sock".into(),
    };
    let cases = [
        (None, "127.0.0.1:0\n", "vnc://127.0.0.1:0\n"),
        (Some(tcp("::1", 5901)), "[::1]:1\n", "vnc://[::1]:1\n"),
        (Some(tcp("0.0.0.0", 5902)), ":2\n", "vnc://localhost:2\n"),
        (
            Some(unix),
            "/run/vmgate/vnc/alpha.sock\n",
            "vnc+unix:///run/vmgate/vnc/alpha.sock\n",
        ),
    ];
    for (display, vnc, uri) in cases {
        if let Some(d) = display {
            fake.set_display("alpha", Some(d));
        }
        assert_eq!(ok(&fake, &["vncdisplay", "alpha"], None).await, vnc);
        assert_eq!(ok(&fake, &["domdisplay", ALPHA_UUID], None).await, uri);
        let info = ok(&fake, &["dominfo", "alpha"], None).await;
        assert!(info.contains(&format!("Graphics:       {uri}")), "{info}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_console_says_why() {
    let fake = Fake::start("test").await;
    for cmd in ["vncdisplay", "domdisplay"] {
        let run = fails(&fake, &[cmd, fake::BETA_UUID], None).await;
        assert_eq!(
            run.stderr,
            "error: Domain 'beta' has no VNC console (it is shut off)\n"
        );
    }
    fake.set_display("alpha", None);
    for cmd in ["vncdisplay", "domdisplay"] {
        let run = fails(&fake, &[cmd, "alpha"], None).await;
        assert_eq!(
            run.stderr,
            "error: Domain 'alpha' has no VNC console (no [graphics] in its definition)\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_table_and_json() {
    let fake = Fake::start("test").await;
    assert_eq!(
        ok(&fake, &["console-sessions", "alpha"], None).await,
        " Id   Client            Security            Identity   Since                  In        \
         Out\n\
         -------------------------------------------------------------------------------------\
         ------------\n \
         1    127.0.0.1:53422   vnc                 -          2025-01-31T18:00:00Z   2.0 KiB   \
         1.2 MiB\n \
         12   uid 1000          vencrypt-x509sasl   alice      2025-01-31T18:01:01Z   100 B     \
         5.0 GiB\n"
    );
    let text = ok(&fake, &["console-sessions", "--json", "alpha"], None).await;
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        value[1],
        serde_json::json!({
            "id": 12,
            "client": "uid 1000",
            "security_type": "vencrypt-x509sasl",
            "identity": "alice",
            "user": "alice",
            "dn": "",
            "connected_since": SINCE + 61,
            "bytes_in": 100,
            "bytes_out": 5u64 * 1024 * 1024 * 1024,
            "shared": false,
        })
    );
    assert_eq!(value[0]["identity"], "");
    let run = fails(&fake, &["console-sessions", "beta"], None).await;
    assert_eq!(run.stderr, "error: domain 'beta' is not running\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_one_session() {
    let fake = Fake::start("test").await;
    assert_eq!(
        ok(&fake, &["console-disconnect", "alpha", "12"], None).await,
        "Session 12 of domain 'alpha' disconnected\n"
    );
    let table = ok(&fake, &["console-sessions", "alpha"], None).await;
    assert_eq!(table.lines().count(), 3, "{table}");
    let run = fails(&fake, &["console-disconnect", "alpha", "12"], None).await;
    assert_eq!(
        run.stderr,
        "error: domain 'alpha' has no console session 12; list them with vmgate \
         console-sessions alpha\n"
    );
}

fn request(key: &str, password: &str) -> SetPasswordRequest {
    SetPasswordRequest {
        domain: Some(vmgate_proto::v1::DomainRef { key: key.into() }),
        password: password.into(),
        valid_to: String::new(),
        expire_now: false,
        connected: ConnectedPolicy::Default.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vnc_passwd_sends_exactly_the_stdin_line() {
    let fake = Fake::start("test").await;
    let stdin = ["vnc-passwd", "alpha", "--password-stdin"];
    assert_eq!(
        ok(&fake, &stdin, Some(" pa ss\t\nnext line\n")).await,
        "Password of domain 'alpha' changed\n"
    );
    ok(&fake, &stdin, Some("crlf\r\n")).await;
    ok(&fake, &stdin, Some("noeol")).await;
    ok(&fake, &stdin, Some("12345678\n")).await;
    assert_eq!(
        ok(
            &fake,
            &[
                "vnc-passwd",
                ALPHA_UUID,
                "--password-stdin",
                "--valid-to",
                "2030-01-31T19:00:00+01:00",
                "--connected",
                "disconnect",
            ],
            Some("\n"),
        )
        .await,
        "Password of domain 'alpha' changed; 1 session(s) disconnected\n"
    );
    ok(
        &fake,
        &[
            "vnc-passwd",
            "beta",
            "--password-stdin",
            "--expire-now",
            "--connected",
            "fail",
        ],
        Some("x\n"),
    )
    .await;
    assert_eq!(
        fake.passwords(),
        [
            request("alpha", " pa ss\t"),
            request("alpha", "crlf"),
            request("alpha", "noeol"),
            request("alpha", "12345678"),
            SetPasswordRequest {
                valid_to: "2030-01-31T19:00:00+01:00".into(),
                connected: ConnectedPolicy::Disconnect.into(),
                ..request(ALPHA_UUID, "")
            },
            SetPasswordRequest {
                expire_now: true,
                connected: ConnectedPolicy::Fail.into(),
                ..request("beta", "x")
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vnc_passwd_refusals_send_nothing() {
    let fake = Fake::start("test").await;
    let run = fails(
        &fake,
        &["vnc-passwd", "alpha", "--password-stdin"],
        Some("123456789\n"),
    )
    .await;
    assert_eq!(
        run.stderr,
        "error: the VNC password on stdin is longer than 8 bytes; VNC passwords are at most 8 \
         bytes (the RFB DES challenge uses no more), nothing was changed\n"
    );
    let run = fails(
        &fake,
        &[
            "vnc-passwd",
            "alpha",
            "--password-stdin",
            "--valid-to",
            "tomorrow",
        ],
        Some("pw\n"),
    )
    .await;
    assert!(
        run.stderr
            .starts_with("error: invalid --valid-to 'tomorrow': "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("RFC 3339"), "{}", run.stderr);
    let run = fails(
        &fake,
        &["vnc-passwd", "alpha", "--password-stdin"],
        Some(""),
    )
    .await;
    assert!(
        run.stderr.starts_with("error: no password on stdin"),
        "{}",
        run.stderr
    );
    assert_eq!(fake.handshakes(), 0, "refused before connecting");
    let run = fails(
        &fake,
        &["vnc-passwd", "nosuch", "--password-stdin"],
        Some("pw\n"),
    )
    .await;
    assert_eq!(
        run.stderr,
        "error: domain 'nosuch' not found; list them with vmgate list --all\n"
    );
    let run = fails(&fake, &["vnc-passwd", "alpha", "secret"], None).await;
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert_eq!(fake.passwords(), []);
}

#[tokio::test(flavor = "multi_thread")]
async fn script_mode_cannot_prompt_but_takes_the_next_line() {
    let fake = Fake::start("test").await;
    let run = vmgate(
        &fake.uri("test"),
        &[],
        Some("vnc-passwd alpha\ndomstate alpha\n"),
    )
    .await;
    assert!(!run.ok);
    assert_eq!(
        run.stderr,
        "error: vnc-passwd cannot prompt for the password while commands are read from stdin; \
         add --password-stdin and put the password on the line after the command, or run \
         `vmgate vnc-passwd DOMAIN` on its own from a terminal\n"
    );
    assert_eq!(run.stdout, "running\n", "the script went on");
    assert_eq!(fake.passwords(), []);

    let script = "vnc-passwd alpha --password-stdin\ns3cret\n\
                  vnc-passwd nosuch --password-stdin\nlist\n\
                  vnc-passwd alpha --password-stdin --bogus\nversion\n\
                  vnc-passwd beta --password-stdin\n\n\
                  domstate beta\n";
    let run = vmgate(&fake.uri("test"), &[], Some(script)).await;
    assert!(!run.ok);
    assert_eq!(
        run.stdout,
        "Password of domain 'alpha' changed\nPassword of domain 'beta' changed\nshut off\n"
    );
    assert!(
        run.stderr
            .starts_with("error: domain 'nosuch' not found; list them with vmgate list --all\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .ends_with("error: the next line, meant as the password, was skipped\n"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("version"), "{}", run.stderr);
    assert_eq!(
        fake.passwords(),
        [request("alpha", "s3cret"), request("beta", "")],
        "the line after the failed nosuch command was its password, not a command"
    );
    assert_eq!(
        fake.handshakes(),
        2,
        "one connection for each of the two runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_without_a_terminal_is_an_error() {
    let fake = Fake::start("test").await;
    // setsid: no controlling terminal, so /dev/tty cannot be opened.
    let mut cmd = tokio::process::Command::new("setsid");
    cmd.arg("-w")
        .arg(env!("CARGO_BIN_EXE_vmgate"))
        .args(["-c", &fake.uri("test"), "vnc-passwd", "alpha"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let run = finish(cmd, Some("secret\nsecret\n")).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .starts_with("error: cannot prompt for the password: no terminal ("),
        "{}",
        run.stderr
    );
    assert!(run.stderr.ends_with("; pipe it in with --password-stdin\n"));
    assert_eq!(fake.passwords(), []);
}

/// Reads `out` into `seen` until it holds `pattern`.
async fn wait_for(out: &mut (impl AsyncReadExt + Unpin), seen: &mut String, pattern: &str) {
    let read = async {
        let mut buf = [0u8; 256];
        while !seen.contains(pattern) {
            let n = out.read(&mut buf).await.expect("read the terminal");
            assert!(n > 0, "terminal closed before {pattern:?}; saw {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("no {pattern:?} on the terminal; saw {seen:?}"));
}

/// `vmgate vnc-passwd alpha` on a pseudo-terminal (`script` runs it on one), answering the two
/// prompts with `first` and `second`. Returns what the terminal showed.
async fn on_a_terminal(fake: &Fake, first: &str, second: &str) -> (bool, String) {
    let line = shell_words::join([
        env!("CARGO_BIN_EXE_vmgate"),
        "-c",
        &fake.uri("test"),
        "vnc-passwd",
        "alpha",
    ]);
    let mut script = tokio::process::Command::new("script");
    script
        .args(["-qefc", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = script.spawn().expect("spawn script");
    let mut input = child.stdin.take().expect("stdin");
    let mut output = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    wait_for(
        &mut output,
        &mut seen,
        "New VNC password for domain 'alpha': ",
    )
    .await;
    input
        .write_all(format!("{first}\n").as_bytes())
        .await
        .expect("type");
    wait_for(&mut output, &mut seen, "Retype the new password: ").await;
    input
        .write_all(format!("{second}\n").as_bytes())
        .await
        .expect("type");
    let mut rest = String::new();
    output
        .read_to_string(&mut rest)
        .await
        .expect("read the rest");
    seen.push_str(&rest);
    drop(input);
    let status = child.wait().await.expect("script ends");
    (status.success(), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_on_a_terminal_asks_twice() {
    let fake = Fake::start("test").await;
    let (ok, seen) = on_a_terminal(&fake, "pw1", "pw1").await;
    assert!(ok, "{seen}");
    assert!(
        seen.contains("Password of domain 'alpha' changed"),
        "{seen}"
    );
    assert_eq!(fake.passwords(), [request("alpha", "pw1")]);
    let (ok, seen) = on_a_terminal(&fake, "pw1", "pw2").await;
    assert!(!ok, "{seen}");
    assert!(
        seen.contains("error: the two passwords do not match; nothing was changed"),
        "{seen}"
    );
    assert_eq!(fake.passwords().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_tables_json_and_calls() {
    let fake = Fake::start("test").await;
    assert_eq!(
        ok(&fake, &["audit"], None).await,
        " Time                       Event          Domain   Source            Security   \
         Identity   Reason\n\
         ------------------------------------------------------------------------------------\
         ------------------------\n \
         2025-01-31T18:00:00.250Z   connect        alpha    127.0.0.1:53422   vnc        \
         -          -\n \
         2025-01-31T18:00:02.250Z   auth-failure   alpha    127.0.0.1:53422   vnc        \
         alice      wrong password\n \
         2025-01-31T18:01:00.250Z   disconnect     beta     127.0.0.1:53422   vnc        \
         -          -\n"
    );
    let text = ok(
        &fake,
        &["audit", "--domain", ALPHA_UUID, "--limit", "1", "--json"],
        None,
    )
    .await;
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!([{
            "time": "2025-01-31T18:00:02.250Z",
            "time_ms": (SINCE + 2) * 1000 + 250,
            "event": "auth-failure",
            "domain": "alpha",
            "source": "127.0.0.1:53422",
            "security_type": "vnc",
            "identity": "alice",
            "reason": "wrong password",
        }])
    );
    ok(&fake, &["audit", "--since", "2025-01-31T18:00:01Z"], None).await;
    ok(&fake, &["audit", "--since", "15m"], None).await;
    let audits = fake.audits();
    assert_eq!(audits[0].0, "Audit");
    assert_eq!(audits[0].1.since, 0);
    assert_eq!(audits[0].1.limit, 0);
    assert_eq!(audits[0].1.domain, None);
    assert_eq!(audits[1].0, "DomainAudit");
    assert_eq!(audits[1].1.limit, 1);
    assert_eq!(
        audits[1].1.domain.as_ref().map(|d| d.key.as_str()),
        Some(ALPHA_UUID)
    );
    assert_eq!(audits[2].1.since, SINCE + 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let since = u64::try_from(audits[3].1.since).expect("positive");
    assert!((now - 900).abs_diff(since) < 60, "{since} vs {now}");

    let run = fails(&fake, &["audit", "--since", "yesterday"], None).await;
    assert!(
        run.stderr
            .starts_with("error: invalid --since 'yesterday': "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(30s, 15m, 1h, 2d)"), "{}", run.stderr);
    assert_eq!(fake.audits().len(), 4, "a bad --since calls nothing");
}
