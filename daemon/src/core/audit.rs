//! The daemon's console audit log: the [`AuditSink`] the gateways report to. Each record is
//! logged at once through tracing (target `audit`, info level) and queued for the database;
//! a writer task stores the queue in batches, and a pruner deletes records older than
//! `audit_max_age_days` at start and then hourly. This module owns those two tasks and the
//! queue; the SQL is in `store`, what goes into a record is the gateway's business (records
//! have no field for a password, and reasons must not carry one).
//!
//! `record` never blocks or awaits, so a gateway cannot be slowed by the database. The
//! queue is bounded ([`QUEUE_CAPACITY`] records): when it is full, a record is still logged
//! through tracing but not stored, and warnings say so, with the number dropped, when the
//! queue fills and once the writer catches up. The tracing log is therefore the complete
//! trail; the database is the queryable one, complete unless a warning says otherwise.
//!
//! On shutdown the writer stores what is queued and then keeps storing while records keep
//! coming (until [`SHUTDOWN_QUIET`] passes without one, at most [`SHUTDOWN_GRACE`]), so the
//! disconnect records of the sessions that shutdown cuts are kept too. Records that arrive
//! after the writer has stopped are only logged.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;
use tokio::{
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot,
    },
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use crate::{
    shutdown::Shutdown,
    store::{Store, StoreError, unix_ms},
    vnc::audit::{AuditRecord, AuditSink},
};

/// Records queued for the database at most; more are logged but not stored.
pub const QUEUE_CAPACITY: usize = 10_000;
/// After shutdown, the writer stops once no record has come for this long...
pub const SHUTDOWN_QUIET: Duration = Duration::from_millis(250);
/// ... or this long after shutdown at the latest.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Records stored per transaction at most.
const BATCH: usize = 500;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Pauses before storing a failed batch again; then it is given up (it is in the log).
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];
/// How long `query` waits for queued records to be stored before it reads anyway.
const QUERY_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The console audit log. Cheap to clone; all clones share one queue.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    queue: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Dropped since the writer last reported it.
    dropped: AtomicU64,
    /// Dropped since start.
    dropped_total: AtomicU64,
    /// Whether a record has been refused because the writer has stopped.
    closed_warned: AtomicBool,
}

enum Message {
    Record(AuditRecord),
    /// Answered once every message queued before it is stored (or given up).
    Flush(oneshot::Sender<()>),
}

impl AuditLog {
    /// Spawns the writer and the pruner on `shutdown`; records older than `max_age_days`
    /// are deleted at start and then every hour.
    pub fn start(store: Store, max_age_days: u32, shutdown: &Shutdown) -> AuditLog {
        AuditLog::start_with_capacity(store, max_age_days, shutdown, QUEUE_CAPACITY)
    }

    fn start_with_capacity(
        store: Store,
        max_age_days: u32,
        shutdown: &Shutdown,
        capacity: usize,
    ) -> AuditLog {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            store: store.clone(),
            counters: counters.clone(),
        };
        shutdown.spawn(writer.run(rx, shutdown.child_token()));
        shutdown.spawn(prune_loop(
            store.clone(),
            max_age_days,
            shutdown.child_token(),
        ));
        AuditLog {
            inner: Arc::new(Inner {
                store,
                queue,
                counters,
            }),
        }
    }

    /// The newest `limit` records (of `domain`, if given) at or after `since`, oldest
    /// first. Records handed to `record` before the call are included, unless storing them
    /// takes longer than a couple of seconds.
    pub async fn query(
        &self,
        domain: Option<&str>,
        since: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // Timing out only means the newest records may be missing from the answer.
        let _ = tokio::time::timeout(QUERY_FLUSH_TIMEOUT, self.flush()).await;
        let since_ms = since.map_or(i64::MIN, unix_ms);
        self.inner.store.audit(domain, since_ms, limit).await
    }

    /// Waits until every record handed to `record` so far is in the database (or was
    /// dropped, or failed to store: both are logged). Returns at once once the writer has
    /// stopped.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.queue.send(Message::Flush(done)).await.is_ok() {
            // An error means the writer stopped; there is nothing more to wait for.
            let _ = wait.await;
        }
    }

    /// Records logged but not stored because the queue was full, since start.
    pub fn dropped_total(&self) -> u64 {
        self.inner.counters.dropped_total.load(Ordering::Relaxed)
    }
}

