//! Kerberos (GSSAPI) benchmark: what a ticket login and the confidentiality layer cost,
//! next to the logins and relays vmgated already has, all measured in the same run against
//! the test driver, with a private MIT KDC on loopback (`vmgate_tests::kdc`).
//!
//! - Console logins: TCP connect to ServerInit received, in process, [`LOGINS`] per row and
//!   round, [`ROUNDS`] interleaved rounds: GSSAPI over RFB type 20 (no TLS, with its
//!   confidentiality layer; from building the first token, the service ticket already in
//!   the cache) against VNC password and None on a plain console and VeNCrypt X509None
//!   (client certificate, TLS 1.3) on a TLS console. And gtk-vnc's `gvnccapture` as a new
//!   process, start to PNG saved, median of [`CAPTURES`]: GSSAPI against VNC password.
//! - API logins: the `vmgate list` CLI as a new process, wall time, median of [`CLI_RUNS`]:
//!   GSSAPI with a ticket, SCRAM-SHA-256 from an auth file, and no login, on three daemons
//!   (UNIX socket).
//! - Relay throughput: full-frame Raw updates (640x480) back to back for [`STREAM_FOR`],
//!   median of [`ROUNDS`]: through the GSSAPI layer, the plain relay and the TLS relay.
//!
//! The GSSAPI console client needs `KRB5CCNAME` and `KRB5_CONFIG` in its environment,
//! which this process cannot set for itself once threads run (see
//! `vmgate_tests::vnc_gssapi`): it re-runs itself as a child with [`CHILD_ARG`] and those
//! variables; the child times its own logins and frames and reports them.
//!
//! Run: `cargo run --profile dist -p vmgate-bench --features gssapi --bin bench-kerberos`.
//! Needs krb5-kdc, krb5-admin-server, krb5-user and certtool; the gvnccapture rows say so
//! when gtk-vnc's tools are missing. Prints Markdown; asserts nothing.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use vmgate_bench::{Sample, load_average, machine, repeat_captures};
use vmgate_tests::{
    TestDaemon,
    console::{ConsolePki, gvnc_tools, start_guest, tls_console_config},
    kdc::Kdc,
    pki::set_mode,
    vmgate_login_env,
    vnc::{RfbClient, TlsCreds, gvnccapture, gvnccapture_env},
    vnc_gssapi::process::{CHILD_ARG, GssClient, Plan, child_main},
};

const LOGINS: usize = 50;
const ROUNDS: usize = 3;
const CAPTURES: usize = 10;
const CLI_RUNS: usize = 20;
const STREAM_FOR: Duration = Duration::from_secs(3);
const PASSWORD: &str = "secret";
/// This benchmark's autoport ranges: GSSAPI, plain and TLS consoles.
const GSSAPI_PORTS: (u16, u16) = (18_600, 18_619);
const PLAIN_PORTS: (u16, u16) = (18_620, 18_639);
const TLS_PORTS: (u16, u16) = (18_640, 18_659);

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_ARG) {
        return Ok(child_main(&args[1..]));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench())?;
    Ok(ExitCode::SUCCESS)
}

/// The three consoles and what the clients need to reach them.
struct Consoles {
    kdc: Kdc,
    gss: GssClient,
    gss_port: u16,
    plain_open: u16,
    plain_locked: u16,
    tls_open: u16,
    creds: TlsCreds,
    _daemons: [TestDaemon; 3],
    _pki: ConsolePki,
}

