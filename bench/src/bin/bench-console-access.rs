//! Console access benchmark: what user logins and live revocation cost, next to QEMU's
//! own VeNCrypt X509SASL server (Cyrus SASL with a sasldb) measured in the same run when
//! `qemu-system-x86_64` and `saslpasswd2` are on PATH.
//!
//! - X509SASL/SCRAM-SHA-256 login with gtk-vnc's `gvnccapture` as a new process, start to
//!   PNG saved, median of 10: through the gateway and against QEMU.
//! - X509Plain (TigerVNC's login) in process, TCP connect to ServerInit, p50/p99 of 50:
//!   the gateway only (QEMU has no Plain).
//! - SASL logins per second on the API (UNIX socket, SCRAM-SHA-256), next to connections
//!   that need no login, both on vmgated.
//! - Revocation: `Console.ChangeAcl` removing a user to that user's session socket
//!   closed, p50/p99 of 100 (QEMU and libvirt never cut such a session).
//!
//! Run: `cargo run --profile dist -p vmgate-bench --bin bench-console-access`. Prints
//! Markdown; asserts nothing.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use vmgate::{ConnectUri, Connection};
use vmgate_bench::{Sample, load_average, machine, repeat_captures};
use vmgate_proto::v1::{AclChangeRequest, AclRule, DomainRef, acl_change_request::Change};
use vmgate_tests::{
    TestDaemon,
    console::{ConsolePki, gvnc_tools, start_guest, target, tls_console_config},
    on_path,
    peer::{Killed, free_port, qemu_version, spawn_guest, wait_listening},
    vnc::{GvncHome, RfbClient, gvnccapture_login},
};

const CAPTURES: usize = 10;
const HANDSHAKES: usize = 50;
const LOGINS: usize = 200;
const REVOCATIONS: usize = 100;
const USER: &str = "alice";
const PASSWORD: &str = "alice-pw";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    println!("{}", machine());
    let pki = ConsolePki::new().context("certtool (gnutls-bin) is needed")?;
    let daemon = TestDaemon::start_with(&tls_console_config(
        21_000,
        &pki.cert_dir,
        "vnc_sasl = true\n",
    ));
    for user in [USER, "bob"] {
        daemon
            .vmgate_stdin(
                &["sasl-user", "add", user, "--password-stdin"],
                Some(&format!("{PASSWORD}\n")),
            )
            .ok();
    }
    let port = start_guest(&daemon, "g", "");
    let qemu = QemuSasl::start(&pki.cert_dir).await;
    if let Err(e) = &qemu {
        println!("QEMU peer: not measured ({e:#}).\n");
    }

    captures(&pki, port, qemu.as_ref().ok())?;
    plain_handshakes(&pki, port).await?;
    drop(qemu);
    api_logins().await?;
    revocations(&pki, &daemon, port).await?;
    println!("At the end: {}.", load_average());
    Ok(())
}

fn captures(pki: &ConsolePki, port: u16, qemu: Option<&QemuSasl>) -> anyhow::Result<()> {
    let Some(nss_wrapper) = gvnc_tools() else {
        println!("gvnccapture, expect or libnss-wrapper missing: login times not measured.\n");
        return Ok(());
    };
    let home = GvncHome::new(&nss_wrapper, &pki.ca.cert, Some(&pki.client));
    println!(
        "### X509SASL (SCRAM-SHA-256) login: gvnccapture start to PNG saved (median of {CAPTURES})\n"
    );
    println!("| server | median ms | min ms |");
    println!("|---|---|---|");
    let mut rows = vec![("vmgated gateway (test guest)".to_owned(), port)];
    if let Some(q) = qemu {
        rows.push((format!("QEMU {} direct", q.version), q.port));
    }
    for (server, port) in rows {
        let png = home.path().join("out.png");
        let (s, note) = repeat_captures(CAPTURES, || {
            gvnccapture_login(&target(port), &png, USER, PASSWORD, &home)
        });
        println!(
            "| {server} | {:.0}{note} | {:.0} |",
            s.quantile_ms(0.5),
            s.quantile_ms(0.0)
        );
    }
    println!();
    Ok(())
}

async fn plain_handshakes(pki: &ConsolePki, port: u16) -> anyhow::Result<()> {
    let creds = pki.creds(Some(&pki.client));
    let mut latencies = Vec::with_capacity(HANDSHAKES);
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        let c = RfbClient::connect_plain(port, &creds, USER, PASSWORD, true).await?;
        latencies.push(t.elapsed());
        drop(c);
    }
    let s = Sample {
        latencies,
        wall: Duration::ZERO,
    };
    println!("### X509Plain login in process: TCP connect to ServerInit ({HANDSHAKES} runs)\n");
    println!("| server | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| vmgated gateway (test guest) | {:.2} | {:.2} |\n",
        s.quantile_ms(0.5),
        s.quantile_ms(0.99)
    );
    Ok(())
}