impl AuditSink for AuditLog {
    fn record(&self, r: AuditRecord) {
        tracing::info!(
            target: "audit",
            event = %r.event,
            domain = %r.domain,
            source = %r.source,
            security_type = %r.security_type,
            identity = %r.identity,
            reason = %r.reason,
            "console audit"
        );
        let counters = &self.inner.counters;
        match self.inner.queue.try_send(Message::Record(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counters.dropped_total.fetch_add(1, Ordering::Relaxed);
                if counters.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        capacity = self.inner.queue.max_capacity(),
                        "Audit queue is full: records are logged but not stored until it drains"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {
                if !counters.closed_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("Audit writer has stopped: records are logged but not stored");
                }
            }
        }
    }
}

/// The task that moves queued records into the database.
struct Writer {
    store: Store,
    counters: Arc<Counters>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Message>, cancel: CancellationToken) {
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut buf, BATCH) => {
                    if n == 0 {
                        return; // Every AuditLog is gone.
                    }
                    self.write(&mut buf).await;
                }
                () = cancel.cancelled() => break,
            }
        }

        let deadline = Instant::now() + SHUTDOWN_GRACE;
        loop {
            let quiet_until = (Instant::now() + SHUTDOWN_QUIET).min(deadline);
            match tokio::time::timeout_at(quiet_until, rx.recv_many(&mut buf, BATCH)).await {
                Ok(n) if n > 0 => self.write(&mut buf).await,
                _ => break,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        // Refuse new records, then store the ones that slipped in meanwhile.
        rx.close();
        while let Some(message) = rx.recv().await {
            buf.push(message);
            if buf.len() >= BATCH {
                self.write(&mut buf).await;
            }
        }
        self.write(&mut buf).await;
    }

    /// Stores the records in `buf` (emptying it), then answers its flush requests.
    async fn write(&self, buf: &mut Vec<Message>) {
        let mut records = Vec::with_capacity(buf.len());
        let mut waiters = Vec::new();
        for message in buf.drain(..) {
            match message {
                Message::Record(r) => records.push(r),
                Message::Flush(done) => waiters.push(done),
            }
        }
        if !records.is_empty() {
            self.store_batch(&records).await;
        }
        let dropped = self.counters.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "Audit queue was full: records were logged but not stored"
            );
        }
        for done in waiters {
            // The waiter may have given up; that is fine.
            let _ = done.send(());
        }
    }

    async fn store_batch(&self, records: &[AuditRecord]) {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match self.store.insert_audit(records).await {
                Ok(()) => return,
                Err(e) => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(error = %e, "Cannot store audit records; retrying");
                        tokio::time::sleep(*delay).await;
                    }
                    None => {
                        tracing::error!(
                            count = records.len(),
                            error = %e,
                            "Cannot store audit records; they are in the log only"
                        );
                        return;
                    }
                },
            }
        }
    }
}

async fn prune_loop(store: Store, max_age_days: u32, cancel: CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // The first tick is immediate: prune at start.
        tokio::select! {
            _ = every.tick() => {}
            () = cancel.cancelled() => return,
        }
        let pruned = tokio::select! {
            r = prune_once(&store, max_age_days, OffsetDateTime::now_utc()) => r,
            () = cancel.cancelled() => return,
        };
        match pruned {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, max_age_days, "Pruned old audit records"),
            Err(e) => tracing::warn!(error = %e, "Cannot prune old audit records"),
        }
    }
}

