//! The daemon's console audit log: the [`AuditSink`] the gateways report to. This module
//! owns the path of a record from the gateway to the database: flood aggregation
//! ([`flood`]), the durable spool ([`spool`]), the writer task that moves spooled records
//! into the database in batches, and the pruner (by age, `audit_max_age_days`, hourly; by
//! count, `audit_max_rows`, every minute; both at start). The SQL is in `store`; what goes
//! into a record is the business of whoever makes it, the gateway or the core (records
//! have no field for a password, and reasons must not carry one).
//!
//! `record` never awaits: it logs the record through tracing (target `audit`, info level)
//! and appends it to the spool with one `write(2)` before it returns, so the record
//! survives a crash of the daemon (`kill -9`) from then on; the writer fsyncs the spool in
//! batches, stores it, and deletes what is stored. A daemon that starts with records left
//! in the spool stores them first, each once. Records counted by flood aggregation are
//! logged at debug level and stored as their `flood-summary`.
//!
//! The database is therefore complete unless an audit record says otherwise: when the
//! spool is full (the database has been slow or unreachable for long) or cannot be
//! written, records are logged but not stored, a `flood-summary` saying records are being
//! lost is stored at once, and another with the number lost, per guest, once the spool has
//! room again. The tracing log holds every record that is not counted in a summary.
//!
//! On shutdown the writer keeps storing while records keep coming (until [`SHUTDOWN_QUIET`]
//! passes without one, at most [`SHUTDOWN_GRACE`]), so the disconnect records of the
//! sessions that shutdown cuts are kept, and stores the open flood summaries. What comes
//! later stays in the spool for the next start.

pub mod flood;
pub mod spool;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use time::OffsetDateTime;
use tokio::{
    sync::{Notify, mpsc, oneshot},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

pub use self::spool::SpoolError;
use self::{
    flood::{Flood, Summary, Verdict},
    spool::{Segment, Spool},
};
use crate::{
    audit::{AuditRecord, AuditSink},
    shutdown::Shutdown,
    store::{Store, StoreError, unix_ms},
};

/// After shutdown, the writer stops once no record has come for this long...
pub const SHUTDOWN_QUIET: Duration = Duration::from_millis(250);
/// ... or this long after shutdown at the latest.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Records stored per transaction at most.
const BATCH: usize = 500;
/// How long the writer lets records gather before it seals and stores them.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// How often the writer looks for flood summaries that are due.
const FLOOD_TICK: Duration = Duration::from_secs(5);
const PRUNE_AGE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_ROWS_EVERY: Duration = Duration::from_secs(60);
/// Batch ids older than this are forgotten whatever happened to their spool segment.
const BATCH_IDS_KEPT: time::Duration = time::Duration::days(1);
/// Pauses between attempts while the database fails, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long `query` waits for queued records to be stored before it reads anyway.
const QUERY_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the audit keeps its spool and how long and how much it keeps.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The spool's directory (`<state_dir>/audit-spool`).
    pub spool_dir: PathBuf,
    /// What the spool holds at most, in bytes.
    pub spool_max_bytes: u64,
    pub max_age_days: u32,
    pub max_rows: u64,
}

impl AuditOptions {
    /// The daemon's: the spool in `state_dir`, limits from `[vnc]`.
    pub fn new(state_dir: &Path, vnc: &vmgate_config::VncConfig) -> AuditOptions {
        AuditOptions {
            spool_dir: state_dir.join(spool::SPOOL_DIR),
            spool_max_bytes: spool::MAX_BYTES,
            max_age_days: vnc.audit_max_age_days,
            max_rows: vnc.audit_max_rows,
        }
    }
}

