//! Console gateway benchmark: what the per-guest VNC gateway costs a client, next to QEMU's
//! own VNC server measured in the same run when `qemu-system-x86_64` is on PATH (nothing is
//! installed here; without QEMU the peer rows say so).
//!
//! - Handshake: TCP connect to ServerInit received, security None and VNC password, median
//!   and p90 of 50, through the gateway (test guest) and against QEMU directly.
//! - gtk-vnc's `gvnccapture` as a new process, start to PNG saved, median of 10.
//! - Relay throughput: back-to-back non-incremental full-frame Raw updates for 3 s, through
//!   the gateway vs. the same test framebuffer server (`driver::test::rfb_server`) served
//!   directly from this process, and through a `socat` TCP proxy when socat exists; QEMU
//!   direct and through socat as the reference for a plain byte relay.
//! - Memory per idle authenticated session: the daemon's VmRSS before and after 1,000.
//! - Revocation latency: `Console.SetPassword` (policy disconnect) returning to the
//!   session's socket closed, p50/p99 of 50.
//!
//! Run: `cargo run --profile dist -p vmgate-bench --bin bench-gateway`. Prints Markdown; asserts
//! nothing.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use vmgate::{ConnectUri, Connection};
use vmgate_bench::{
    Sample, listed_sessions, load_average, machine, raise_nofile_limit, repeat_captures, rss,
};
use vmgate_proto::v1::{ConnectedPolicy, DefineRequest, DomainRef, SetPasswordRequest};
use vmgate_tests::{
    TestDaemon, on_path,
    peer::{Killed, free_port, qemu_version, spawn_guest, wait_listening},
    vnc::{ConsoleAddr, RfbClient, display_port, gvnccapture},
};
use vmgated::driver::test::{framebuffer::FramebufferHandle, rfb_server};

const HANDSHAKES: usize = 50;
const CAPTURES: usize = 10;
const STREAM_FOR: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
const IDLE_SESSIONS: usize = 1_000;
const REVOCATIONS: usize = 50;
const PASSWORD: &str = "secret";
/// This benchmark's own ports: the daemons' autoport range and the peers' ports.
const GATEWAY_PORTS: (u16, u16) = (18_000, 18_099);
const PEER_PORTS: (u16, u16) = (18_100, 18_199);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_nofile_limit();
    println!("{}", machine());

    let daemon = TestDaemon::start_with(&vnc_config(""));
    let uri: ConnectUri = daemon.uri().parse()?;
    let mut api = Connection::open(&uri, false).await?;
    let open = start_guest(&mut api, &daemon, "open", "").await?;
    let locked = start_guest(
        &mut api,
        &daemon,
        "locked",
        &format!("passwd = \"{PASSWORD}\""),
    )
    .await?;
    let qemu = Qemu::start().await;
    if let Err(e) = &qemu {
        println!("QEMU peer: not measured ({e:#}).\n");
    }
    let qemu = qemu.ok();

    println!("### Handshake: TCP connect to ServerInit ({HANDSHAKES} runs)\n");
    println!("| server | security | p50 ms | p90 ms |");
    println!("|---|---|---|---|");
    let rows: [(&str, &str, u16, Option<&str>); 2] = [
        ("vmgated gateway (test guest)", "None", open, None),
        (
            "vmgated gateway (test guest)",
            "VNC password",
            locked,
            Some(PASSWORD),
        ),
    ];
    for (server, security, port, password) in rows {
        let s = handshakes(port, password).await?;
        println!(
            "| {server} | {security} | {:.2} | {:.2} |",
            s.quantile_ms(0.5),
            s.quantile_ms(0.9)
        );
    }
    if let Some(q) = &qemu {
        for (security, port, password) in [
            ("None", q.open_port, None),
            ("VNC password", q.locked_port, Some(PASSWORD)),
        ] {
            let s = handshakes(port, password).await?;
            println!(
                "| QEMU {} direct | {security} | {:.2} | {:.2} |",
                q.version,
                s.quantile_ms(0.5),
                s.quantile_ms(0.9)
            );
        }
    }
    println!(
        "\nThe gateway in front of a QEMU guest cannot be measured yet (the QEMU driver comes later).\n"
    );

    captures(open, locked, qemu.as_ref());
    throughput(open, qemu.as_ref()).await?;
    drop(qemu);

    memory_per_session(&mut api, &daemon).await?;
    revocation_latency(&mut api, locked).await?;
    println!("At the end: {}.", load_average());
    Ok(())
}