async fn bench() -> anyhow::Result<()> {
    println!("{}", machine());
    let kdc = Kdc::start().context("the krb5 tools are needed (krb5-kdc, krb5-user)")?;
    let pki = ConsolePki::new().context("certtool (gnutls-bin) is needed")?;
    kdc.add_user("alice", "alicepw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let kerberos = format!(
        "vnc_sasl = true\nvnc_sasl_mechanisms = [\"GSSAPI\"]\nvnc_sasl_keytab = \"{}\"\n",
        keytab.display()
    );
    let env = kdc.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gss_daemon = TestDaemon::start_with_env(&ports(GSSAPI_PORTS, &kerberos), &env);
    let gss_port = start_guest(&gss_daemon, "g", "");
    let plain = TestDaemon::start_with(&ports(PLAIN_PORTS, ""));
    let plain_open = start_guest(&plain, "open", "");
    let plain_locked = start_guest(&plain, "locked", &format!("passwd = \"{PASSWORD}\""));
    let tls = TestDaemon::start_with(&tls_console_config(TLS_PORTS.0, &pki.cert_dir, ""));
    let tls_open = start_guest(&tls, "open", "");

    let ticket = kdc.kinit("alice", "alicepw", None);
    let program = std::env::current_exe()?;
    let gss = GssClient::new(program, &[CHILD_ARG], kdc.client_env(&ticket), "localhost");
    println!("Kerberos: {}.\n", enctypes(&kdc, &ticket));
    let c = Consoles {
        gss,
        gss_port,
        plain_open,
        plain_locked,
        tls_open,
        creds: pki.creds(Some(&pki.client)),
        kdc,
        _daemons: [gss_daemon, plain, tls],
        _pki: pki,
    };
    console_logins(&c).await?;
    captures(&c, &ticket);
    api_logins(&c.kdc, &ticket)?;
    throughput(&c).await?;
    println!("At the end: {}.", load_average());
    Ok(())
}

/// `[vnc]` with an autoport range and `extra` keys.
fn ports((min, max): (u16, u16), extra: &str) -> String {
    format!("\n[vnc]\nremote_display_port_min = {min}\nremote_display_port_max = {max}\n{extra}")
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The ticket's encryption types as `klist -e` prints them (the layer's cipher).
fn enctypes(kdc: &Kdc, ccache: &Path) -> String {
    let out = Command::new("klist")
        .arg("-e")
        .envs(kdc.client_env(ccache))
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let text = text.unwrap_or_default();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Etype (skey, tkt): "));
    line.map_or_else(
        || "encryption types unknown".into(),
        |e| format!("ticket enctypes {e}"),
    )
}

/// How a console row logs in.
#[derive(Clone, Copy)]
enum How {
    Gssapi,
    None,
    Password,
    X509None,
}

async fn login_round(c: &Consoles, how: How) -> anyhow::Result<Vec<Duration>> {
    if let How::Gssapi = how {
        let plan = Plan {
            logins: LOGINS,
            ..Plan::default()
        };
        let report = c
            .gss
            .run(local(c.gss_port), &plan)
            .map_err(|e| anyhow!(e))?;
        return Ok(report.login_times());
    }
    let mut times = Vec::with_capacity(LOGINS);
    for _ in 0..LOGINS {
        let t = Instant::now();
        let client = match how {
            How::None => RfbClient::connect(c.plain_open, None, true).await?,
            How::Password => RfbClient::connect(c.plain_locked, Some(PASSWORD), true).await?,
            _ => RfbClient::connect_tls(c.tls_open, &c.creds, None, true).await?,
        };
        times.push(t.elapsed());
        drop(client);
    }
    Ok(times)
}

async fn console_logins(c: &Consoles) -> anyhow::Result<()> {
    println!(
        "### Console login in process: TCP connect to ServerInit ({LOGINS} per row and round, {ROUNDS} rounds)\n"
    );
    let rows = [
        ("GSSAPI (type 20, confidentiality layer)", How::Gssapi),
        ("VNC password", How::Password),
        (
            "VeNCrypt X509None (TLS 1.3, client certificate)",
            How::X509None,
        ),
        ("None", How::None),
    ];
    // Warm up: the first GSSAPI login asks the KDC for the service ticket.
    for (_, how) in rows {
        login_round(c, how).await?;
    }
    let mut samples = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, (_, how)) in rows.iter().enumerate() {
            samples[i].extend(login_round(c, *how).await?);
        }
    }
    let p50 = |v: &Vec<Duration>| sample(v.clone()).quantile_ms(0.5);
    let gss = p50(&samples[0]);
    println!("| security | p50 ms | p90 ms | p99 ms | GSSAPI p50 / this p50 |");
    println!("|---|---|---|---|---|");
    for ((label, _), times) in rows.iter().zip(&samples) {
        let s = sample(times.clone());
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            s.quantile_ms(0.5),
            s.quantile_ms(0.9),
            s.quantile_ms(0.99),
            gss / s.quantile_ms(0.5)
        );
    }
    println!();
    Ok(())
}

