//! Run rows: which guests are running now, under which id, with which definition. Written
//! when a guest starts and deleted when its run ends, so a daemon that restarts (or was
//! killed) knows which guests to look for and gives them back their ids.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, now_secs, row_uuid};

/// One running guest.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub domain_uuid: Uuid,
    pub id: u32,
    /// The definition the guest was started with, as TOML with secrets.
    pub definition: String,
}

impl Store {
    pub async fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query("SELECT domain_uuid, id, definition FROM runs")
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                Ok(RunRecord {
                    domain_uuid: row_uuid(&row, "runs", "domain_uuid")?,
                    id: u32::try_from(id)
                        .map_err(|_| StoreError::Corrupt(format!("run id {id}")))?,
                    definition: row.try_get("definition")?,
                })
            })
            .collect()
    }

    /// Records a run, replacing the domain's previous one.
    pub async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runs (domain_uuid, id, definition, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (domain_uuid) DO UPDATE SET id = excluded.id, \
             definition = excluded.definition, started_at = excluded.started_at",
        )
        .bind(run.domain_uuid.to_string())
        .bind(i64::from(run.id))
        .bind(&run.definition)
        .bind(now_secs())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_run(&self, domain_uuid: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM runs WHERE domain_uuid = $1")
            .bind(domain_uuid.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DomainRecord;

    #[tokio::test]
    async fn a_run_is_kept_until_deleted_and_goes_with_its_domain() {
        let (store, _dir) = Store::open_temp().await;
        let uuid = Uuid::new_v4();
        let domain = DomainRecord {
            uuid,
            name: "alpha".into(),
            definition: "name = \"alpha\"\n".into(),
            autostart: false,
        };
        store.upsert_domain(&domain).await.expect("domain");
        let mut run = RunRecord {
            domain_uuid: uuid,
            id: 7,
            definition: "name = \"alpha\"\nvcpus = 2\n".into(),
        };
        store.record_run(&run).await.expect("record");
        run.id = 8;
        store.record_run(&run).await.expect("replace");
        assert_eq!(store.runs().await.expect("runs"), vec![run.clone()]);
        store.delete_run(uuid).await.expect("delete");
        assert!(store.runs().await.expect("runs").is_empty());

        store.record_run(&run).await.expect("record again");
        store.delete_domain(uuid).await.expect("undefine");
        assert!(store.runs().await.expect("runs").is_empty(), "cascades");
        let orphan = RunRecord {
            domain_uuid: Uuid::new_v4(),
            ..run
        };
        assert!(
            store.record_run(&orphan).await.is_err(),
            "a run needs its domain"
        );
    }
}
