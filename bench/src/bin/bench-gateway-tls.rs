//! Console gateway over TLS benchmark: what VeNCrypt costs a console client on the gateway
//! (`[vnc] vnc_tls = true`, `vnc_tls_x509_verify = true`), next to QEMU's own VeNCrypt
//! server (GnuTLS) started in the same run with the same certificate directory.
//!
//! - Handshakes: new TCP connection, VeNCrypt with a client certificate the server verifies,
//!   up to ServerInit received, with the harness's rustls client (`RfbClient::connect_tls`):
//!   [`HANDSHAKES`] one after another, and the same number spread over 4 concurrent tasks;
//!   X509None and X509Vnc; per second (the median of [`ROUNDS`] interleaved rounds), p50
//!   and p99 over all rounds. The gateway with RSA-2048 certificates
//!   from certtool (as libvirt's guide makes them) and with ECDSA P-256 ones from
//!   `vmgate pki`; QEMU with the RSA ones; plain RFB (security None) on a second gateway
//!   without TLS, for scale. (Not certtool's ECDSA keys: about half of them
//!   encode the private scalar in 33 bytes, which ring refuses to load.)
//! - gtk-vnc's `gvnccapture` (GnuTLS) as a new process, start to PNG saved, median of
//!   [`CAPTURES`], certificates under a temporary passwd home (nss_wrapper).
//! - Relay throughput over TLS: full-frame Raw updates back to back through the gateway,
//!   against the same gateway without TLS (a second daemon) and against
//!   `openssl speed -evp CIPHER` for the suite rustls negotiated: one core's encryption
//!   rate, the ceiling of a relay that encrypts everything it sends.
//!
//! Run: `cargo run --profile dist -p vmgate-bench --bin bench-gateway-tls`. Needs certtool
//! (gnutls-bin); QEMU, gvnccapture and openssl rows say so when their tools are missing.
//! Prints Markdown; asserts nothing.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use tokio::task::JoinSet;
use vmgate_bench::{Sample, load_average, machine, repeat_captures};
use vmgate_tests::{
    TestDaemon,
    console::start_guest,
    on_path,
    peer::{Killed, free_port, qemu_version, spawn_guest, wait_listening},
    pki::{Ca, Issued, KeyType, set_mode},
    require_library, require_tool, run_vmgate,
    vnc::{GvncHome, RfbClient, TlsCreds, gvnccapture_as},
};

const HANDSHAKES: usize = 200;
const TASKS: usize = 4;
const CAPTURES: usize = 10;
const STREAM_FOR: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
const PASSWORD: &str = "secret";
/// This benchmark's own ports: one autoport range per daemon, then the QEMU peers'.
const RSA_PORTS: (u16, u16) = (18_200, 18_229);
const ECDSA_PORTS: (u16, u16) = (18_230, 18_259);
const PLAIN_PORTS: (u16, u16) = (18_260, 18_289);
const PEER_PORTS: (u16, u16) = (18_300, 18_399);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !require_tool("certtool", "gnutls-bin") {
        anyhow::bail!("certtool is needed to make the certificates");
    }
    println!("{}", machine());
    let dir = tempfile::tempdir()?;
    let rsa = Pki::certtool_rsa(&dir.path().join("rsa"));
    let ecdsa = Pki::vmgate_pki_ecdsa(&dir.path().join("ecdsa"));

    let rsa_daemon = TestDaemon::start_with(&vnc_config(RSA_PORTS, Some(&rsa.cert_dir)));
    let open = start_guest(&rsa_daemon, "open", "");
    let locked = start_guest(&rsa_daemon, "locked", &format!("passwd = \"{PASSWORD}\""));
    let ecdsa_daemon = TestDaemon::start_with(&vnc_config(ECDSA_PORTS, Some(&ecdsa.cert_dir)));
    let ecdsa_open = start_guest(&ecdsa_daemon, "open", "");
    let plain_daemon = TestDaemon::start_with(&vnc_config(PLAIN_PORTS, None));
    let plain_open = start_guest(&plain_daemon, "open", "");
    let qemu = Qemu::start(&rsa).await;
    if let Err(e) = &qemu {
        println!("QEMU peer: not measured ({e:#}).\n");
    }
    let qemu = qemu.ok();

    let targets = Targets {
        rsa: &rsa,
        open,
        locked,
        ecdsa: &ecdsa,
        ecdsa_open,
        plain_open,
        qemu: qemu.as_ref(),
    };
    handshakes(&targets).await?;
    captures(&rsa, open, locked, qemu.as_ref());
    drop(qemu);
    drop(ecdsa_daemon);
    throughput(&rsa.creds, open, plain_open).await?;
    println!("At the end: {}.", load_average());
    Ok(())
}

