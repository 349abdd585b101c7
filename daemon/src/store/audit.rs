//! Console audit rows: the records `audit_log` hands over in batches, read back per
//! domain over a time range, and pruned by age and by count. Times are stored as
//! milliseconds since the epoch, so sub-millisecond precision is lost on the way through.
//! What goes into a record (and that no secret does) is the gateway's business, not this
//! module's. A batch from the audit spool is stored at most once: its id goes into
//! `audit_batches` in the same transaction as its records.

use sqlx::{Row, any::AnyRow};
use time::OffsetDateTime;

use super::{Store, StoreError};
use crate::audit::{AuditEvent, AuditRecord};

/// Rows deleted per statement when pruning, so a large backlog (the first start after a
/// long downtime) does not hold SQLite's write lock for long and stall the audit writer.
const PRUNE_BATCH: i64 = 10_000;

impl Store {
    /// Stores `records` in one transaction: all of them or none.
    pub async fn insert_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for rec in records {
            insert_one(&mut tx, rec).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores `records`, the batch `chunk` of spool segment `segment`, in one transaction,
    /// unless that batch is already stored: returns whether it was stored now.
    pub async fn insert_audit_batch(
        &self,
        segment: &str,
        chunk: u64,
        records: &[AuditRecord],
    ) -> Result<bool, StoreError> {
        let chunk = i64::try_from(chunk)
            .map_err(|_| StoreError::Corrupt(format!("audit batch {segment}/{chunk}")))?;
        let mut tx = self.pool().begin().await?;
        let marked = sqlx::query(
            "INSERT INTO audit_batches (segment, chunk, time_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(segment)
        .bind(chunk)
        .bind(unix_ms(OffsetDateTime::now_utc()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for rec in records {
            insert_one(&mut tx, rec).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets the stored batches of `segment`, once its file is gone.
    pub async fn forget_audit_batches(&self, segment: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM audit_batches WHERE segment = $1")
            .bind(segment)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets batch ids stored before `older_than_ms` (left by a crash between a spool
    /// file's deletion and `forget_audit_batches`).
    pub async fn prune_audit_batches(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM audit_batches WHERE time_ms < $1")
            .bind(older_than_ms)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// The newest `limit` records at or after `since_ms` (of `domain`, if given), oldest
    /// first. Records with the same time come back in the order they were stored.
    pub async fn audit(
        &self,
        domain: Option<&str>,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = i64::from(limit);
        let rows = match domain {
            Some(domain) => {
                sqlx::query(
                    "SELECT time_ms, event, domain, source, security_type, identity, reason \
                     FROM audit WHERE domain = $1 AND time_ms >= $2 \
                     ORDER BY time_ms DESC, id DESC LIMIT $3",
                )
                .bind(domain)
                .bind(since_ms)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT time_ms, event, domain, source, security_type, identity, reason \
                     FROM audit WHERE time_ms >= $1 \
                     ORDER BY time_ms DESC, id DESC LIMIT $2",
                )
                .bind(since_ms)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().rev().map(audit_record).collect()
    }

    /// Deletes the oldest records (by time, then by insertion) until at most `max_rows`
    /// are left; returns how many went. Cheap when under the cap: the span of ids bounds
    /// the count, which is counted only when that span is over the cap.
    pub async fn prune_audit_rows(&self, max_rows: u64) -> Result<u64, StoreError> {
        let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let span = sqlx::query("SELECT MIN(id) AS lo, MAX(id) AS hi FROM audit")
            .fetch_one(self.pool())
            .await?;
        let (lo, hi): (Option<i64>, Option<i64>) = (span.try_get("lo")?, span.try_get("hi")?);
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(0);
        };
        if hi.saturating_sub(lo).saturating_add(1) <= max_rows {
            return Ok(0);
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let mut excess = count.saturating_sub(max_rows);
        let mut total = 0;
        while excess > 0 {
            let deleted = sqlx::query(
                "DELETE FROM audit WHERE id IN \
                 (SELECT id FROM audit ORDER BY time_ms, id LIMIT $1)",
            )
            .bind(excess.min(PRUNE_BATCH))
            .execute(self.pool())
            .await?
            .rows_affected();
            if deleted == 0 {
                break;
            }
            total += deleted;
            excess -= i64::try_from(deleted).unwrap_or(excess);
        }
        Ok(total)
    }

    /// Deletes the records older than `older_than_ms`; returns how many.
    pub async fn prune_audit(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM audit WHERE id IN \
                 (SELECT id FROM audit WHERE time_ms < $1 ORDER BY id LIMIT $2)",
            )
            .bind(older_than_ms)
            .bind(PRUNE_BATCH)
            .execute(self.pool())
            .await?
            .rows_affected();
            total += deleted;
            if deleted < PRUNE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}

async fn insert_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rec: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit \
         (time_ms, event, domain, source, security_type, identity, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(unix_ms(rec.time))
    .bind(rec.event.as_str())
    .bind(&rec.domain)
    .bind(&rec.source)
    .bind(&rec.security_type)
    .bind(&rec.identity)
    .bind(&rec.reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn audit_record(row: &AnyRow) -> Result<AuditRecord, StoreError> {
    let time_ms: i64 = row.try_get("time_ms")?;
    let event: String = row.try_get("event")?;
    Ok(AuditRecord {
        time: from_unix_ms(time_ms)
            .ok_or_else(|| StoreError::Corrupt(format!("audit time {time_ms}")))?,
        event: AuditEvent::parse(&event)
            .ok_or_else(|| StoreError::Corrupt(format!("audit event {event:?}")))?,
        domain: row.try_get("domain")?,
        source: row.try_get("source")?,
        security_type: row.try_get("security_type")?,
        identity: row.try_get("identity")?,
        reason: row.try_get("reason")?,
    })
}

/// Milliseconds since the epoch (every `OffsetDateTime` fits), as audit rows keep time.
pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    async fn temp_store() -> (Store, tempfile::TempDir) {
        Store::open_temp().await
    }

    /// A record `secs` seconds after a fixed base time, with ms precision (what survives).
    fn rec(event: AuditEvent, domain: &str, secs: i64) -> AuditRecord {
        AuditRecord {
            time: OffsetDateTime::UNIX_EPOCH
                + Duration::seconds(1_700_000_000 + secs)
                + Duration::milliseconds(123),
            source: "192.0.2.1:5000".into(),
            security_type: "vencrypt".into(),
            identity: "CN=alice".into(),
            reason: format!("reason {secs}"),
            ..AuditRecord::new(event, domain)
        }
    }

    fn ms(secs: i64) -> i64 {
        (1_700_000_000 + secs) * 1000 + 123
    }

    #[tokio::test]
    async fn records_round_trip_filtered_newest_kept_oldest_first() {
        let (store, _dir) = temp_store().await;
        let records: Vec<_> = (0..10)
            .map(|i| {
                let domain = if i % 2 == 0 { "alpha" } else { "beta" };
                rec(AuditEvent::ALL[i as usize % 8], domain, i)
            })
            .collect();
        store.insert_audit(&records[..4]).await.expect("insert");
        store.insert_audit(&records[4..]).await.expect("insert");
        store.insert_audit(&[]).await.expect("empty insert");

        let all = store.audit(None, i64::MIN, 100).await.expect("all");
        assert_eq!(all, records, "every field survives, oldest first");

        let alpha = store
            .audit(Some("alpha"), i64::MIN, 100)
            .await
            .expect("alpha");
        assert_eq!(alpha.len(), 5);
        assert!(alpha.iter().all(|r| r.domain == "alpha"));

        let since = store.audit(None, ms(7), 100).await.expect("since");
        assert_eq!(since, records[7..], "since is inclusive");

        let newest = store.audit(Some("beta"), i64::MIN, 2).await.expect("limit");
        assert_eq!(newest, [records[7].clone(), records[9].clone()]);

        assert!(
            store
                .audit(None, i64::MIN, 0)
                .await
                .expect("zero")
                .is_empty()
        );
        assert!(
            store
                .audit(Some("gamma"), i64::MIN, 9)
                .await
                .expect("none")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn records_with_the_same_time_keep_their_order() {
        let (store, _dir) = temp_store().await;
        let records: Vec<_> = AuditEvent::ALL
            .iter()
            .map(|e| rec(*e, "alpha", 0))
            .collect();
        store.insert_audit(&records).await.expect("insert");
        let back = store.audit(Some("alpha"), ms(0), 3).await.expect("query");
        assert_eq!(back, records[records.len() - 3..]);
    }

    #[tokio::test]
    async fn prune_deletes_only_older_records() {
        let (store, _dir) = temp_store().await;
        let records: Vec<_> = (0..5).map(|i| rec(AuditEvent::Connect, "a", i)).collect();
        store.insert_audit(&records).await.expect("insert");
        assert_eq!(store.prune_audit(ms(3)).await.expect("prune"), 3);
        assert_eq!(store.prune_audit(ms(3)).await.expect("prune again"), 0);
        let left = store.audit(None, i64::MIN, 10).await.expect("query");
        assert_eq!(left, records[3..]);
    }

    #[tokio::test]
    async fn a_batch_is_stored_once() {
        let (store, _dir) = temp_store().await;
        let records: Vec<_> = (0..3).map(|i| rec(AuditEvent::Connect, "a", i)).collect();
        assert!(
            store
                .insert_audit_batch("seg", 0, &records)
                .await
                .expect("first")
        );
        assert!(
            !store
                .insert_audit_batch("seg", 0, &records)
                .await
                .expect("again")
        );
        assert!(
            store
                .insert_audit_batch("seg", 1, &records[..1])
                .await
                .expect("next")
        );
        assert_eq!(
            store.audit(None, i64::MIN, 10).await.expect("query").len(),
            4
        );
        // Forgotten once the segment is gone: the id could be stored again.
        store.forget_audit_batches("seg").await.expect("forget");
        assert!(
            store
                .insert_audit_batch("seg", 0, &[])
                .await
                .expect("after")
        );
        assert_eq!(store.prune_audit_batches(i64::MAX).await.expect("prune"), 1);
    }

    #[tokio::test]
    async fn the_row_cap_deletes_the_oldest_first() {
        let (store, _dir) = temp_store().await;
        // Inserted newest first: age, not insertion order, decides.
        let records: Vec<_> = (0..10)
            .rev()
            .map(|i| rec(AuditEvent::Connect, "a", i))
            .collect();
        store.insert_audit(&records).await.expect("insert");
        assert_eq!(store.prune_audit_rows(10).await.expect("at the cap"), 0);
        assert_eq!(store.prune_audit_rows(4).await.expect("over the cap"), 6);
        let left = store.audit(None, i64::MIN, 100).await.expect("query");
        let secs: Vec<_> = left.iter().map(|r| r.reason.clone()).collect();
        assert_eq!(secs, ["reason 6", "reason 7", "reason 8", "reason 9"]);
        assert_eq!(store.prune_audit_rows(4).await.expect("again"), 0);
        let (empty, _dir2) = temp_store().await;
        assert_eq!(empty.prune_audit_rows(1).await.expect("empty"), 0);
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported() {
        let (store, _dir) = temp_store().await;
        sqlx::query(
            "INSERT INTO audit (time_ms, event, domain, source, security_type, identity, reason) \
             VALUES (0, 'teleport', 'a', '', '', '', '')",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        let err = store.audit(None, i64::MIN, 10).await.expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    /// The same statements on PostgreSQL, when `VMGATE_TEST_POSTGRES_URL` names a database
    /// the test may write to (it only touches rows of a domain it makes up).
    #[tokio::test]
    async fn postgres_accepts_the_same_statements() {
        let Ok(url) = std::env::var("VMGATE_TEST_POSTGRES_URL") else {
            return;
        };
        let store = Store::open(&url).await.expect("open postgres");
        let domain = format!("audit-test-{}", uuid::Uuid::new_v4());
        // Far in the past, so pruning below them touches no real records.
        let records: Vec<_> = (0..5)
            .map(|i| AuditRecord {
                time: OffsetDateTime::UNIX_EPOCH + Duration::seconds(i),
                ..rec(AuditEvent::ALL[i as usize], &domain, 0)
            })
            .collect();
        store.insert_audit(&records).await.expect("insert");
        let back = store.audit(Some(&domain), 1000, 3).await.expect("query");
        assert_eq!(back, records[2..]);
        assert!(store.audit(None, 0, 5).await.expect("all").len() >= 5);
        assert!(store.prune_audit(2000).await.expect("prune") >= 2);
        let left = store
            .audit(Some(&domain), i64::MIN, 10)
            .await
            .expect("query");
        assert_eq!(left, records[2..]);
        store.prune_audit(5000).await.expect("clean up");
        let segment = uuid::Uuid::new_v4().to_string();
        let old = &records[..1];
        assert!(
            store
                .insert_audit_batch(&segment, 0, old)
                .await
                .expect("batch")
        );
        assert!(
            !store
                .insert_audit_batch(&segment, 0, old)
                .await
                .expect("again")
        );
        store.forget_audit_batches(&segment).await.expect("forget");
        store.prune_audit_batches(0).await.expect("prune batches");
        assert_eq!(store.prune_audit_rows(u64::MAX).await.expect("cap"), 0);
        store.prune_audit(5000).await.expect("clean up");
        store.close().await;
    }

    #[test]
    fn times_convert_to_milliseconds_and_back() {
        let t = OffsetDateTime::UNIX_EPOCH - Duration::milliseconds(1500);
        assert_eq!(unix_ms(t), -1500);
        assert_eq!(from_unix_ms(-1500), Some(t));
        assert_eq!(
            unix_ms(OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(999_999)),
            0
        );
    }
}
