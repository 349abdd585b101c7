//! Memory per idle console session, and whether it is returned: the daemon's VmRSS (and its
//! allocator-independent view, RssAnon) before and after N idle authenticated VNC-password
//! sessions on a test guest, for N = 1,000 and 5,000, then again once every session of the
//! burst has closed. One session is opened first so that lazily built state is not counted
//! per session. The same figure bench-gateway prints for 1,000, on its own so it can be
//! rerun quickly after a change to buffers, the relay or the allocator.
//!
//! Run: `cargo run --profile dist -p vmgate-bench --bin bench-session-memory [N ...]`.
//! Prints Markdown; asserts nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use vmgate::{ConnectUri, Connection};
use vmgate_bench::{listed_sessions, machine, raise_nofile_limit, rss};
use vmgate_proto::v1::{DefineRequest, DomainRef};
use vmgate_tests::{
    TestDaemon,
    console::vnc_section,
    vnc::{RfbClient, display_port},
};

const PASSWORD: &str = "secret";
const PORTS: std::ops::RangeInclusive<u16> = 18_200..=18_209;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_nofile_limit();
    let parsed: Result<Vec<usize>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let counts = match parsed {
        Ok(v) if !v.is_empty() => v,
        _ => vec![1_000, 5_000],
    };
    println!("{}", machine());
    println!("### Memory per idle authenticated console session\n");
    println!(
        "| sessions | VmRSS before KiB | with sessions KiB | per session KiB | RssAnon per session KiB | after all closed KiB |"
    );
    println!("|---|---|---|---|---|---|");
    for n in counts {
        // A daemon per row, so one row's leftovers do not flatter the next.
        let extra = vnc_section(PORTS, &format!("vnc_max_sessions = {}\n", n + 16));
        let daemon = TestDaemon::start_with(&extra);
        let uri: ConnectUri = daemon.uri().parse()?;
        let mut api = Connection::open(&uri, false).await?;
        let toml = format!(
            "name = \"crowd\"\n[graphics]\ntype = \"vnc\"\npasswd = \"{PASSWORD}\"\nshare_policy = \"ignore\"\n"
        );
        api.domain
            .define(DefineRequest {
                toml,
                source: "bench".into(),
            })
            .await?;
        api.domain
            .start(DomainRef {
                key: "crowd".into(),
            })
            .await?;
        let port = display_port(&daemon, "crowd");
        let pid = daemon.pid().context("daemon pid")?;
        let mut warm = RfbClient::connect(port, Some(PASSWORD), true).await?;
        warm.full_update().await?;
        let before = rss(pid)?;
        let mut sessions = Vec::with_capacity(n);
        for _ in 0..n {
            sessions.push(RfbClient::connect(port, Some(PASSWORD), true).await?);
        }
        // Let the relays settle into their idle state.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with = rss(pid)?;
        drop(sessions);
        let closed = wait_sessions(&mut api, 1).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss(pid)?;
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / n as f64;
        println!(
            "| {n} | {} | {} | {:.1} | {:.1} | {}{} |",
            before.vm,
            with.vm,
            per(with.vm, before.vm),
            per(with.anon, before.anon),
            after.vm,
            if closed { "" } else { " (not all closed)" }
        );
        drop(warm);
    }
    Ok(())
}

/// Waits (up to 60 s) until the guest lists `left` sessions; false if it never does.
async fn wait_sessions(api: &mut Connection, left: usize) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let listed = listed_sessions(api, "crowd").await?;
        if listed <= left {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}
