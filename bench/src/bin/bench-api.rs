//! API benchmark: `list --all` and `dominfo` over the UNIX socket, on one connection and on
//! four, with 1, 100 and 10,000 defined domains; and the CLI's stdin mode running 2,000
//! `list --all`. When libvirtd is installed, the same figures for libvirtd's test driver in
//! the same run (python/libvirt_api.py). Run: `cargo run --profile dist -p vmgate-bench --bin
//! bench-api`. Prints a Markdown table; asserts nothing.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use vmgate::{ConnectUri, Connection};
use vmgate_bench::{Sample, python_script};
use vmgate_proto::v1::{DefineRequest, DomainRef, ListFilter, ListRequest};
use vmgate_tests::{TestDaemon, run_vmgate};

/// The client runs as the CLI does: the same allocator, and tracing's callsites off.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BUDGET: Duration = Duration::from_secs(2);
const SIZES: [usize; 3] = [1, 100, 10_000];
const SCRIPT_LINES: usize = 2_000;

fn main() -> anyhow::Result<()> {
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => full(),
        [uri, call, n] => profile(uri, call.parse()?, n.parse()?),
        _ => anyhow::bail!("usage: bench-api [URI list|info CALLS]"),
    }
}

/// The two calls measured.
#[derive(Clone, Copy, Debug)]
enum Call {
    List,
    Info,
}

impl std::str::FromStr for Call {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Call> {
        match s {
            "list" => Ok(Call::List),
            "info" => Ok(Call::Info),
            _ => anyhow::bail!("unknown call {s:?}: list or info"),
        }
    }
}

impl Call {
    fn label(self) -> &'static str {
        match self {
            Call::List => "list --all",
            Call::Info => "dominfo",
        }
    }

    /// One call, its answer dropped. `Info` asks for the first domain defined.
    async fn once(self, c: &mut Connection, domain: &str) -> Result<(), tonic::Status> {
        match self {
            Call::List => {
                let req = ListRequest {
                    filter: ListFilter::All.into(),
                };
                c.domain.list(req).await.map(drop)
            }
            Call::Info => {
                let req = DomainRef {
                    key: domain.to_owned(),
                };
                c.domain.info(req).await.map(drop)
            }
        }
    }
}

/// A runtime like the CLI's: one thread, no hop between threads for each reply.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `bench-api URI list|info CALLS`: that many calls on one connection to a daemon started by
/// hand, and nothing else, for `perf stat`, `strace -c` or /proc CPU counters.
fn profile(uri: &str, call: Call, n: usize) -> anyhow::Result<()> {
    let uri: ConnectUri = uri.parse()?;
    current_thread()?.block_on(async {
        let mut c = Connection::open(&uri, false).await?;
        let domain = first_domain(&mut c).await?;
        let start = Instant::now();
        for _ in 0..n {
            call.once(&mut c, &domain).await?;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        eprintln!("{n} x {}: {us:.1} us/call", call.label());
        Ok(())
    })
}

async fn first_domain(c: &mut Connection) -> anyhow::Result<String> {
    let req = ListRequest {
        filter: ListFilter::All.into(),
    };
    let list = c.domain.list(req).await?.into_inner();
    let first = list.domains.into_iter().next();
    Ok(first.map(|d| d.name).unwrap_or_default())
}

fn full() -> anyhow::Result<()> {
    let daemon = TestDaemon::start();
    let uri: ConnectUri = daemon.uri().parse()?;
    let rt = current_thread()?;
    let mut admin = rt.block_on(Connection::open(&uri, false))?;
    let mut defined = 0;
    println!("| peer | domains | call | connections | calls/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for size in SIZES {
        while defined < size {
            let toml = format!("name = \"bench{defined:05}\"\n");
            let req = DefineRequest {
                toml,
                source: "bench".into(),
            };
            rt.block_on(admin.domain.define(req))?;
            defined += 1;
        }
        for conns in [1, 4] {
            for call in [Call::List, Call::Info] {
                let sample = measure(&uri, conns, call)?;
                let label = call.label();
                println!(
                    "| vmgated | {size} | {label} | {conns} | {} |",
                    sample.cells()
                );
            }
        }
    }
    drop(admin);
    drop(daemon);

    let script_daemon = TestDaemon::start();
    let path = script_daemon.file("one.toml", "name = \"one\"\n");
    script_daemon
        .vmgate(&["define", path.to_str().unwrap_or_default()])
        .ok();
    let script = "list --all\n".repeat(SCRIPT_LINES);
    let start = Instant::now();
    let out = run_vmgate(&["-c", &script_daemon.uri()], Some(&script));
    let took = start.elapsed();
    anyhow::ensure!(out.code == 0, "vmgate stdin run failed: {}", out.stderr);
    println!();
    println!(
        "vmgate stdin mode, {SCRIPT_LINES} x `list --all`: {:.3} s",
        took.as_secs_f64()
    );

    libvirt_peer();
    Ok(())
}

/// Runs `call` on `conns` connections at once for `BUDGET`. Each connection has its own
/// thread and single-threaded runtime, as each of the libvirt peer's connections has its own
/// process: a shared multi-threaded runtime would add a thread hop to every reply.
fn measure(uri: &ConnectUri, conns: usize, call: Call) -> anyhow::Result<Sample> {
    let barrier = std::sync::Barrier::new(conns + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..conns)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || -> anyhow::Result<Sample> {
                    let rt = current_thread()?;
                    let opened = rt.block_on(async {
                        let mut c = Connection::open(uri, false).await?;
                        let domain = first_domain(&mut c).await?;
                        anyhow::Ok((c, domain))
                    });
                    // Wait for the others even when this one failed, so none is left waiting.
                    barrier.wait();
                    let (mut c, domain) = opened?;
                    rt.block_on(timed(BUDGET, 20, &mut c, call, &domain))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let samples = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Sample::merge(samples, start.elapsed()))
    })
}

/// Makes `call` repeatedly for `budget` (at least `min_calls` times), timing each, as
/// `vmgate_bench::run_for` does; the calls borrow the connection, which a closure cannot lend out.
async fn timed(
    budget: Duration,
    min_calls: usize,
    c: &mut Connection,
    call: Call,
    domain: &str,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < budget || latencies.len() < min_calls {
        let t = Instant::now();
        call.once(c, domain).await?;
        latencies.push(t.elapsed());
    }
    Ok(Sample {
        latencies,
        wall: start.elapsed(),
    })
}

/// libvirtd with its test driver, when installed: the same calls through python3-libvirt.
fn libvirt_peer() {
    let script = python_script("libvirt_api.py");
    if Command::new("which")
        .arg("libvirtd")
        .stdout(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!(
            "libvirtd is not installed: no peer figures (apt-get install libvirt-daemon libvirt-clients python3-libvirt)"
        );
        return;
    }
    let status = Command::new("/usr/bin/python3").arg(script).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("the libvirtd peer run failed");
    }
}