/// A CA, its certificate directory in QEMU's layout (which `vnc_tls_x509_cert_dir`
/// shares) with a server certificate for 127.0.0.1, and a client's credentials.
struct Pki {
    label: &'static str,
    dir: PathBuf,
    cert_dir: PathBuf,
    ca_cert: PathBuf,
    client: Issued,
    creds: TlsCreds,
}

impl Pki {
    fn certtool_rsa(dir: &Path) -> Pki {
        let ca = Ca::with_keys(&dir.join("ca"), "Bench CA", KeyType::Rsa2048);
        let server = ca.server("server", &["127.0.0.1"]);
        let cert_dir = dir.join("vnc");
        std::fs::create_dir_all(&cert_dir).expect("create the certificate directory");
        for (from, name) in [
            (&ca.cert, "ca-cert.pem"),
            (&server.cert, "server-cert.pem"),
            (&server.key, "server-key.pem"),
        ] {
            std::fs::copy(from, cert_dir.join(name)).expect("copy a PEM file");
        }
        set_mode(&cert_dir.join("server-key.pem"), 0o600);
        let client = ca.client("client1", "client1");
        Pki::with(
            dir,
            "RSA-2048 (certtool)",
            cert_dir,
            ca.cert.clone(),
            client,
        )
    }

    fn vmgate_pki_ecdsa(dir: &Path) -> Pki {
        let p = |name: &str| dir.join(name).display().to_string();
        let ca_dir = p("ca");
        for args in [
            vec!["pki", "init-ca", "--dir", &ca_dir],
            vec![
                "pki",
                "server-cert",
                "--ca-dir",
                &ca_dir,
                "--host",
                "127.0.0.1",
                "--out-dir",
                &p("server"),
                "--vnc-dir",
                &p("vnc"),
            ],
            vec![
                "pki",
                "client-cert",
                "--ca-dir",
                &ca_dir,
                "--cn",
                "client1",
                "--out-dir",
                &p("client1"),
            ],
        ] {
            run_vmgate(&args, None).ok();
        }
        let client = Issued {
            cert: dir.join("client1/clientcert.pem"),
            key: dir.join("client1/clientkey.pem"),
        };
        let ca_cert = dir.join("ca/cacert.pem");
        Pki::with(
            dir,
            "ECDSA P-256 (vmgate pki)",
            dir.join("vnc"),
            ca_cert,
            client,
        )
    }

    fn with(
        dir: &Path,
        label: &'static str,
        cert_dir: PathBuf,
        ca_cert: PathBuf,
        client: Issued,
    ) -> Pki {
        let creds = TlsCreds::new(&ca_cert, Some(&client), "127.0.0.1").expect("client TLS");
        Pki {
            label,
            dir: dir.to_path_buf(),
            cert_dir,
            ca_cert,
            client,
            creds,
        }
    }
}

/// `[vnc]` with this daemon's autoport range and, given a certificate directory, VeNCrypt
/// with required client certificates.
fn vnc_config(ports: (u16, u16), cert_dir: Option<&Path>) -> String {
    let tls = cert_dir.map_or_else(String::new, |dir| {
        format!(
            "vnc_tls = true\nvnc_tls_x509_verify = true\nvnc_tls_x509_cert_dir = \"{}\"\n",
            dir.display()
        )
    });
    format!(
        "\n[vnc]\nremote_display_port_min = {}\nremote_display_port_max = {}\n{tls}",
        ports.0, ports.1
    )
}

/// [`HANDSHAKES`] handshakes to ServerInit on `tasks` concurrent tasks: VeNCrypt with
/// `creds`, or plain RFB without.
async fn measure(
    port: u16,
    creds: Option<&TlsCreds>,
    password: Option<&str>,
    tasks: usize,
) -> anyhow::Result<Sample> {
    let mut set = JoinSet::new();
    let start = Instant::now();
    for _ in 0..tasks {
        let creds = creds.cloned();
        let password = password.map(str::to_owned);
        set.spawn(async move {
            let mut latencies = Vec::with_capacity(HANDSHAKES / tasks);
            for _ in 0..HANDSHAKES / tasks {
                let t = Instant::now();
                let password = password.as_deref();
                let client = match &creds {
                    Some(creds) => RfbClient::connect_tls(port, creds, password, true).await?,
                    None => RfbClient::connect(port, password, true).await?,
                };
                latencies.push(t.elapsed());
                drop(client);
            }
            anyhow::Ok(Sample {
                latencies,
                wall: Duration::ZERO,
            })
        });
    }
    let samples = set
        .join_all()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Sample::merge(samples, start.elapsed()))
}

