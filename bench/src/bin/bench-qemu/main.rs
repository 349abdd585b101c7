//! QEMU driver benchmark: what vmgated costs around real `qemu-system-x86_64` guests (TCG,
//! disk-less: SeaBIOS "No bootable device", 720x400), next to QEMU spawned by hand and to
//! libvirtd 9 with its own qemu driver, measured in the same run.
//!
//! - Start to first console frame: the start command, then gtk-vnc's `gvnccapture` as a
//!   new process until the PNG is saved; median/p90 of 10 after one warm-up run, the guest
//!   destroyed between runs; and the capture alone with the guest left running. vmgated
//!   through its gateway; QEMU direct (spawned, its VNC port polled every 2 ms); libvirtd
//!   with `virsh start`.
//! - With 50 running guests (64 MiB each): starting them one CLI process each; `list --all`
//!   as a new process (median of 20); List calls per second on one connection
//!   (`Domain.List` through the client library; libvirt's `listAllDomains` and
//!   `getAllDomainStats(STATE)` through python3-libvirt); each CLI's stdin mode running
//!   500 `list --all`.
//! - The daemon's VmRSS: fresh with no domains, with 50 defined, with 50 running.
//! - Re-attach: with the 50 guests running, the daemon stopped (SIGTERM) or killed
//!   (SIGKILL), then the time from spawning a new one until `list` (a new CLI process,
//!   polled) shows all 50 running; 3 runs each.
//! - A QEMU SIGKILLed from outside: from the kill to the API saying "shut off", polled on
//!   one connection as fast as it answers; 20 guests, one after another.
//!
//! libvirtd (`libvirt.rs`) runs privileged (root) as a child of this process, inside a
//! private mount namespace held by a `sleep` (util-linux `unshare`/`nsenter`): overlays on
//! /etc, /var and /run put everything it and its guests write (qemu.conf, the
//! `libvirt-qemu` account its driver needs, state, caches, pidfiles, logs) in a temporary
//! directory, so nothing on the host changes and a libvirtd the host may run is not
//! touched. Its sockets are in that directory too. Without root, libvirtd, virsh, unshare
//! or nsenter its rows say what is missing. Every QEMU, libvirtd and vmgated started here is killed when its owner is
//! dropped, also on error or panic (an interrupt with Ctrl-C may leave some behind).
//!
//! Run: `cargo run --profile dist -p vmgate-bench --bin bench-qemu` (about 3 minutes on 2 CPUs
//! once built). Prints Markdown; asserts nothing.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::runtime::Runtime;
use vmgate::{ConnectUri, Connection};
use vmgate_bench::{Sample, load_average, machine, repeat_captures};
use vmgate_proto::v1::{DefineRequest, DomainRef, DomainState, ListFilter, ListRequest};
use vmgate_tests::{
    TestDaemon, on_path,
    peer::{Killed, free_port, qemu_version, spawn_guest},
    run_vmgate,
    vnc::{gvnccapture, parse_display, png_size},
};

mod libvirt;

use libvirt::{Libvirt, libvirt_version};

const CAPTURES: usize = 10;
const GUESTS: usize = 50;
const CLI_RUNS: usize = 20;
const API_FOR: Duration = Duration::from_secs(2);
const STDIN_LINES: usize = 500;
const RESTARTS: usize = 3;
const KILLS: usize = 20;
/// How long 50 freshly started guests get to leave SeaBIOS's busy phase before measuring.
const SETTLE: Duration = Duration::from_secs(5);
/// The longest any single wait (a daemon, a state) may take before the run gives up.
const DEADLINE: Duration = Duration::from_secs(60);
/// This benchmark's own ports: vmgated's autoport range and the peers' fixed ports.
const VMGATED_PORTS: (u16, u16) = (23_000, 23_199);
const PEER_PORTS: (u16, u16) = (23_200, 23_299);