fn vnc_config(extra: &str) -> String {
    format!(
        "\n[vnc]\nremote_display_port_min = {}\nremote_display_port_max = {}\n{extra}",
        GATEWAY_PORTS.0, GATEWAY_PORTS.1
    )
}

async fn start_guest(
    api: &mut Connection,
    d: &TestDaemon,
    name: &str,
    graphics: &str,
) -> anyhow::Result<u16> {
    let toml = format!("name = \"{name}\"\n[graphics]\ntype = \"vnc\"\n{graphics}\n");
    api.domain
        .define(DefineRequest {
            toml,
            source: "bench".into(),
        })
        .await?;
    api.domain.start(DomainRef { key: name.into() }).await?;
    Ok(display_port(d, name))
}

async fn handshakes(port: u16, password: Option<&str>) -> anyhow::Result<Sample> {
    let mut latencies = Vec::with_capacity(HANDSHAKES);
    let start = Instant::now();
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        let client = RfbClient::connect(port, password, true).await?;
        latencies.push(t.elapsed());
        drop(client);
    }
    Ok(Sample {
        latencies,
        wall: start.elapsed(),
    })
}

/// gvnccapture start to PNG saved, median of [`CAPTURES`].
fn captures(open: u16, locked: u16, qemu: Option<&Qemu>) {
    println!("### gvnccapture, new process to PNG saved (median of {CAPTURES})\n");
    if !on_path("gvnccapture") || !on_path("expect") {
        println!("Not measured: gvnccapture or expect missing (Debian gvncviewer, expect).\n");
        return;
    }
    println!("| server | security | median ms |");
    println!("|---|---|---|");
    let mut rows = vec![
        (
            "vmgated gateway (test guest)".to_owned(),
            "None",
            open,
            None,
        ),
        (
            "vmgated gateway (test guest)".to_owned(),
            "VNC password",
            locked,
            Some(PASSWORD),
        ),
    ];
    if let Some(q) = qemu {
        rows.push((
            format!("QEMU {} direct", q.version),
            "None",
            q.open_port,
            None,
        ));
        rows.push((
            format!("QEMU {} direct", q.version),
            "VNC password",
            q.locked_port,
            Some(PASSWORD),
        ));
    }
    let dir = tempfile::tempdir().ok();
    let out = dir.as_ref().map_or_else(
        || PathBuf::from("/tmp/bench-capture.png"),
        |d| d.path().join("c.png"),
    );
    for (server, security, port, password) in rows {
        let target = format!("127.0.0.1:{}", port - 5900);
        let (s, note) = repeat_captures(CAPTURES, || gvnccapture(&target, &out, password));
        println!(
            "| {server} | {security} | {:.0}{note} |",
            s.quantile_ms(0.5)
        );
    }
    println!(
        "\nThe password rows include the 30 ms the harness waits after gvnccapture's prompt before typing.\n"
    );
}

/// Back-to-back full-frame updates for [`STREAM_FOR`]: MB/s of Raw pixel data.
async fn stream(addr: impl Into<ConsoleAddr>) -> anyhow::Result<(f64, u16, u16)> {
    let mut c = RfbClient::connect(addr, None, true).await?;
    c.full_update().await?;
    let mut bytes = 0usize;
    let start = Instant::now();
    while start.elapsed() < STREAM_FOR {
        bytes += c.full_update().await?;
    }
    let init = c.server_init();
    Ok((
        bytes as f64 / start.elapsed().as_secs_f64() / 1e6,
        init.width,
        init.height,
    ))
}