/// One row of the handshake table.
struct Row<'a> {
    server: String,
    /// None: plain RFB, for scale.
    pki: Option<&'a Pki>,
    subtype: &'static str,
    port: u16,
    password: Option<&'static str>,
    tasks: usize,
    /// One sample per round.
    rounds: Vec<Sample>,
}

impl Row<'_> {
    /// The median round's rate, and p50/p99 over every round's handshakes.
    fn summary(&self) -> (f64, Sample) {
        let rate = median(self.rounds.iter().map(Sample::per_sec).collect());
        (rate, Sample::merge(self.rounds.clone(), Duration::ZERO))
    }
}

/// The consoles under test: the TLS gateways' guests, the plain gateway's, QEMU's.
struct Targets<'a> {
    rsa: &'a Pki,
    open: u16,
    locked: u16,
    ecdsa: &'a Pki,
    ecdsa_open: u16,
    plain_open: u16,
    qemu: Option<&'a Qemu>,
}

async fn handshakes(t: &Targets<'_>) -> anyhow::Result<()> {
    let (rsa, ecdsa) = (Some(t.rsa), Some(t.ecdsa));
    println!(
        "### VeNCrypt handshakes: TCP connect to ServerInit received ({HANDSHAKES} per row and round, {ROUNDS} rounds)\n"
    );
    let gateway = "vmgated gateway (test guest)";
    let mut targets = vec![
        (
            gateway.to_owned(),
            None,
            "None (no TLS)",
            t.plain_open,
            None,
        ),
        (gateway.to_owned(), rsa, "X509None", t.open, None),
        (gateway.to_owned(), rsa, "X509Vnc", t.locked, Some(PASSWORD)),
        (gateway.to_owned(), ecdsa, "X509None", t.ecdsa_open, None),
    ];
    if let Some(q) = t.qemu {
        let name = format!("QEMU {} direct", q.version);
        targets.push((name.clone(), rsa, "X509None", q.none_port, None));
        targets.push((name, rsa, "X509Vnc", q.vnc_port, Some(PASSWORD)));
    }
    let mut suites = Vec::new();
    let mut rows = Vec::new();
    for (server, pki, subtype, port, password) in targets {
        // Warm up: the first handshake loads the certificates' state on both sides.
        let first = match pki {
            Some(pki) => RfbClient::connect_tls(port, &pki.creds, password, true).await?,
            None => RfbClient::connect(port, password, true).await?,
        };
        if let Some(tls) = first.tls() {
            let suite = format!("{server}: {} {}", tls.protocol, tls.cipher_suite);
            if !suites.contains(&suite) {
                suites.push(suite);
            }
        }
        for tasks in [1, TASKS] {
            let server = server.clone();
            let rounds = Vec::new();
            rows.push(Row {
                server,
                pki,
                subtype,
                port,
                password,
                tasks,
                rounds,
            });
        }
    }
    // Rounds interleave the rows, so that a change in the machine's load hits all alike.
    for _ in 0..ROUNDS {
        for row in &mut rows {
            let creds = row.pki.map(|p| &p.creds);
            let s = measure(row.port, creds, row.password, row.tasks).await?;
            row.rounds.push(s);
        }
    }
    println!("| server | keys | subtype | tasks | handshakes/s (median round) | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let (rate, all) = row.summary();
        println!(
            "| {} | {} | {} | {} | {rate:.0} | {:.3} | {:.3} |",
            row.server,
            row.pki.map_or("-", |p| p.label),
            row.subtype,
            row.tasks,
            all.quantile_ms(0.5),
            all.quantile_ms(0.99)
        );
    }
    println!(
        "\nNegotiated with the harness's rustls client: {}.\n",
        suites.join("; ")
    );
    for (subtype, tasks) in [
        ("X509None", 1),
        ("X509None", TASKS),
        ("X509Vnc", 1),
        ("X509Vnc", TASKS),
    ] {
        let find = |qemu: bool| {
            rows.iter()
                .find(|r| {
                    r.server.starts_with("QEMU") == qemu
                        && r.pki.is_some_and(|p| std::ptr::eq(p, t.rsa))
                        && r.subtype == subtype
                        && r.tasks == tasks
                })
                .map(|r| r.summary())
        };
        if let (Some((g, gs)), Some((q, qs))) = (find(false), find(true)) {
            println!(
                "- {subtype}, {tasks} task(s), RSA-2048: the gateway does {:.1}x QEMU's handshakes per second; p50 {:.1}x lower.",
                g / q,
                qs.quantile_ms(0.5) / gs.quantile_ms(0.5)
            );
        }
    }
    println!();
    Ok(())
}

