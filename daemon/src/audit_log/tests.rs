//! Tests of the audit log: records stored and queried through the spool, a spool left by
//! a crash stored once (even replayed after its records were stored), losses reported as
//! records, flood summaries stored, shutdown's grace, and both kinds of pruning.

use time::Duration as TimeDelta;

use super::*;
use crate::audit::AuditEvent;

/// A store in a temporary directory, and audit options with the spool beside it.
async fn temp_store() -> (Store, AuditOptions, tempfile::TempDir) {
    let (store, dir) = Store::open_temp().await;
    let options = AuditOptions {
        spool_dir: dir.path().join(spool::SPOOL_DIR),
        spool_max_bytes: spool::MAX_BYTES,
        max_age_days: 90,
        max_rows: 10_000_000,
    };
    (store, options, dir)
}

fn start(store: &Store, options: &AuditOptions, shutdown: &Shutdown) -> AuditLog {
    AuditLog::start(store.clone(), options.clone(), shutdown).expect("start")
}

/// A record `age` before now, truncated to the millisecond as the store keeps it.
fn rec(event: AuditEvent, domain: &str, age: TimeDelta) -> AuditRecord {
    let time = OffsetDateTime::now_utc() - age;
    let time = time
        .replace_nanosecond(time.nanosecond() / 1_000_000 * 1_000_000)
        .expect("valid nanosecond");
    AuditRecord {
        time,
        source: "198.51.100.7:40000".into(),
        security_type: "vnc".into(),
        reason: "wrong password".into(),
        ..AuditRecord::new(event, domain)
    }
}

async fn stored(store: &Store) -> Vec<AuditRecord> {
    store.audit(None, i64::MIN, 100_000).await.expect("query")
}

async fn stop(shutdown: Shutdown) {
    shutdown.trigger();
    shutdown.wait().await;
}

#[tokio::test]
async fn records_are_stored_and_queried() {
    let (store, options, _dir) = temp_store().await;
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    let records: Vec<_> = (0..6)
        .map(|i| {
            let domain = if i % 2 == 0 { "alpha" } else { "beta" };
            let event = [AuditEvent::AuthFailure, AuditEvent::AclChange][i % 2];
            rec(event, domain, TimeDelta::seconds(60 - i as i64))
        })
        .collect();
    for r in &records {
        log.record(r.clone());
    }
    // No flush: query waits for what was recorded before it.
    let all = log.query(None, None, 100).await.expect("all");
    assert_eq!(all, records, "oldest first, every field kept");

    let alpha = log.query(Some("alpha"), None, 100).await.expect("alpha");
    assert_eq!(alpha, [0, 2, 4].map(|i| records[i].clone()));

    let since = log
        .query(None, Some(records[3].time), 100)
        .await
        .expect("since");
    assert_eq!(since, records[3..]);

    let newest = log.query(Some("beta"), None, 2).await.expect("limit");
    assert_eq!(newest, [records[3].clone(), records[5].clone()]);
    stop(shutdown).await;
    assert!(options.spool_dir.join("flood").is_dir());
}

#[tokio::test]
async fn flush_waits_until_records_are_stored_and_the_spool_is_emptied() {
    let (store, options, _dir) = temp_store().await;
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    for i in 0..1234 {
        let domain = format!("g{}", i % 7);
        log.record(rec(AuditEvent::AuthFailure, &domain, TimeDelta::ZERO));
    }
    log.flush().await;
    assert_eq!(stored(&store).await.len(), 1234);
    assert_eq!(log.lost_total(), 0);
    assert_eq!(log.inner.spool.bytes(), 0, "stored records leave the spool");
    stop(shutdown).await;
}

#[tokio::test]
async fn records_spooled_before_a_crash_are_stored_once_at_start() {
    let (store, options, _dir) = temp_store().await;
    // A run that spooled records and died before its writer stored them.
    let newest = rec(AuditEvent::AuthFailure, "alpha", TimeDelta::ZERO);
    let records: Vec<_> = (0..1200)
        .map(|i| AuditRecord {
            time: newest.time - TimeDelta::milliseconds(i),
            ..newest.clone()
        })
        .collect();
    {
        let spool = Spool::open(&options.spool_dir, spool::MAX_BYTES).expect("open");
        for r in &records[..700] {
            spool.append(r).expect("append");
        }
        // This segment is stored, but the crash comes before it is deleted: its first
        // batch must not be stored again.
        let segment = spool.seal().expect("seal").remove(0);
        let first: Vec<_> = segment.reader().expect("reader").next_chunk(BATCH);
        assert_eq!(first.len(), BATCH);
        assert!(
            store
                .insert_audit_batch(segment.id(), 0, &first)
                .await
                .expect("store")
        );
        for r in &records[700..] {
            spool.append(r).expect("append");
        }
    }
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    log.flush().await;
    assert_eq!(
        stored(&store).await.len(),
        records.len(),
        "each record once"
    );
    let mut back = stored(&store).await;
    back.sort_by_key(|r| std::cmp::Reverse(r.time));
    assert_eq!(back, records);
    stop(shutdown).await;

    // And nothing is left to store again.
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    log.flush().await;
    assert_eq!(stored(&store).await.len(), records.len());
    stop(shutdown).await;
}