/// One throughput row: its paths are measured in turn, [`ROUNDS`] times, and each path's
/// median is compared with the first (direct) path's.
async fn compare(paths: &[(String, u16)]) -> anyhow::Result<()> {
    let mut rates = vec![Vec::with_capacity(ROUNDS); paths.len()];
    let mut screen = (0, 0);
    for _ in 0..ROUNDS {
        for (i, (_, port)) in paths.iter().enumerate() {
            let (rate, w, h) = stream(*port).await?;
            rates[i].push(rate);
            screen = (w, h);
        }
    }
    let medians: Vec<f64> = rates
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
        })
        .collect();
    let direct = medians.first().copied().unwrap_or(f64::NAN);
    for ((name, _), rate) in paths.iter().zip(&medians) {
        println!(
            "| {name} | {}x{} | {rate:.0} | {:.0}% |",
            screen.0,
            screen.1,
            100.0 * rate / direct
        );
    }
    Ok(())
}

async fn throughput(gateway_port: u16, qemu: Option<&Qemu>) -> anyhow::Result<()> {
    println!(
        "### Relay throughput: non-incremental full-frame Raw updates back to back, {} s per run, median of {ROUNDS} runs\n",
        STREAM_FOR.as_secs()
    );
    println!("| path | screen | MB/s | vs direct |");
    println!("|---|---|---|---|");
    let socat_ok = on_path("socat");
    let direct_port = serve_test_framebuffer().await?;
    let mut paths = vec![
        (
            "test framebuffer server, direct (in the benchmark process)".to_owned(),
            direct_port,
        ),
        ("vmgated gateway -> test guest".to_owned(), gateway_port),
    ];
    let proxy = if socat_ok {
        Some(Socat::start(direct_port)?)
    } else {
        None
    };
    if let Some(p) = &proxy {
        paths.push(("socat -> test framebuffer server".to_owned(), p.port));
    }
    compare(&paths).await?;
    drop(proxy);
    if let Some(q) = qemu {
        let mut paths = vec![(format!("QEMU {} direct", q.version), q.open_port)];
        let proxy = if socat_ok {
            Some(Socat::start(q.open_port)?)
        } else {
            None
        };
        if let Some(p) = &proxy {
            paths.push(("socat -> QEMU".to_owned(), p.port));
        }
        compare(&paths).await?;
        println!(
            "\nQEMU answers a full-update request at its display refresh timer, so its rows \
             measure that pacing, not the transport."
        );
    }
    if !socat_ok {
        println!("\nsocat is not installed: no plain-proxy rows.");
    }
    println!();
    Ok(())
}

/// The test driver's RFB server on a local port of this process: the gateway's backend
/// without the gateway.
async fn serve_test_framebuffer() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    let screen = FramebufferHandle::new("direct", "running");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(rfb_server::serve(stream, screen.clone()));
        }
    });
    Ok(port)
}

async fn memory_per_session(api: &mut Connection, d: &TestDaemon) -> anyhow::Result<()> {
    let port = start_guest(
        api,
        d,
        "crowd",
        &format!("passwd = \"{PASSWORD}\"\nshare_policy = \"ignore\""),
    )
    .await?;
    let pid = d.pid().context("daemon pid")?;
    // One session first, so that lazily built state is not counted per session.
    let mut warm = RfbClient::connect(port, Some(PASSWORD), true).await?;
    warm.full_update().await?;
    let before = rss(pid)?.vm;
    let mut sessions = Vec::with_capacity(IDLE_SESSIONS);
    for _ in 0..IDLE_SESSIONS {
        sessions.push(RfbClient::connect(port, Some(PASSWORD), true).await?);
    }
    let listed = listed_sessions(api, "crowd").await?;
    // Let the relays settle into their idle state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss(pid)?.vm;
    println!("### Memory per idle authenticated session\n");
    println!(
        "vmgated VmRSS {before} KiB before, {after} KiB with {IDLE_SESSIONS} more idle VNC-password sessions ({listed} listed): {:.1} KiB per session.\n",
        (after.saturating_sub(before)) as f64 / IDLE_SESSIONS as f64
    );
    drop(sessions);
    Ok(())
}