/// Connections opened and checked (`Admin.Version`) per second, with and without a SASL
/// login, on two daemons sharing nothing.
async fn api_logins() -> anyhow::Result<()> {
    let open = TestDaemon::start();
    // Users are added before SASL is turned on for the socket they are added through.
    let mut sasl = TestDaemon::start();
    sasl.vmgate_stdin(
        &["sasl-user", "add", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();
    assert!(sasl.stop());
    sasl.set_extra_config("auth_unix_rw = \"sasl\"\n");
    sasl.restart();
    let auth_dir = tempfile::tempdir()?;
    let auth = auth_dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[credentials]]\nhost = \"localhost\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n"
        ),
    )?;
    vmgate_tests::pki::set_mode(&auth, 0o600);
    set_auth_file(&auth);
    println!("### API connections opened and checked per second, UNIX socket ({LOGINS} each)\n");
    println!("| connection | per s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (what, d) in [
        ("no login (auth_unix_rw = none)", &open),
        ("SASL SCRAM-SHA-256 login", &sasl),
    ] {
        let uri: ConnectUri = d.uri().parse()?;
        let start = Instant::now();
        let mut latencies = Vec::with_capacity(LOGINS);
        for _ in 0..LOGINS {
            let t = Instant::now();
            let c = Connection::open(&uri, false).await?;
            latencies.push(t.elapsed());
            drop(c);
        }
        let s = Sample {
            latencies,
            wall: start.elapsed(),
        };
        println!("| {what} | {} |", s.cells());
    }
    println!();
    Ok(())
}

/// The client library reads `VMGATE_AUTH_FILE` when a daemon asks for a login.
fn set_auth_file(path: &Path) {
    #[allow(unsafe_code)]
    // SAFETY: no other thread of this process reads or writes the environment: the
    // runtime's workers run only this benchmark's futures, none of which touch it.
    unsafe {
        std::env::set_var("VMGATE_AUTH_FILE", path)
    };
}

fn rule(user: &str) -> AclRule {
    AclRule {
        kind: "user".into(),
        pattern: user.into(),
        policy: "allow".into(),
        ..Default::default()
    }
}

async fn change(api: &mut Connection, change: Change) -> anyhow::Result<u32> {
    let request = AclChangeRequest {
        domain: Some(DomainRef { key: "g".into() }),
        change: Some(change),
    };
    Ok(api
        .console
        .change_acl(request)
        .await?
        .into_inner()
        .disconnected)
}

async fn revocations(pki: &ConsolePki, d: &TestDaemon, port: u16) -> anyhow::Result<()> {
    let uri: ConnectUri = d.uri().parse()?;
    let mut api = Connection::open(&uri, false).await?;
    let creds = pki.creds(Some(&pki.client));
    change(&mut api, Change::Put(rule(USER))).await?;
    let (mut after_reply, mut from_call, mut stayed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..REVOCATIONS {
        change(&mut api, Change::Put(rule("bob"))).await?;
        let mut bob = RfbClient::connect_plain(port, &creds, "bob", PASSWORD, true).await?;
        bob.full_update().await?;
        let called = Instant::now();
        change(&mut api, Change::Remove(rule("bob"))).await?;
        let replied = Instant::now();
        if bob.wait_closed(Duration::from_secs(5)).await {
            after_reply.push(replied.elapsed());
            from_call.push(called.elapsed());
        } else {
            stayed += 1;
        }
    }
    let sample = |latencies| Sample {
        latencies,
        wall: Duration::ZERO,
    };
    println!(
        "### Revocation: Console.ChangeAcl removing a user to that user's session socket closed ({REVOCATIONS} trials)\n"
    );
    println!("| measured from | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (from, s) in [
        ("the call returning", sample(after_reply)),
        ("the call starting", sample(from_call)),
    ] {
        println!(
            "| {from} | {:.3} | {:.3} |",
            s.quantile_ms(0.5),
            s.quantile_ms(0.99)
        );
    }
    if stayed > 0 {
        println!("\n{stayed} sessions were NOT closed within 5 s.");
    }
    println!(
        "\nQEMU's authz objects are checked only at login and libvirt has no console ACL: an open session is never cut there.\n"
    );
    Ok(())
}

/// QEMU with VNC X509SASL: SCRAM-SHA-256 and PLAIN from a sasldb holding the same user.
struct QemuSasl {
    version: String,
    port: u16,
    _guest: Killed,
    _dir: tempfile::TempDir,
}

impl QemuSasl {
    async fn start(cert_dir: &Path) -> anyhow::Result<QemuSasl> {
        let version = qemu_version()?;
        if !on_path("saslpasswd2") {
            return Err(anyhow!("saslpasswd2 (sasl2-bin) is not on PATH"));
        }
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("passwd.db");
        std::fs::write(
            dir.path().join("qemu.conf"),
            format!(
                "mech_list: scram-sha-256 plain\nsasldb_path: {}\n",
                db.display()
            ),
        )?;
        let mut saslpasswd = Command::new("saslpasswd2")
            .args(["-p", "-a", "qemu", "-c", "-f"])
            .arg(&db)
            .arg(USER)
            .stdin(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = saslpasswd.stdin.take() {
            use std::io::Write;
            stdin.write_all(PASSWORD.as_bytes())?;
        }
        if !saslpasswd.wait()?.success() {
            return Err(anyhow!("saslpasswd2 failed"));
        }
        let port = free_port((21_100, 21_199), &[])?;
        let creds = format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on",
            cert_dir.display()
        );
        let guest = spawn_guest(
            dir.path(),
            "x509sasl",
            &["-object", &creds],
            &format!("127.0.0.1:{},tls-creds=tls0,sasl=on", port - 5900),
            &[("SASL_CONF_PATH", dir.path())],
        )?;
        if !wait_listening(port) {
            return Err(anyhow!("QEMU did not open port {port}"));
        }
        Ok(QemuSasl {
            version,
            port,
            _guest: guest,
            _dir: dir,
        })
    }
}