/// gvnccapture start to PNG saved, median of [`CAPTURES`], gateway and QEMU.
fn captures(pki: &Pki, open: u16, locked: u16, qemu: Option<&Qemu>) {
    println!("### gvnccapture over VeNCrypt, new process to PNG saved (median of {CAPTURES})\n");
    if !on_path("gvnccapture") || !on_path("expect") {
        println!("Not measured: gvnccapture or expect missing (Debian gvncviewer, expect).\n");
        return;
    }
    let Some(nss_wrapper) = require_library("libnss_wrapper.so", "libnss-wrapper") else {
        println!("Not measured: libnss_wrapper.so missing (Debian libnss-wrapper).\n");
        return;
    };
    let home = GvncHome::new(&nss_wrapper, &pki.ca_cert, Some(&pki.client));
    let out = pki.dir.join("capture.png");
    println!("| server | subtype | median ms |");
    println!("|---|---|---|");
    let gateway = "vmgated gateway (test guest)".to_owned();
    let mut rows = vec![
        (gateway.clone(), "X509None", open, None),
        (gateway, "X509Vnc", locked, Some(PASSWORD)),
    ];
    if let Some(q) = qemu {
        let name = format!("QEMU {} direct", q.version);
        rows.push((name.clone(), "X509None", q.none_port, None));
        rows.push((name, "X509Vnc", q.vnc_port, Some(PASSWORD)));
    }
    for (server, subtype, port, password) in rows {
        let target = format!("127.0.0.1:{}", port - 5900);
        let (s, note) =
            repeat_captures(CAPTURES, || gvnccapture_as(&target, &out, password, &home));
        println!("| {server} | {subtype} | {:.0}{note} |", s.quantile_ms(0.5));
    }
    println!(
        "\nThe X509Vnc rows include the 30 ms the harness waits after gvnccapture's prompt before typing.\n"
    );
}

/// Full-frame updates back to back for [`STREAM_FOR`]: MB/s of Raw pixel data, and the
/// TLS suite when there is one.
async fn stream(port: u16, creds: Option<&TlsCreds>) -> anyhow::Result<(f64, Option<String>)> {
    let mut c = match creds {
        Some(creds) => RfbClient::connect_tls(port, creds, None, true).await?,
        None => RfbClient::connect(port, None, true).await?,
    };
    c.full_update().await?;
    let mut bytes = 0usize;
    let start = Instant::now();
    while start.elapsed() < STREAM_FOR {
        bytes += c.full_update().await?;
    }
    let suite = c
        .tls()
        .map(|t| format!("{} {}", t.protocol, t.cipher_suite));
    Ok((bytes as f64 / start.elapsed().as_secs_f64() / 1e6, suite))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn throughput(creds: &TlsCreds, tls_port: u16, plain_port: u16) -> anyhow::Result<()> {
    println!(
        "### Relay throughput over TLS: full-frame Raw updates (640x480) back to back, {} s per run, median of {ROUNDS} runs\n",
        STREAM_FOR.as_secs()
    );
    let (mut tls, mut plain) = (Vec::new(), Vec::new());
    let mut suite = None;
    for _ in 0..ROUNDS {
        let (rate, s) = stream(tls_port, Some(creds)).await?;
        tls.push(rate);
        suite = s;
        plain.push(stream(plain_port, None).await?.0);
    }
    let (tls, plain) = (median(tls), median(plain));
    let suite = suite.unwrap_or_default();
    println!("Negotiated by rustls (gateway and client): {suite}.\n");
    let ceiling = match openssl_cipher(&suite) {
        Some(cipher) => openssl_speed(cipher).map(|rate| (cipher, rate)),
        None => Err(anyhow!("no openssl cipher known for {suite}")),
    };
    println!("| path | MB/s | vs no TLS | vs openssl ceiling |");
    println!("|---|---|---|---|");
    let of_ceiling = |rate: f64| {
        ceiling.as_ref().map_or_else(
            |_| "-".to_owned(),
            |(_, c)| format!("{:.0}%", 100.0 * rate / c),
        )
    };
    println!("| vmgated gateway, no TLS (second daemon) | {plain:.0} | 100% | - |");
    println!(
        "| vmgated gateway, VeNCrypt X509None | {tls:.0} | {:.0}% | {} |",
        100.0 * tls / plain,
        of_ceiling(tls)
    );
    match &ceiling {
        Ok((cipher, rate)) => println!(
            "| `openssl speed -evp {cipher}`, 16 KiB blocks, one core, best of {ROUNDS} | {rate:.0} | | 100% |"
        ),
        Err(e) => println!("\nNo openssl ceiling: {e:#}."),
    }
    println!();
    Ok(())
}

/// The `openssl speed -evp` name of the bulk cipher of a rustls suite name.
fn openssl_cipher(suite: &str) -> Option<&'static str> {
    [
        ("AES_256_GCM", "aes-256-gcm"),
        ("AES_128_GCM", "aes-128-gcm"),
        ("CHACHA20_POLY1305", "chacha20-poly1305"),
    ]
    .into_iter()
    .find(|(rustls, _)| suite.contains(rustls))
    .map(|(_, openssl)| openssl)
}