/// The console audit log. Cheap to clone; all clones share one spool and writer.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    spool: Spool,
    flood: Mutex<Flood>,
    /// Signalled at each record spooled.
    wake: Notify,
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl AuditLog {
    /// Opens the spool and spawns the writer and the pruner on `shutdown`.
    pub fn start(
        store: Store,
        options: AuditOptions,
        shutdown: &Shutdown,
    ) -> Result<AuditLog, SpoolError> {
        let spool = Spool::open(&options.spool_dir, options.spool_max_bytes)?;
        let tally_dir = options.spool_dir.join(flood::TALLY_DIR);
        let recovered = flood::recover(&tally_dir);
        let left = spool.bytes();
        if left > 0 || !recovered.is_empty() {
            tracing::info!(
                bytes = left,
                flood_summaries = recovered.len(),
                "Storing audit records spooled before the last stop"
            );
        }
        let (flushes, flush_rx) = mpsc::channel(64);
        let log = AuditLog {
            inner: Arc::new(Inner {
                store: store.clone(),
                spool,
                flood: Mutex::new(Flood::new(Some(tally_dir))),
                wake: Notify::new(),
                flushes,
            }),
        };
        let writer = Writer {
            log: log.clone(),
            summaries: recovered,
            failures: 0,
            retry_at: None,
        };
        shutdown.spawn(writer.run(flush_rx, shutdown.child_token()));
        shutdown.spawn(prune_loop(
            store,
            options.max_age_days,
            options.max_rows,
            shutdown.child_token(),
        ));
        Ok(log)
    }

    /// The newest `limit` records (of `domain`, if given) at or after `since`, oldest
    /// first. Records handed to `record` before the call are included (those counted by
    /// flood aggregation as a `flood-summary` of the counts so far), unless storing them
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

    /// Waits until every record handed to `record` so far is in the database, open flood
    /// summaries included (or until an attempt to store them failed: they stay spooled).
    /// Returns at once once the writer has stopped.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.flushes.send(done).await.is_ok() {
            // An error means the writer stopped; there is nothing more to wait for.
            let _ = wait.await;
        }
    }

    /// Records logged but not stored (the spool was full or failed), since start.
    pub fn lost_total(&self) -> u64 {
        self.inner.spool.lost_total()
    }

    fn flood(&self) -> std::sync::MutexGuard<'_, Flood> {
        self.inner
            .flood
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl AuditSink for AuditLog {
    fn record(&self, r: AuditRecord) {
        let verdict = self.flood().judge(&r, std::time::Instant::now());
        macro_rules! log {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    target: "audit",
                    event = %r.event,
                    domain = %r.domain,
                    source = %r.source,
                    security_type = %r.security_type,
                    identity = %r.identity,
                    reason = %r.reason,
                    $message
                )
            };
        }
        if verdict == Verdict::Counted {
            log!(debug, "console audit (counted in a flood summary)");
            return;
        }
        log!(info, "console audit");
        // A refused record is counted and reported by the spool and the writer.
        if self.inner.spool.append(&r).is_ok() {
            self.inner.wake.notify_one();
        }
    }
}

/// The task that moves spooled records into the database.
struct Writer {
    log: AuditLog,
    /// Flood summaries waiting to be stored.
    summaries: Vec<Summary>,
    /// Attempts in a row that failed, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
}

impl Writer {
    async fn run(
        mut self,
        mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
        cancel: CancellationToken,
    ) {
        let inner = self.log.inner.clone();
        // What an earlier run left comes first.
        self.cycle(true).await;
        let mut tick = tokio::time::interval(FLOOD_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut waiters = Vec::new();
            tokio::select! {
                () = inner.wake.notified() => {
                    tokio::select! {
                        () = tokio::time::sleep(BATCH_WINDOW) => {}
                        Some(done) = flushes.recv() => waiters.push(done),
                        () = cancel.cancelled() => {}
                    }
                }
                done = flushes.recv() => match done {
                    Some(done) => waiters.push(done),
                    None => return, // Every AuditLog is gone.
                },
                _ = tick.tick() => {
                    let due = self.log.flood().due(std::time::Instant::now());
                    self.summaries.extend(due);
                }
                () = cancel.cancelled() => break,
            }
            self.serve(waiters, &mut flushes).await;
        }

        let deadline = Instant::now() + SHUTDOWN_GRACE;
        loop {
            let quiet_until = (Instant::now() + SHUTDOWN_QUIET).min(deadline);
            let mut waiters = Vec::new();
            tokio::select! {
                () = inner.wake.notified() => {}
                Some(done) = flushes.recv() => waiters.push(done),
                () = tokio::time::sleep_until(quiet_until) => break,
            }
            self.serve(waiters, &mut flushes).await;
            if Instant::now() >= deadline {
                break;
            }
        }
        flushes.close();
        let mut waiters = Vec::new();
        while let Some(done) = flushes.recv().await {
            waiters.push(done);
        }
        let open = self.log.flood().drain();
        self.summaries.extend(open);
        self.cycle(true).await;
        for done in waiters {
            let _ = done.send(());
        }
    }

    /// One round: with flush requests, the open flood summaries too; then answers them.
    async fn serve(
        &mut self,
        mut waiters: Vec<oneshot::Sender<()>>,
        flushes: &mut mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        while let Ok(done) = flushes.try_recv() {
            waiters.push(done);
        }
        if !waiters.is_empty() {
            let open = self.log.flood().drain();
            self.summaries.extend(open);
        }
        self.cycle(!waiters.is_empty()).await;
        for done in waiters {
            // The waiter may have given up; that is fine.
            let _ = done.send(());
        }
    }

