//! API benchmark: `list --all` and `dominfo` over the UNIX socket, on one connection and on
//! four, with 1, 100 and 10,000 defined domains; and the CLI's stdin mode running 2,000
//! `list --all`. When libvirtd is installed, the same figures for libvirtd's test driver in
//! the same run (bench/libvirt_api.py). Run: `cargo run --release -p vmgate-tests --bin
//! bench-api`. Prints a Markdown table; asserts nothing.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use vmgate::{ConnectUri, Connection};
use vmgate_proto::v1::{DefineRequest, DomainRef, ListFilter, ListRequest};
use vmgate_tests::{
    TestDaemon,
    bench::{Sample, run_for},
    bins, run_vmgate,
};

const BUDGET: Duration = Duration::from_secs(2);
const SIZES: [usize; 3] = [1, 100, 10_000];
const SCRIPT_LINES: usize = 2_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let daemon = TestDaemon::start();
    let uri: ConnectUri = daemon.uri().parse()?;
    let mut admin = Connection::open(&uri, false).await?;
    let mut defined = 0;
    println!("| peer | domains | call | connections | calls/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for size in SIZES {
        while defined < size {
            let toml = format!("name = \"bench{defined:05}\"\n");
            admin
                .domain
                .define(DefineRequest {
                    toml,
                    source: "bench".into(),
                })
                .await?;
            defined += 1;
        }
        for conns in [1, 4] {
            let list = measure(&uri, conns, |mut c| async move {
                let req = ListRequest {
                    filter: ListFilter::All.into(),
                };
                c.domain.list(req).await.map(drop)
            })
            .await?;
            println!(
                "| vmgated | {size} | list --all | {conns} | {} |",
                list.cells()
            );
            let info = measure(&uri, conns, |mut c| async move {
                c.domain
                    .info(DomainRef {
                        key: "bench00000".into(),
                    })
                    .await
                    .map(drop)
            })
            .await?;
            println!(
                "| vmgated | {size} | dominfo | {conns} | {} |",
                info.cells()
            );
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

/// Runs `call` on `conns` connections at once for `BUDGET`; each task owns a connection.
async fn measure<F, Fut>(uri: &ConnectUri, conns: usize, call: F) -> anyhow::Result<Sample>
where
    F: Fn(Connection) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for _ in 0..conns {
        // Clones share the connection: each task drives its own HTTP/2 connection.
        let conn = Connection::open(uri, false).await?;
        let call = call.clone();
        tasks.spawn(async move {
            run_for(BUDGET, 20, || {
                let fut = call(conn.clone());
                async move { fut.await.expect("call failed") }
            })
            .await
        });
    }
    let samples = tasks.join_all().await;
    Ok(Sample::merge(samples, start.elapsed()))
}

/// libvirtd with its test driver, when installed: the same calls through python3-libvirt.
fn libvirt_peer() {
    let script = bins::workspace_root().join("tests/bench/libvirt_api.py");
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
