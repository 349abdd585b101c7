//! The console audit trail under stress, end to end on the real daemon (test driver):
//! records of connections the gateway acknowledged survive a `kill -9` in the middle of a
//! load, a flood of unauthenticated connections is summarised per source instead of
//! growing the trail by two rows a connection (while every `auth-failure` is kept), and
//! `audit_max_rows` caps the trail.
//!
//! A connection counts as acknowledged once the client has read the server's version
//! string: the gateway records `connect` before it sends that. Clients bind to their own
//! loopback addresses (all of 127.0.0.0/8 is local) to be several sources at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::timeout,
};
use vmgate_tests::{
    TestDaemon,
    console::{events, field, json_array, start_guest, vnc_section},
    vnc::RfbClient,
    wait_until,
};

/// How long audit records may take to reach the database.
const AUDIT_DEADLINE: Duration = Duration::from_secs(10);
/// How long one client step may take before the client gives up.
const STEP: Duration = Duration::from_secs(5);

/// A `[vnc]` section whose autoport range is this test's own (`slot` is unique per test).
fn vnc_config(slot: u16, extra: &str) -> String {
    let min = 26_000 + slot * 40;
    vnc_section(min..=min + 39, extra)
}

/// Every audit record of `domain`, oldest first.
fn audit(d: &TestDaemon, domain: &str) -> Vec<Value> {
    let out = d.vmgate(&["audit", "--domain", domain, "--json", "--limit", "10000"]);
    json_array(out.ok())
}

/// The audit records of `domain` once `done` holds for them (panics with them otherwise).
#[track_caller]
fn audit_until(d: &TestDaemon, domain: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    if wait_until(AUDIT_DEADLINE, || {
        last = audit(d, domain);
        done(&last)
    }) {
        return last;
    }
    panic!("audit of {domain} never got there:\n{last:#?}");
}

/// The connects and disconnects a `flood-summary` counted ("N connects and M disconnects
/// ..."); (0, 0) for one that reports lost records instead.
fn summary_counts(record: &Value) -> (u64, u64) {
    let words: Vec<&str> = field(record, "reason").split_whitespace().collect();
    match words.as_slice() {
        [c, "connects", "and", d, "disconnects", ..] => (
            c.parse().expect("connect count"),
            d.parse().expect("disconnect count"),
        ),
        _ => (0, 0),
    }
}

/// Connects and disconnects of `records`, kept one by one plus counted in summaries.
fn accounted(records: &[Value]) -> (u64, u64) {
    let (mut connects, mut disconnects) = (0, 0);
    for r in events(records, "flood-summary") {
        let (c, d) = summary_counts(r);
        connects += c;
        disconnects += d;
    }
    let count = |event| events(records, event).count() as u64;
    (
        connects + count("connect"),
        disconnects + count("disconnect"),
    )
}

/// A TCP connection to the console from `ip`, once the server's version string is read:
/// the connection is acknowledged. None if it never got that far.
async fn acknowledged(ip: Ipv4Addr, port: u16) -> Option<(TcpStream, SocketAddr)> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((ip, 0))).ok()?;
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = timeout(STEP, socket.connect(to)).await.ok()?.ok()?;
    let local = stream.local_addr().ok()?;
    let mut version = [0; 12];
    timeout(STEP, stream.read_exact(&mut version))
        .await
        .ok()?
        .ok()?;
    (&version == b"RFB 003.008\n").then_some((stream, local))
}

/// The rest of a security-None login and ClientInit on `stream`, up to ServerInit.
async fn log_in(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(b"RFB 003.008\n").await?;
    let count = stream.read_u8().await?;
    let mut types = vec![0; usize::from(count)];
    stream.read_exact(&mut types).await?;
    stream.write_all(&[1]).await?; // None
    if stream.read_u32().await? != 0 {
        return Err(std::io::ErrorKind::PermissionDenied.into());
    }
    stream.write_all(&[1]).await?; // shared
    let mut server_init = [0; 24];
    stream.read_exact(&mut server_init).await?;
    let name_len = u32::from_be_bytes([
        server_init[20],
        server_init[21],
        server_init[22],
        server_init[23],
    ]);
    let mut name = vec![0; usize::try_from(name_len).unwrap_or(0)];
    stream.read_exact(&mut name).await.map(drop)
}