    /// Seals the spool and stores what it holds, then the flood summaries, then reports
    /// losses. While the database fails, only every so often (or when `now`, for a
    /// flush): in between the spool is only synced.
    async fn cycle(&mut self, now: bool) {
        let inner = self.log.inner.clone();
        let spool = &inner.spool;
        if !now && self.retry_at.is_some_and(|at| Instant::now() < at) {
            if let Err(e) = spool.sync() {
                tracing::warn!(error = %e, "Cannot sync the audit spool");
            }
            return;
        }
        let result = self.store_all().await;
        match result {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!("Audit records are stored again");
                }
                self.failures = 0;
                self.retry_at = None;
            }
            Err(e) => {
                self.failures += 1;
                let pause = RETRY_FIRST
                    .saturating_mul(1 << self.failures.min(16))
                    .min(RETRY_MAX);
                self.retry_at = Some(Instant::now() + pause);
                if self.failures == 1 || pause == RETRY_MAX {
                    tracing::warn!(
                        error = %e,
                        spooled_bytes = spool.bytes(),
                        "Cannot store audit records; they stay in the spool"
                    );
                }
            }
        }
        self.report_losses();
    }

    async fn store_all(&mut self) -> Result<(), StoreError> {
        let inner = self.log.inner.clone();
        let segments = match inner.spool.seal() {
            Ok(segments) => segments,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot seal the audit spool");
                // What was sealed before is still there to store.
                inner.spool.seal().unwrap_or_default()
            }
        };
        for segment in &segments {
            store_segment(&inner.store, &inner.spool, segment).await?;
        }
        while let Some(summary) = self.summaries.first() {
            inner
                .store
                .insert_audit_batch(&summary.batch, 0, std::slice::from_ref(&summary.record))
                .await?;
            summary.done();
            let summary = self.summaries.remove(0);
            forget(&inner.store, &summary.batch).await;
        }
        Ok(())
    }

    /// Turns the losses the spool counted into records, once it has room for them.
    fn report_losses(&self) {
        let spool = &self.log.inner.spool;
        if !spool.has_room() {
            return;
        }
        for loss in spool.take_losses() {
            tracing::warn!(
                domain = %loss.domain,
                lost = loss.count,
                cause = ?loss.cause,
                "Audit records were lost: logged but not stored"
            );
            let record = loss.record(spool.max_bytes());
            if spool.append_notice(&record).is_ok() {
                self.log.inner.wake.notify_one();
            }
        }
    }
}

/// Stores a sealed segment's records, batch by batch (a batch stored before is skipped),
/// then deletes it.
async fn store_segment(store: &Store, spool: &Spool, segment: &Segment) -> Result<(), StoreError> {
    let mut reader = match segment.reader() {
        Ok(reader) => reader,
        Err(e) => {
            tracing::error!(error = %e, "Cannot read an audit spool segment; skipping it");
            spool.count_damaged();
            let _ = spool.remove(segment);
            return Ok(());
        }
    };
    for chunk in 0.. {
        let records = reader.next_chunk(BATCH);
        if records.is_empty() {
            break;
        }
        if !store
            .insert_audit_batch(segment.id(), chunk, &records)
            .await?
        {
            tracing::debug!(
                segment = segment.id(),
                chunk,
                "Audit batch was stored before"
            );
        }
    }
    if let Some(damage) = reader.damage() {
        tracing::warn!(
            segment = segment.id(),
            offset = damage.offset,
            skipped_bytes = damage.skipped,
            torn = damage.torn,
            "An audit spool segment ends in a record cut short or damaged; it is dropped"
        );
        spool.count_damaged();
    }
    if let Err(e) = spool.remove(segment) {
        // Stored: a replay of it adds nothing, so this is only disk space.
        tracing::warn!(error = %e, "Cannot delete a stored audit spool segment");
        return Ok(());
    }
    forget(store, segment.id()).await;
    Ok(())
}

/// Forgets a batch id whose spool data is gone (the pruner catches what this misses).
async fn forget(store: &Store, batch: &str) {
    if let Err(e) = store.forget_audit_batches(batch).await {
        tracing::debug!(error = %e, "Cannot forget a stored audit batch id");
    }
}

async fn prune_loop(store: Store, max_age_days: u32, max_rows: u64, cancel: CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_ROWS_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut aged_at: Option<Instant> = None;
    loop {
        // The first tick is immediate: prune at start.
        tokio::select! {
            _ = every.tick() => {}
            () = cancel.cancelled() => return,
        }
        let now = OffsetDateTime::now_utc();
        if aged_at.is_none_or(|at| at.elapsed() >= PRUNE_AGE_EVERY) {
            aged_at = Some(Instant::now());
            let pruned = tokio::select! {
                r = prune_once(&store, max_age_days, now) => r,
                () = cancel.cancelled() => return,
            };
            match pruned {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, max_age_days, "Pruned old audit records"),
                Err(e) => tracing::warn!(error = %e, "Cannot prune old audit records"),
            }
            if let Err(e) = store
                .prune_audit_batches(unix_ms(now - BATCH_IDS_KEPT))
                .await
            {
                tracing::debug!(error = %e, "Cannot prune stored audit batch ids");
            }
        }
        let pruned = tokio::select! {
            r = store.prune_audit_rows(max_rows) => r,
            () = cancel.cancelled() => return,
        };
        match pruned {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, max_rows, "Pruned the oldest audit records"),
            Err(e) => tracing::warn!(error = %e, "Cannot prune audit records by count"),
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
mod tests;