fn sample(latencies: Vec<Duration>) -> Sample {
    Sample {
        latencies,
        wall: Duration::ZERO,
    }
}

/// gvnccapture start to PNG saved: GSSAPI with the ticket, VNC password, None.
fn captures(c: &Consoles, ticket: &Path) {
    println!("### gvnccapture, new process to PNG saved (median of {CAPTURES})\n");
    if gvnc_tools().is_none() {
        println!("Not measured: gvnccapture, expect or libnss-wrapper missing.\n");
        return;
    }
    let png = c.kdc.dir().join("capture.png");
    let env = c.kdc.client_env(ticket);
    // GSSAPI needs the ticket, VNC authentication the password typed; None neither.
    let rows = [
        ("GSSAPI (type 20)", c.gss_port, None),
        ("VNC password", c.plain_locked, Some(PASSWORD)),
        ("None", c.plain_open, None),
    ];
    println!("| security | median ms | min ms |");
    println!("|---|---|---|");
    for (label, port, password) in rows {
        let target = format!("localhost:{}", port - 5900);
        let (s, note) = repeat_captures(CAPTURES, || match password {
            Some(_) => gvnccapture(&target, &png, password),
            None => gvnccapture_env(&target, &png, None, &env),
        });
        println!(
            "| {label} | {:.0}{note} | {:.0} |",
            s.quantile_ms(0.5),
            s.quantile_ms(0.0)
        );
    }
    println!(
        "\nThe VNC password row includes the 30 ms the harness waits after gvnccapture's prompt before typing.\n"
    );
}

/// `vmgate list` wall time: GSSAPI, SCRAM-SHA-256 and no login, each on its own daemon.
fn api_logins(kdc: &Kdc, ticket: &Path) -> anyhow::Result<()> {
    println!("### API login: `vmgate list` as a new process, wall time (median of {CLI_RUNS})\n");
    let keytab = kdc.add_service("libvirt/localhost", "libvirt.keytab");
    let env = kdc.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gss_config = format!(
        "auth_unix_rw = \"sasl\"\nsasl_mechanisms = [\"GSSAPI\"]\nsasl_keytab = \"{}\"\n",
        keytab.display()
    );
    let gss = TestDaemon::start_with_env(&gss_config, &env);
    let mut scram = TestDaemon::start();
    let line = "alice-pw\n";
    let add = ["sasl-user", "add", "alice", "--password-stdin"];
    scram.vmgate_stdin(&add, Some(line)).ok();
    anyhow::ensure!(scram.stop(), "the SCRAM daemon did not stop");
    scram.set_extra_config("auth_unix_rw = \"sasl\"\nsasl_mechanisms = [\"SCRAM-SHA-256\"]\n");
    scram.restart();
    let open = TestDaemon::start();
    let auth = scram.file(
        "auth.toml",
        "[[credentials]]\nhost = \"localhost\"\nusername = \"alice\"\npassword = \"alice-pw\"\n",
    );
    set_mode(&auth, 0o600);

    let with_ticket = kdc.client_env(ticket);
    let no_env = Vec::new();
    // (label, daemon, auth file, Kerberos environment)
    let rows = [
        ("GSSAPI, ticket from kinit", &gss, None, &with_ticket),
        (
            "SCRAM-SHA-256, auth file",
            &scram,
            Some(auth.as_path()),
            &no_env,
        ),
        ("no login (auth_unix_rw = none)", &open, None, &no_env),
    ];
    let mut times = vec![Vec::new(); rows.len()];
    for _ in 0..CLI_RUNS {
        for (i, (label, d, auth, env)) in rows.iter().enumerate() {
            let t = Instant::now();
            let out = vmgate_login_env(&d.uri(), *auth, &["list"], None, env);
            times[i].push(t.elapsed());
            anyhow::ensure!(out.code == 0, "{label}: {out:?}");
        }
    }
    let gss_logins = gss.log().matches("alice@TEST.LOCAL").count();
    let p50 = |v: &Vec<Duration>| sample(v.clone()).quantile_ms(0.5);
    let gss_p50 = p50(&times[0]);
    println!("| login | median ms | min ms | GSSAPI / this |");
    println!("|---|---|---|---|");
    for ((label, ..), t) in rows.iter().zip(&times) {
        let s = sample(t.clone());
        println!(
            "| {label} | {:.1} | {:.1} | {:.2}x |",
            s.quantile_ms(0.5),
            s.quantile_ms(0.0),
            gss_p50 / s.quantile_ms(0.5)
        );
    }
    println!("\nThe GSSAPI daemon logged {gss_logins} logins of alice@TEST.LOCAL.\n");
    Ok(())
}