/// One client: acknowledged, then gone at once or after a whole login (`session`).
/// Returns its address once acknowledged, and whether it got as far as ServerInit (the
/// gateway records `auth-success` before it relays that).
async fn one_client(ip: Ipv4Addr, port: u16, session: bool) -> Option<(SocketAddr, bool)> {
    let (mut stream, local) = acknowledged(ip, port).await?;
    let logged_in = session && matches!(timeout(STEP, log_in(&mut stream)).await, Ok(Ok(())));
    Some((local, logged_in))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_of_acknowledged_connections_survive_kill_9_under_load() {
    let extra = "vnc_max_pending = 1000\nvnc_auth_max_failures = 1000";
    let mut d = TestDaemon::start_with(&vnc_config(0, extra));
    let port = start_guest(&d, "g", "");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..16u8 {
        let (stop, acked) = (stop.clone(), acked.clone());
        // Four sources: past a few dozen connects a minute each, the flood summary counts
        // what is not kept one by one, and that must survive the crash too.
        let ip = Ipv4Addr::new(127, 0, 0, 10 + w % 4);
        workers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match one_client(ip, port, i.is_multiple_of(3)).await {
                    Some(client) => acked.lock().expect("lock").push(client),
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(
        acked.len() > 300,
        "too little load: {} connections",
        acked.len()
    );

    d.restart();
    let records = audit(&d, "g");
    let kept: BTreeSet<&str> = events(&records, "connect")
        .map(|r| field(r, "source"))
        .collect();
    // Logins are never counted in summaries: each must be there on its own.
    let logins: BTreeSet<&str> = events(&records, "auth-success")
        .map(|r| field(r, "source"))
        .collect();
    let sessions: Vec<String> = acked
        .iter()
        .filter(|(_, logged_in)| *logged_in)
        .map(|(local, _)| local.to_string())
        .collect();
    let lost: Vec<&String> = sessions
        .iter()
        .filter(|s| !logins.contains(s.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} logins are not in the audit: {lost:?}",
        lost.len(),
        sessions.len()
    );
    let mut counted: BTreeMap<&str, u64> = BTreeMap::new();
    for r in events(&records, "flood-summary") {
        *counted.entry(field(r, "source")).or_default() += summary_counts(r).0;
    }
    let mut missing: BTreeMap<String, u64> = BTreeMap::new();
    for (local, _) in &acked {
        if !kept.contains(local.to_string().as_str()) {
            *missing.entry(local.ip().to_string()).or_default() += 1;
        }
    }
    eprintln!(
        "{} acknowledged, {} logged in, {} connects kept, not kept by source {missing:?}, \
         counted {counted:?}",
        acked.len(),
        sessions.len(),
        kept.len()
    );
    for (ip, n) in &missing {
        let summarised = counted.get(ip.as_str()).copied().unwrap_or(0);
        assert!(
            summarised >= *n,
            "{n} acknowledged connections from {ip} are not in the audit, and flood summaries \
             count only {summarised} ({} acknowledged in all, {} records):\n{:#?}",
            acked.len(),
            records.len(),
            events(&records, "flood-summary").collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_connection_flood_is_summarised_and_every_failure_kept() {
    const FLOOD: u64 = 200;
    const WRONG: u64 = 20;
    let d = TestDaemon::start_with(&vnc_config(1, "vnc_auth_max_failures = 1000"));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    for i in 0..FLOOD {
        if i % (FLOOD / WRONG) == 0 {
            let err = RfbClient::connect(port, Some("wrong"), true)
                .await
                .expect_err("a wrong password was accepted");
            assert!(
                format!("{err:#}").contains("authentication failed"),
                "{err:#}"
            );
        } else {
            acknowledged(Ipv4Addr::LOCALHOST, port)
                .await
                .expect("the server's version");
        }
    }
    // Every connection is accounted for, one by one or in a summary.
    let records = audit_until(&d, "g", |r| accounted(r) == (FLOOD, FLOOD - WRONG));
    assert_eq!(
        events(&records, "auth-failure").count() as u64,
        WRONG,
        "{records:#?}"
    );
    assert!(
        (records.len() as u64) < FLOOD / 2,
        "{} records for {FLOOD} connections",
        records.len()
    );
    let summaries: Vec<_> = events(&records, "flood-summary").collect();
    assert!(!summaries.is_empty(), "{records:#?}");
    for s in &summaries {
        assert_eq!(field(s, "source"), "127.0.0.1", "{s}");
        assert!(summary_counts(s).0 + summary_counts(s).1 > 0, "{s}");
    }
}

#[tokio::test]
async fn the_audit_keeps_at_most_audit_max_rows() {
    let extra = "vnc_auth_max_failures = 1000\naudit_max_rows = 20";
    let mut d = TestDaemon::start_with(&vnc_config(2, extra));
    let port = start_guest(&d, "g", "passwd = \"secret\"");
    for _ in 0..15 {
        RfbClient::connect(port, Some("wrong"), true)
            .await
            .expect_err("a wrong password was accepted");
    }
    let before = audit_until(&d, "g", |r| events(r, "auth-failure").count() == 15);
    assert!(d.stop(), "vmgated did not stop cleanly:\n{}", d.log());
    // Pruning runs at start (and then every minute).
    d.restart();
    let after = audit_until(&d, "g", |r| r.len() == 20);
    assert_eq!(after.last(), before.last(), "the newest record went");
    assert!(before.len() > 20, "{before:#?}");
}
