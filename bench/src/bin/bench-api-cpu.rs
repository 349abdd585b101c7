//! Server CPU per API call, by client: what vmgated spends (utime + stime from
//! /proc/PID/stat over N calls) answering `Domain.List` on the rw UNIX socket from vmgate's
//! own client library and from python grpcio, the gRPC client third-party tools use; and,
//! as the peer in the same run, what libvirtd spends answering python3-libvirt's
//! `listAllDomains` (its test driver, one domain). The client's wall time per call is
//! printed beside it.
//!
//! Needs `python3` with grpcio (`pip install grpcio`) for the grpcio row, and libvirtd with
//! `/usr/bin/python3`'s libvirt module for the peer row; a missing one is named instead.
//!
//! Run: `cargo run --profile dist -p vmgate-bench --bin bench-api-cpu [N]` (N = 20,000
//! calls per row by default). Prints Markdown; asserts nothing.

use std::{process::Command, time::Instant};

use anyhow::Context;
use vmgate::{ConnectUri, Connection};
use vmgate_bench::{machine, python_script};
use vmgate_proto::v1::{DefineRequest, ListRequest};
use vmgate_tests::TestDaemon;

fn main() -> anyhow::Result<()> {
    let n: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("N: a number of calls")?,
        None => 20_000,
    };
    println!("{}", machine());
    println!("### Server CPU per `list` call ({n} calls per row, one connection)\n");
    println!("| server | client | server CPU µs/call | client wall µs/call |");
    println!("|---|---|---|---|");

    let daemon = TestDaemon::start();
    let pid = daemon.pid().context("daemon pid")?;
    let uri: ConnectUri = daemon.uri().parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut conn = rt.block_on(Connection::open(&uri, false))?;
    rt.block_on(conn.domain.define(DefineRequest {
        toml: "name = \"test\"\n".into(),
        source: "bench".into(),
    }))?;
    for _ in 0..200 {
        rt.block_on(conn.domain.list(ListRequest::default()))?;
    }
    let before = cpu_us(pid)?;
    let start = Instant::now();
    for _ in 0..n {
        rt.block_on(conn.domain.list(ListRequest::default()))?;
    }
    let wall = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let cpu = (cpu_us(pid)? - before) / n as f64;
    println!("| vmgated | vmgate (Rust, tonic) | {cpu:.1} | {wall:.1} |");
    drop(conn);

    let script = python_script("api_cpu.py");
    let socket = daemon.rw_socket();
    let grpc = Command::new("python3")
        .arg(&script)
        .args(["grpc", &socket.display().to_string()])
        .args([pid.to_string(), n.to_string()])
        .output();
    row("vmgated", "python grpcio", grpc);
    drop(daemon);

    let libvirt = Command::new("/usr/bin/python3")
        .arg(&script)
        .args(["libvirt", &n.to_string()])
        .output();
    row("libvirtd (test driver)", "python3-libvirt", libvirt);
    Ok(())
}

/// Prints a row from the script's "CPU WALL" line, or why there is none.
fn row(server: &str, client: &str, out: std::io::Result<std::process::Output>) {
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut figures = text.split_whitespace();
            let cpu = figures.next().unwrap_or("?");
            let wall = figures.next().unwrap_or("?");
            println!("| {server} | {client} | {cpu} | {wall} |");
        }
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            eprintln!("{server} with {client}:\n{why}");
            // grpcio's errors end with a lone '>'; its "details" line says what failed.
            let reason = why
                .lines()
                .find(|l| l.trim_start().starts_with("details"))
                .or_else(|| why.lines().rev().find(|l| l.trim().len() > 1))
                .unwrap_or("no output")
                .trim();
            println!("| {server} | {client} | not measured: {reason} | |");
        }
        Err(e) => println!("| {server} | {client} | not measured: {e} | |"),
    }
}

/// The process's user + system CPU time so far, in microseconds.
fn cpu_us(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are stat's fields 14 and 15; fields[0] here is field 3.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100);
    Ok(ticks as f64 * 1e6 / per_sec as f64)
}