/// MB/s of Raw pixel data over [`STREAM_FOR`] through an in-process client.
async fn stream(client: &mut RfbClient) -> anyhow::Result<f64> {
    client.full_update().await?;
    let (mut bytes, start) = (0, Instant::now());
    while start.elapsed() < STREAM_FOR {
        bytes += client.full_update().await?;
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn throughput(c: &Consoles) -> anyhow::Result<()> {
    println!(
        "### Relay throughput: full-frame Raw updates (640x480) back to back, {} s per run, median of {ROUNDS} runs\n",
        STREAM_FOR.as_secs()
    );
    let plan = Plan {
        logins: 1,
        stream_for: Some(STREAM_FOR),
        ..Plan::default()
    };
    let wrap = Plan {
        wrap_for: Some(Duration::from_secs(1)),
        ..Plan::default()
    };
    let (mut ceiling, mut piece) = (Vec::new(), 0);
    let (mut gss, mut plain, mut tls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let report = c
            .gss
            .run(local(c.gss_port), &plan)
            .map_err(|e| anyhow!(e))?;
        gss.push(report.stream_rate().context("no stream rate")?);
        plain.push(stream(&mut RfbClient::connect(c.plain_open, None, true).await?).await?);
        let mut client = RfbClient::connect_tls(c.tls_open, &c.creds, None, true).await?;
        tls.push(stream(&mut client).await?);
        let report = c
            .gss
            .run(local(c.gss_port), &wrap)
            .map_err(|e| anyhow!(e))?;
        ceiling.push(report.wrap_rate().context("no wrap rate")?);
        piece = report.json()["piece"].as_u64().unwrap_or_default();
    }
    let (gss, plain, tls) = (median(gss), median(plain), median(tls));
    let ceiling = ceiling.into_iter().fold(0.0, f64::max);
    println!("| path | MB/s | vs plain relay | GSSAPI / this |");
    println!("|---|---|---|---|");
    for (label, rate) in [
        ("GSSAPI confidentiality layer (type 20)", gss),
        ("plain relay (security None)", plain),
        ("VeNCrypt X509None (TLS 1.3)", tls),
    ] {
        println!(
            "| {label} | {rate:.0} | {:.0}% | {:.2}x |",
            100.0 * rate / plain,
            gss / rate
        );
    }
    println!(
        "| `gss_wrap` with confidentiality, {piece}-byte pieces, one core, best of {ROUNDS} 1 s runs | {ceiling:.0} | {:.0}% | {:.2}x |",
        100.0 * ceiling / plain,
        gss / ceiling
    );
    println!();
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