/// Deletes the records older than `max_age_days` before `now`; returns how many.
async fn prune_once(
    store: &Store,
    max_age_days: u32,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    match now.checked_sub(time::Duration::days(i64::from(max_age_days))) {
        Some(cutoff) => store.prune_audit(unix_ms(cutoff)).await,
        // Older than the oldest representable time: there is nothing that old.
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use time::Duration as TimeDelta;

    use super::*;
    use crate::vnc::audit::AuditEvent;

    async fn temp_store() -> (Store, tempfile::TempDir) {
        Store::open_temp().await
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

    #[tokio::test]
    async fn records_are_stored_and_queried() {
        let (store, _dir) = temp_store().await;
        let shutdown = Shutdown::new();
        let log = AuditLog::start(store, 90, &shutdown);
        let records: Vec<_> = (0..6)
            .map(|i| {
                let domain = if i % 2 == 0 { "alpha" } else { "beta" };
                rec(
                    AuditEvent::ALL[i],
                    domain,
                    TimeDelta::seconds(60 - i as i64),
                )
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

        shutdown.trigger();
        shutdown.wait().await;
    }

    #[tokio::test]
    async fn flush_waits_until_records_are_stored() {
        let (store, _dir) = temp_store().await;
        let shutdown = Shutdown::new();
        let log = AuditLog::start(store.clone(), 90, &shutdown);
        for i in 0..1234 {
            log.record(rec(
                AuditEvent::Connect,
                &format!("g{}", i % 7),
                TimeDelta::ZERO,
            ));
        }
        log.flush().await;
        let stored = store.audit(None, i64::MIN, 10_000).await.expect("query");
        assert_eq!(stored.len(), 1234);
        assert_eq!(log.dropped_total(), 0);
        shutdown.trigger();
        shutdown.wait().await;
    }

    #[tokio::test]
    async fn shutdown_stores_what_is_queued_and_what_comes_during_the_grace() {
        let (store, _dir) = temp_store().await;
        let shutdown = Shutdown::new();
        let log = AuditLog::start(store.clone(), 90, &shutdown);
        for _ in 0..50 {
            log.record(rec(AuditEvent::Disconnect, "alpha", TimeDelta::ZERO));
        }
        shutdown.trigger();
        tokio::time::sleep(SHUTDOWN_QUIET / 5).await;
        log.record(rec(AuditEvent::Disconnect, "beta", TimeDelta::ZERO));
        shutdown.wait().await;
        let stored = store.audit(None, i64::MIN, 100).await.expect("query");
        assert_eq!(stored.len(), 51);
        // The writer has stopped: recording still works (logs only), flush returns.
        log.record(rec(AuditEvent::Disconnect, "late", TimeDelta::ZERO));
        log.flush().await;
    }

    #[tokio::test]
    async fn a_full_queue_drops_records_and_counts_them() {
        let (store, _dir) = temp_store().await;
        let shutdown = Shutdown::new();
        let log = AuditLog::start_with_capacity(store.clone(), 90, &shutdown, 1);
        // The test runtime has one thread and this loop never yields, so the writer
        // cannot drain the queue in between.
        for _ in 0..3 {
            log.record(rec(AuditEvent::AuthFailure, "alpha", TimeDelta::ZERO));
        }
        assert_eq!(log.dropped_total(), 2);
        log.flush().await;
        assert_eq!(
            store.audit(None, i64::MIN, 10).await.expect("query").len(),
            1
        );
        shutdown.trigger();
        shutdown.wait().await;
    }

    #[tokio::test]
    async fn old_records_are_pruned_at_start() {
        let (store, _dir) = temp_store().await;
        let old = rec(AuditEvent::Connect, "alpha", TimeDelta::days(31));
        let fresh = rec(AuditEvent::Connect, "alpha", TimeDelta::days(29));
        store
            .insert_audit(&[old, fresh.clone()])
            .await
            .expect("insert");
        let shutdown = Shutdown::new();
        let _log = AuditLog::start(store.clone(), 30, &shutdown);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = store.audit(None, i64::MIN, 10).await.expect("query");
            if left.len() == 1 {
                assert_eq!(left, [fresh]);
                break;
            }
            assert!(Instant::now() < deadline, "the pruner did not run");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.trigger();
        shutdown.wait().await;
    }

    #[tokio::test]
    async fn prune_once_keeps_records_younger_than_the_age() {
        let (store, _dir) = temp_store().await;
        let now = OffsetDateTime::now_utc();
        let records: Vec<_> = [100, 91, 89, 1]
            .map(|days| rec(AuditEvent::AclChange, "alpha", TimeDelta::days(days)))
            .into();
        store.insert_audit(&records).await.expect("insert");
        assert_eq!(prune_once(&store, 90, now).await.expect("prune"), 2);
        assert_eq!(
            store.audit(None, i64::MIN, 10).await.expect("query"),
            records[2..]
        );
        assert_eq!(
            prune_once(&store, u32::MAX, now).await.expect("huge age"),
            0
        );
    }
}