async fn revocation_latency(api: &mut Connection, port: u16) -> anyhow::Result<()> {
    let mut current = PASSWORD.to_owned();
    let mut after_reply = Vec::with_capacity(REVOCATIONS);
    let mut from_call = Vec::with_capacity(REVOCATIONS);
    let mut stayed = 0;
    for i in 0..REVOCATIONS {
        let mut c = RfbClient::connect(port, Some(&current), true).await?;
        c.full_update().await?;
        let next = format!("pw{i}");
        let request = SetPasswordRequest {
            domain: Some(DomainRef {
                key: "locked".into(),
            }),
            password: next.clone(),
            connected: ConnectedPolicy::Disconnect.into(),
            ..Default::default()
        };
        let called = Instant::now();
        api.console.set_password(request).await?;
        let replied = Instant::now();
        if c.wait_closed(Duration::from_secs(5)).await {
            after_reply.push(replied.elapsed());
            from_call.push(called.elapsed());
        } else {
            stayed += 1;
        }
        current = next;
    }
    let sample = |latencies| Sample {
        latencies,
        wall: Duration::ZERO,
    };
    let (after_reply, from_call) = (sample(after_reply), sample(from_call));
    println!(
        "### Revocation: Console.SetPassword (connected=disconnect) to the session's socket closed ({REVOCATIONS} trials)\n"
    );
    println!("| measured from | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for (from, s) in [
        ("the call returning", &after_reply),
        ("the call starting", &from_call),
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
    println!();
    Ok(())
}

/// Two disk-less TCG QEMU guests (SeaBIOS screen, 720x400) with VNC on TCP: one with
/// security None, one with a VNC password (given through a secret object read from a file).
struct Qemu {
    version: String,
    open_port: u16,
    locked_port: u16,
    _children: [Killed; 2],
    _dir: tempfile::TempDir,
}

impl Qemu {
    async fn start() -> anyhow::Result<Qemu> {
        let version = qemu_version()?;
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("vnc-secret");
        std::fs::write(&secret, PASSWORD)?;
        let open_port = free_port(PEER_PORTS, &[])?;
        let locked_port = free_port(PEER_PORTS, &[open_port])?;
        let open = spawn_guest(
            dir.path(),
            "open",
            &[],
            &format!("127.0.0.1:{}", open_port - 5900),
            &[],
        )?;
        let object = format!("secret,id=vncsec0,file={}", secret.display());
        let locked = spawn_guest(
            dir.path(),
            "locked",
            &["-object", &object],
            &format!("127.0.0.1:{},password-secret=vncsec0", locked_port - 5900),
            &[],
        )?;
        if !wait_listening(open_port) || !wait_listening(locked_port) {
            return Err(anyhow!(
                "QEMU did not open its VNC ports; see {}",
                dir.path().display()
            ));
        }
        // Wait for SeaBIOS to draw, so that every measurement sees the same screen.
        let mut probe = RfbClient::connect(open_port, None, true).await?;
        probe.full_update().await?;
        Ok(Qemu {
            version,
            open_port,
            locked_port,
            _children: [open, locked],
            _dir: dir,
        })
    }
}

/// `socat` forwarding a local port to `target`.
struct Socat {
    port: u16,
    _child: Killed,
}

impl Socat {
    fn start(target: u16) -> anyhow::Result<Socat> {
        let port = free_port(PEER_PORTS, &[target])?;
        let child = Command::new("socat")
            // 64 KiB reads (socat's default is 8 KiB); the gateway's relay reads up to 256 KiB.
            .args(["-b", "65536"])
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
            .arg(format!("TCP:127.0.0.1:{target},nodelay"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start socat")?;
        let child = Killed(child);
        if !wait_listening(port) {
            return Err(anyhow!("socat did not listen on {port}"));
        }
        Ok(Socat {
            port,
            _child: child,
        })
    }
}