fn main() -> anyhow::Result<()> {
    reap_orphaned_qemus();
    println!("{}", machine());
    let qemu = match qemu_version() {
        Ok(v) => v,
        Err(e) => {
            println!("Not measured: {e:#} (Debian qemu-system-x86).");
            return Ok(());
        }
    };
    let libvirt = libvirt_version().map_or_else(|| "libvirtd".into(), |v| format!("libvirtd {v}"));
    frames(&qemu, &libvirt)?;
    eprintln!("vmgated: {GUESTS} guests");
    let ours = fleet(&mut Vmgated::start()?);
    eprintln!("libvirtd: {GUESTS} guests");
    let theirs = Libvirt::start().and_then(|mut lv| fleet(&mut lv));
    print_fleet(&qemu, &libvirt, &ours, &theirs);
    println!("At the end: {}.", load_average());
    Ok(())
}

/// Makes this process the subreaper of everything it starts and reaps its QEMU children
/// as soon as they exit. Both daemons leave guests that outlive them (libvirtd daemonizes
/// QEMU; vmgated's guests outlive a restart), and such orphans go to the nearest
/// subreaper, else to pid 1. The init of the machine this was written on reaps orphans
/// only every 1-2 s, and libvirtd reports a killed guest shut off only once its QEMU is
/// reaped: without this its figure measured that init, not libvirtd. Other children are
/// left to whoever waits for them (`waitid` with `WNOWAIT` only looks).
fn reap_orphaned_qemus() {
    use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
    if nix::sys::prctl::set_child_subreaper(true).is_err() {
        return;
    }
    std::thread::spawn(|| {
        loop {
            let status = waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
            let Some(pid) = status.ok().and_then(|s| s.pid()) else {
                // No child at all for now.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.starts_with("qemu") {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            } else {
                // Someone else's to reap: look again shortly.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
}

fn names() -> Vec<String> {
    (0..GUESTS).map(|i| format!("g{i:02}")).collect()
}

fn running_rows(list: &str) -> usize {
    list.lines()
        .filter(|l| l.trim_end().ends_with(" running"))
        .count()
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn sample(latencies: Vec<Duration>) -> Sample {
    Sample {
        latencies,
        wall: Duration::ZERO,
    }
}

/// Checks a CLI's exit status; its stdout, or its stderr as the error.
fn checked(what: &str, ok: bool, stdout: String, stderr: &str) -> anyhow::Result<String> {
    ensure!(ok, "{what} failed: {}", stderr.trim());
    Ok(stdout)
}

// ---------------------------------------------------------------------------------------
// The two management daemons

/// What the benchmark does with a management daemon, vmgated or libvirtd.
trait Manager {
    /// The CLI (`vmgate`/`virsh`) with ARGS, as a new process.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String>;
    /// The CLI's stdin mode running `script`.
    fn cli_stdin(&self, script: &str) -> anyhow::Result<()>;
    /// Defines a disk-less guest with 64 MiB and a VNC console.
    fn define(&mut self, name: &str) -> anyhow::Result<()>;
    fn pid(&self) -> Option<u32>;
    /// The pids of this daemon's running QEMU processes.
    fn qemu_pids(&self) -> Vec<u32>;
    /// Ends the daemon with `signal`, then spawns a new one; returns when it was spawned.
    fn restart(&mut self, signal: Signal) -> anyhow::Result<Instant>;
    /// List calls on one connection for [`API_FOR`], one sample per kind of call.
    fn list_rates(&self) -> anyhow::Result<Vec<Sample>>;
    /// For each guest: SIGKILL its QEMU, then poll the API until it says shut off.
    fn kills_noticed(&self, names: &[String]) -> anyhow::Result<Sample>;

    /// The console port of a running guest, from the CLI's `vncdisplay`.
    fn console_port(&self, name: &str) -> anyhow::Result<u16> {
        let text = self.cli(&["vncdisplay", name])?;
        parse_display(text.trim()).with_context(|| format!("vncdisplay printed {text:?}"))
    }
}

/// vmgated with the qemu driver, through the test harness.
struct Vmgated {
    d: TestDaemon,
    rt: Runtime,
}

impl Vmgated {
    fn start() -> anyhow::Result<Vmgated> {
        let d = TestDaemon::start_qemu(&format!(
            "\n[vnc]\nremote_display_port_min = {}\nremote_display_port_max = {}\n",
            VMGATED_PORTS.0, VMGATED_PORTS.1
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Vmgated { d, rt })
    }

    fn uri(&self) -> anyhow::Result<ConnectUri> {
        Ok(self.d.uri().parse()?)
    }
}

impl Manager for Vmgated {
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.d.vmgate(args);
        let what = format!("vmgate {}", args.join(" "));
        checked(&what, out.code == 0, out.stdout, &out.stderr)
    }

    fn cli_stdin(&self, script: &str) -> anyhow::Result<()> {
        let out = run_vmgate(&["-c", &self.d.uri()], Some(script));
        checked(
            "vmgate's stdin mode",
            out.code == 0,
            out.stdout,
            &out.stderr,
        )
        .map(drop)
    }

    fn define(&mut self, name: &str) -> anyhow::Result<()> {
        let toml = format!("name = \"{name}\"\nmemory_mib = 64\n[graphics]\ntype = \"vnc\"\n");
        let uri = self.uri()?;
        self.rt.block_on(async {
            let mut api = Connection::open(&uri, false).await?;
            let source = "bench".into();
            api.domain.define(DefineRequest { toml, source }).await?;
            anyhow::Ok(())
        })
    }

    fn pid(&self) -> Option<u32> {
        self.d.pid()
    }

    fn qemu_pids(&self) -> Vec<u32> {
        self.d.qemu_pids()
    }

    fn restart(&mut self, signal: Signal) -> anyhow::Result<Instant> {
        if signal == Signal::SIGKILL {
            self.d.kill9();
        } else {
            ensure!(
                self.d.stop(),
                "vmgated did not stop cleanly:\n{}",
                self.d.log()
            );
        }
        let spawned = Instant::now();
        self.d.restart();
        Ok(spawned)
    }

    fn list_rates(&self) -> anyhow::Result<Vec<Sample>> {
        let uri = self.uri()?;
        let sample = self.rt.block_on(async {
            let mut api = Connection::open(&uri, false).await?;
            let (start, mut latencies) = (Instant::now(), Vec::new());
            while start.elapsed() < API_FOR || latencies.len() < 20 {
                let t = Instant::now();
                let filter = ListFilter::All.into();
                api.domain.list(ListRequest { filter }).await?;
                latencies.push(t.elapsed());
            }
            let wall = start.elapsed();
            anyhow::Ok(Sample { latencies, wall })
        })?;
        Ok(vec![sample])
    }

    fn kills_noticed(&self, names: &[String]) -> anyhow::Result<Sample> {
        let uri = self.uri()?;
        let pids: Vec<u32> = names
            .iter()
            .map(|n| read_pid(&self.d.qemu_run_dir(n).join("qemu.pid")).context("a qemu.pid"))
            .collect::<anyhow::Result<_>>()?;
        self.rt.block_on(async {
            let mut api = Connection::open(&uri, false).await?;
            let mut latencies = Vec::with_capacity(names.len());
            for (name, pid) in names.iter().zip(pids) {
                let key = DomainRef { key: name.clone() };
                let t = Instant::now();
                kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
                loop {
                    let info = api.domain.info(key.clone()).await?.into_inner();
                    if info
                        .summary
                        .is_some_and(|s| s.state() == DomainState::ShutOff)
                    {
                        break;
                    }
                    ensure!(t.elapsed() < DEADLINE, "{name}'s end was not noticed");
                }
                latencies.push(t.elapsed());
            }
            Ok(sample(latencies))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Start to first console frame

/// [`CAPTURES`] start-to-frame runs after a warm-up, and captures of a settled guest.
struct FrameRow {
    /// The start command returning.
    started: Sample,
    /// The PNG saved, from the start command's start.
    framed: Sample,
    /// How many runs saved frames of each size (or none).
    sizes: BTreeMap<String, usize>,
    /// gvnccapture alone, the guest up for a second already.
    settled: Sample,
}

/// Runs `start` (which brings up a guest whose console is `port`), then gvnccapture, then
/// `stop`, [`CAPTURES`] times after a warm-up run; then `start` once more for the
/// captures of a settled guest.
fn frame_row(
    port: impl Fn() -> anyhow::Result<u16>,
    mut start: impl FnMut() -> anyhow::Result<()>,
    mut stop: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<FrameRow> {
    start()?;
    let port = port()?;
    let target = format!("127.0.0.1:{}", port - 5900);
    let png = tempfile::Builder::new().suffix(".png").tempfile()?;
    let png = png.path();
    stop()?;
    let (mut started, mut framed, mut sizes) = (Vec::new(), Vec::new(), BTreeMap::new());
    for run in 0..=CAPTURES {
        let t = Instant::now();
        start()?;
        let up = t.elapsed();
        let cap = gvnccapture(&target, png, None);
        let saved = t.elapsed();
        stop()?;
        if run == 0 {
            continue; // the warm-up
        }
        let size = cap.ok.then(|| png_size(png)).flatten();
        let label = size.map_or_else(|| "no frame".into(), |(w, h)| format!("{w}x{h}"));
        *sizes.entry(label).or_insert(0) += 1;
        if size.is_some() {
            started.push(up);
            framed.push(saved);
        }
    }
    start()?;
    std::thread::sleep(Duration::from_secs(1));
    let settled = repeat_captures(CAPTURES, || gvnccapture(&target, png, None)).0;
    stop()?;
    Ok(FrameRow {
        started: sample(started),
        framed: sample(framed),
        sizes,
        settled,
    })
}

/// A manager's guest `g`: the start and destroy commands.
fn managed_frames(m: &mut impl Manager) -> anyhow::Result<FrameRow> {
    m.define("g")?;
    let m = &*m;
    frame_row(
        || m.console_port("g"),
        || m.cli(&["start", "g"]).map(drop),
        || m.cli(&["destroy", "g"]).map(drop),
    )
}

/// QEMU on its own: spawned, its VNC port polled until it listens; killed to stop.
fn direct_frames() -> anyhow::Result<FrameRow> {
    let dir = tempfile::tempdir()?;
    let port = free_port(PEER_PORTS, &[])?;
    let guest = std::cell::RefCell::new(None::<Killed>);
    frame_row(
        || Ok(port),
        || {
            let vnc = format!("127.0.0.1:{}", port - 5900);
            *guest.borrow_mut() = Some(spawn_guest(dir.path(), "direct", &[], &vnc, &[])?);
            let end = Instant::now() + DEADLINE;
            while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
                ensure!(Instant::now() < end, "QEMU did not listen on {port}");
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        },
        || {
            guest.borrow_mut().take();
            Ok(())
        },
    )
}

fn frames(qemu: &str, libvirt: &str) -> anyhow::Result<()> {
    println!(
        "### Start to first console frame: start command, then gvnccapture (new process) until the PNG is saved ({CAPTURES} runs after a warm-up)\n"
    );
    if !on_path("gvnccapture") || !on_path("expect") {
        println!("Not measured: gvnccapture or expect missing (Debian gvncviewer, expect).\n");
        return Ok(());
    }
    eprintln!("start to frame: vmgated");
    let ours = managed_frames(&mut Vmgated::start()?)?;
    eprintln!("start to frame: QEMU direct");
    let direct = direct_frames();
    eprintln!("start to frame: libvirtd");
    let theirs = Libvirt::start().and_then(|mut lv| managed_frames(&mut lv));
    println!(
        "| path | start returns, median ms | start to PNG, median ms | p90 ms | frames | x vmgated's median | capture alone, guest up, median ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    let base = ours.framed.quantile_ms(0.5);
    let rows = [
        (
            "vmgated (qemu driver): `vmgate start`, capture through the gateway".to_owned(),
            Ok(ours),
        ),
        (
            format!("QEMU {qemu} spawned directly, VNC port polled, capture"),
            direct,
        ),
        (
            format!("{libvirt} (qemu driver): `virsh start`, capture from QEMU's VNC"),
            theirs,
        ),
    ];
    for (label, row) in rows {
        let Ok(r) = row.map_err(|e| println!("| {label} | not measured ({e:#}) | | | | | |"))
        else {
            continue;
        };
        let sizes: Vec<String> = r.sizes.iter().map(|(s, n)| format!("{s} x{n}")).collect();
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.0} |",
            r.started.quantile_ms(0.5),
            r.framed.quantile_ms(0.5),
            r.framed.quantile_ms(0.9),
            sizes.join(", "),
            r.framed.quantile_ms(0.5) / base,
            r.settled.quantile_ms(0.5)
        );
    }
    println!(
        "\nThe captures run gvnccapture under `expect` (as every benchmark here does), which adds the same few ms to each row.\n"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 50 guests

/// What one daemon did with [`GUESTS`] guests; a field is None when it was not measured.
#[derive(Default)]
struct Fleet {
    start_all: Option<Duration>,
    list_cli: Option<Sample>,
    /// One sample per kind of List call.
    list_rates: Vec<Sample>,
    stdin: Option<Duration>,
    rss_empty: Option<u64>,
    rss_defined: Option<u64>,
    rss_running: Option<u64>,
    qemu_rss: Option<u64>,
    reattach_term: Option<Sample>,
    reattach_kill: Option<Sample>,
    kill_noticed: Option<Sample>,
    /// Why a figure is missing, or what else happened.
    notes: Vec<String>,
}

fn fleet(m: &mut impl Manager) -> anyhow::Result<Fleet> {
    let mut f = Fleet::default();
    // Once the CLI answers, the daemon is fully up (libvirtd probes the emulator first).
    m.cli(&["list", "--all"])?;
    std::thread::sleep(Duration::from_secs(1));
    f.rss_empty = m.pid().and_then(vm_rss_kib);
    for name in names() {
        m.define(&name)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    f.rss_defined = m.pid().and_then(vm_rss_kib);
    let t = Instant::now();
    for name in names() {
        m.cli(&["start", &name])?;
    }
    f.start_all = Some(t.elapsed());
    std::thread::sleep(SETTLE);
    f.rss_running = m.pid().and_then(vm_rss_kib);
    let qemu_rss: Vec<u64> = m.qemu_pids().into_iter().filter_map(vm_rss_kib).collect();
    f.qemu_rss =
        (!qemu_rss.is_empty()).then(|| qemu_rss.iter().sum::<u64>() / qemu_rss.len() as u64);

    let (mut latencies, mut listed) = (Vec::with_capacity(CLI_RUNS), 0);
    for _ in 0..CLI_RUNS {
        let t = Instant::now();
        listed = running_rows(&m.cli(&["list", "--all"])?);
        latencies.push(t.elapsed());
    }
    f.list_cli = Some(sample(latencies));
    if listed != GUESTS {
        f.notes.push(format!("{listed} guests listed as running"));
    }
    match m.list_rates() {
        Ok(rates) => f.list_rates = rates,
        Err(e) => f.notes.push(format!("List calls not measured: {e:#}")),
    }
    let t = Instant::now();
    m.cli_stdin(&"list --all\n".repeat(STDIN_LINES))?;
    f.stdin = Some(t.elapsed());

    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        let mut runs = Vec::with_capacity(RESTARTS);
        for _ in 0..RESTARTS {
            let spawned = m.restart(signal)?;
            let end = spawned + DEADLINE;
            while m
                .cli(&["list"])
                .map_or(true, |l| running_rows(&l) != GUESTS)
            {
                ensure!(
                    Instant::now() < end,
                    "{GUESTS} running guests were not listed"
                );
            }
            runs.push(spawned.elapsed());
        }
        let slot = match signal {
            Signal::SIGKILL => &mut f.reattach_kill,
            _ => &mut f.reattach_term,
        };
        *slot = Some(sample(runs));
    }

    let victims: Vec<String> = names().into_iter().take(KILLS).collect();
    match m.kills_noticed(&victims) {
        Ok(s) => f.kill_noticed = Some(s),
        Err(e) => f.notes.push(format!("a killed QEMU not measured: {e:#}")),
    }
    Ok(f)
}

/// A figure for the table: as shown, and a cost compared between the daemons (lower is
/// better; the inverse of a rate).
type Figure = Option<(String, f64)>;

/// The rows' labels, in [`figures`]' order.
fn labels() -> [String; 13] {
    // vmgated has one List call, compared with each of libvirt's two.
    let list = "List on one connection, calls/s (p50 / p99 ms): `Domain.List` /";
    let reattach = format!("spawn to `list` showing {GUESTS} running, median of {RESTARTS}, ms");
    [
        format!("start {GUESTS} guests, one CLI process each, s"),
        format!("`list --all` as a new process, median of {CLI_RUNS}, ms"),
        format!("{list} `listAllDomains` (no states)"),
        format!("{list} `getAllDomainStats(STATE)`"),
        format!("stdin mode, {STDIN_LINES} x `list --all` on one connection, s"),
        "daemon VmRSS, fresh, no domains, MiB".into(),
        format!("daemon VmRSS, {GUESTS} defined, MiB"),
        format!("daemon VmRSS, {GUESTS} running, MiB"),
        "daemon VmRSS per running guest, KiB".into(),
        "QEMU VmRSS per guest (mean), MiB".into(),
        format!("re-attach after SIGTERM: {reattach}"),
        format!("re-attach after SIGKILL: {reattach}"),
        format!("QEMU SIGKILLed from outside to the API saying shut off, p50 / p99 of {KILLS}, ms"),
    ]
}

fn figures(f: &Fleet) -> [Figure; 13] {
    let fixed = |v: Option<f64>, digits: usize| v.map(|v| (format!("{v:.digits$}"), v));
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let mib = |kib: Option<u64>| kib.map(|k| (format!("{:.1}", k as f64 / 1024.0), k as f64));
    let quantiles = |s: &Option<Sample>, q: f64, digits: usize| {
        s.as_ref().map(|s| {
            let (p50, other) = (s.quantile_ms(0.5), s.quantile_ms(q));
            let shown = match q {
                1.0 => format!("{p50:.digits$} (max {other:.digits$})"),
                _ => format!("{p50:.digits$} / {other:.digits$}"),
            };
            (shown, p50)
        })
    };
    let rate = |s: Option<&Sample>| {
        s.map(|s| {
            let (p50, p99) = (s.quantile_ms(0.5), s.quantile_ms(0.99));
            let shown = format!("{:.0} ({p50:.3} / {p99:.3})", s.per_sec());
            (shown, 1.0 / s.per_sec())
        })
    };
    let median = f.list_cli.as_ref().map(|s| s.quantile_ms(0.5));
    let per_guest = f.rss_running.zip(f.rss_defined);
    let per_guest = per_guest.map(|(r, d)| (r as f64 - d as f64) / GUESTS as f64);
    [
        fixed(secs(f.start_all), 1),
        fixed(median, 1),
        rate(f.list_rates.first()),
        rate(f.list_rates.last()),
        fixed(secs(f.stdin), 2),
        mib(f.rss_empty),
        mib(f.rss_defined),
        mib(f.rss_running),
        fixed(per_guest, 0),
        mib(f.qemu_rss),
        quantiles(&f.reattach_term, 1.0, 0),
        quantiles(&f.reattach_kill, 1.0, 0),
        quantiles(&f.kill_noticed, 0.99, 1),
    ]
}

fn print_fleet(
    qemu: &str,
    libvirt: &str,
    ours: &anyhow::Result<Fleet>,
    theirs: &anyhow::Result<Fleet>,
) {
    println!(
        "### {GUESTS} running disk-less guests (64 MiB, TCG, QEMU {qemu}): listing, memory, re-attach, a QEMU killed from outside\n"
    );
    let empty = Fleet::default();
    for (who, result) in [("vmgated", ours), (libvirt, theirs)] {
        if let Err(e) = result {
            println!("{who}: not measured ({e:#}).\n");
        }
    }
    let (ours, theirs) = (
        ours.as_ref().unwrap_or(&empty),
        theirs.as_ref().unwrap_or(&empty),
    );
    println!("| measured | vmgated | {libvirt} | ratio (>1: vmgated better) |");
    println!("|---|---|---|---|");
    let shown = |f: &Figure| f.as_ref().map_or("-".to_owned(), |(s, _)| s.clone());
    let rows = labels().into_iter().zip(figures(ours)).zip(figures(theirs));
    for ((label, o), t) in rows {
        let ratio = match (&o, &t) {
            (Some((_, o)), Some((_, t))) if *o > 0.0 => format!("{:.2}", t / o),
            _ => "-".to_owned(),
        };
        println!("| {label} | {} | {} | {ratio} |", shown(&o), shown(&t));
    }
    let notes = [("vmgated", ours), (libvirt, theirs)];
    for (who, note) in notes
        .iter()
        .flat_map(|(w, f)| f.notes.iter().map(move |n| (w, n)))
    {
        println!("\nNote ({who}): {note}.");
    }
    println!();
}