/// `openssl speed -evp CIPHER` on 16 KiB blocks (a full TLS record), 1 s each, the best
/// of [`ROUNDS`] runs (a ceiling: other load only lowers it), in MB/s.
fn openssl_speed(cipher: &str) -> anyhow::Result<f64> {
    let mut best = None::<f64>;
    for _ in 0..ROUNDS {
        let out = Command::new("openssl")
            .args([
                "speed", "-mr", "-seconds", "1", "-bytes", "16384", "-evp", cipher,
            ])
            .stderr(Stdio::null())
            .output()
            .context("run openssl speed (Debian openssl)")?;
        // Machine-readable: "+F:<n>:<name>:<bytes per second>".
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = text
            .lines()
            .find(|l| l.starts_with("+F:"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow!("openssl speed printed no rate:\n{text}"))?;
        best = Some(best.map_or(rate, |b| b.max(rate)));
    }
    best.map(|bytes| bytes / 1e6)
        .ok_or_else(|| anyhow!("openssl speed did not run"))
}

/// Two disk-less TCG QEMU guests (SeaBIOS screen) with QEMU's own VeNCrypt server on the
/// same certificate directory as the gateway, client certificates required
/// (`verify-peer=on`): X509None, and X509Vnc with the password read from a secret file.
struct Qemu {
    version: String,
    none_port: u16,
    vnc_port: u16,
    _children: [Killed; 2],
    _dir: tempfile::TempDir,
}

impl Qemu {
    async fn start(pki: &Pki) -> anyhow::Result<Qemu> {
        let version = qemu_version()?;
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("vnc-secret");
        std::fs::write(&secret, PASSWORD)?;
        let creds = format!(
            "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on",
            pki.cert_dir.display()
        );
        let none_port = free_port(PEER_PORTS, &[])?;
        let vnc_port = free_port(PEER_PORTS, &[none_port])?;
        let none = spawn_guest(
            dir.path(),
            "x509",
            &["-object", &creds],
            &format!("127.0.0.1:{},tls-creds=tls0", none_port - 5900),
            &[],
        )?;
        let object = format!("secret,id=vncsec0,file={}", secret.display());
        let vnc = spawn_guest(
            dir.path(),
            "x509pass",
            &["-object", &creds, "-object", &object],
            &format!(
                "127.0.0.1:{},tls-creds=tls0,password-secret=vncsec0",
                vnc_port - 5900
            ),
            &[],
        )?;
        if !wait_listening(none_port) || !wait_listening(vnc_port) {
            return Err(anyhow!(
                "QEMU did not open its VNC ports; see {}",
                dir.path().display()
            ));
        }
        // Wait for SeaBIOS to draw, so that every measurement sees the same screen.
        let mut probe = RfbClient::connect_tls(none_port, &pki.creds, None, true).await?;
        probe.full_update().await?;
        Ok(Qemu {
            version,
            none_port,
            vnc_port,
            _children: [none, vnc],
            _dir: dir,
        })
    }
}