#[tokio::test]
async fn a_torn_record_left_by_a_crash_is_reported() {
    let (store, options, _dir) = temp_store().await;
    {
        let spool = Spool::open(&options.spool_dir, spool::MAX_BYTES).expect("open");
        for _ in 0..3 {
            spool
                .append(&rec(AuditEvent::AuthFailure, "alpha", TimeDelta::ZERO))
                .expect("append");
        }
    }
    let segment = std::fs::read_dir(&options.spool_dir)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let len = std::fs::metadata(&segment).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(len - 3))
        .expect("tear");
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    log.flush().await;
    log.flush().await;
    let back = stored(&store).await;
    assert_eq!(back.len(), 3, "{back:#?}");
    assert!(back[2].event == AuditEvent::FloodSummary && back[2].domain.is_empty());
    assert!(
        back.iter()
            .any(|r| r.reason.starts_with("audit records lost: 1 ")),
        "{back:#?}"
    );
    stop(shutdown).await;
}

#[tokio::test]
async fn a_full_spool_loses_records_and_says_so_in_the_audit() {
    let (store, mut options, _dir) = temp_store().await;
    options.spool_max_bytes = 1000;
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    // The test runtime has one thread and this loop never yields, so the writer cannot
    // drain the spool in between.
    for _ in 0..20 {
        log.record(rec(AuditEvent::AuthFailure, "alpha", TimeDelta::ZERO));
    }
    let lost = log.lost_total();
    assert!(lost > 10, "{lost}");
    log.flush().await;
    log.flush().await;
    let back = stored(&store).await;
    let kept = back
        .iter()
        .filter(|r| r.event == AuditEvent::AuthFailure)
        .count();
    assert_eq!(kept as u64 + lost, 20);
    let notes: Vec<_> = back
        .iter()
        .filter(|r| r.event == AuditEvent::FloodSummary)
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert!(notes[0].contains("being lost"), "{}", notes[0]);
    assert!(
        notes[1].starts_with(&format!("audit records lost: {lost} from ")),
        "{}",
        notes[1]
    );
    assert!(back.iter().all(|r| r.domain == "alpha"));
    stop(shutdown).await;
}

#[tokio::test]
async fn a_flood_is_stored_as_summaries() {
    let (store, options, _dir) = temp_store().await;
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    for i in 0..100 {
        let client = format!("192.0.2.1:{}", 1000 + i);
        for event in [AuditEvent::Connect, AuditEvent::AuthFailure] {
            log.record(AuditRecord {
                source: client.clone(),
                ..AuditRecord::new(event, "g")
            });
        }
    }
    log.flush().await;
    let back = stored(&store).await;
    let count = |e| back.iter().filter(|r| r.event == e).count();
    assert_eq!(count(AuditEvent::AuthFailure), 100);
    assert_eq!(count(AuditEvent::Connect), flood::RATE as usize);
    let summary = back
        .iter()
        .find(|r| r.event == AuditEvent::FloodSummary)
        .expect("a summary");
    assert_eq!(summary.source, "192.0.2.1");
    assert!(
        summary
            .reason
            .starts_with(&format!("{} connects and 0 disconnects", 100 - flood::RATE)),
        "{}",
        summary.reason
    );
    assert_eq!(
        std::fs::read_dir(options.spool_dir.join("flood"))
            .expect("tallies")
            .count(),
        0,
        "stored summaries leave no tally"
    );
    stop(shutdown).await;
}

#[tokio::test]
async fn shutdown_stores_what_is_spooled_and_what_comes_during_the_grace() {
    let (store, options, _dir) = temp_store().await;
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    for _ in 0..50 {
        log.record(rec(AuditEvent::AuthFailure, "alpha", TimeDelta::ZERO));
    }
    shutdown.trigger();
    tokio::time::sleep(SHUTDOWN_QUIET / 5).await;
    log.record(rec(AuditEvent::AuthFailure, "beta", TimeDelta::ZERO));
    shutdown.wait().await;
    assert_eq!(stored(&store).await.len(), 51);
    // The writer has stopped: a record is still spooled for the next start; flush returns.
    log.record(rec(AuditEvent::AuthFailure, "late", TimeDelta::ZERO));
    log.flush().await;
    drop(log);
    let shutdown = Shutdown::new();
    let log = start(&store, &options, &shutdown);
    log.flush().await;
    assert_eq!(stored(&store).await.len(), 52);
    stop(shutdown).await;
}

#[tokio::test]
async fn old_records_and_records_over_the_cap_are_pruned_at_start() {
    let (store, mut options, _dir) = temp_store().await;
    options.max_age_days = 30;
    options.max_rows = 2;
    let old = rec(AuditEvent::Connect, "alpha", TimeDelta::days(31));
    let fresh: Vec<_> = [29, 2, 1]
        .map(|days| rec(AuditEvent::Connect, "alpha", TimeDelta::days(days)))
        .into();
    store.insert_audit(&[old]).await.expect("insert");
    store.insert_audit(&fresh).await.expect("insert");
    let shutdown = Shutdown::new();
    let _log = start(&store, &options, &shutdown);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = stored(&store).await;
        if left.len() == 2 {
            assert_eq!(left, fresh[1..], "the oldest go first");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pruner did not run: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(shutdown).await;
}

#[tokio::test]
async fn prune_once_keeps_records_younger_than_the_age() {
    let (store, _options, _dir) = temp_store().await;
    let now = OffsetDateTime::now_utc();
    let records: Vec<_> = [100, 91, 89, 1]
        .map(|days| rec(AuditEvent::AclChange, "alpha", TimeDelta::days(days)))
        .into();
    store.insert_audit(&records).await.expect("insert");
    assert_eq!(prune_once(&store, 90, now).await.expect("prune"), 2);
    assert_eq!(stored(&store).await, records[2..]);
    assert_eq!(
        prune_once(&store, u32::MAX, now).await.expect("huge age"),
        0
    );
}
