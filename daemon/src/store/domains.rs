//! Domain definition rows: the TOML text as the user defined it, its name, and autostart.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, now_secs, row_uuid};

/// One stored definition.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainRecord {
    pub uuid: Uuid,
    pub name: String,
    /// The definition as TOML, including secrets (the database is 0600).
    pub definition: String,
    pub autostart: bool,
}

impl Store {
    pub async fn domains(&self) -> Result<Vec<DomainRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT uuid, name, definition, autostart FROM domains ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|row| {
                Ok(DomainRecord {
                    uuid: row_uuid(&row, "domains", "uuid")?,
                    name: row.try_get("name")?,
                    definition: row.try_get("definition")?,
                    autostart: row.try_get::<i64, _>("autostart")? != 0,
                })
            })
            .collect()
    }

    /// Inserts the record, or replaces the name and definition of the one with its UUID.
    /// Autostart is kept on update: it is changed only by `set_autostart`.
    pub async fn upsert_domain(&self, rec: &DomainRecord) -> Result<(), StoreError> {
        let now = now_secs();
        sqlx::query(
            "INSERT INTO domains (uuid, name, definition, autostart, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, \
             definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(rec.uuid.to_string())
        .bind(&rec.name)
        .bind(&rec.definition)
        .bind(i64::from(rec.autostart))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_domain(&self, uuid: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM domains WHERE uuid = $1")
            .bind(uuid.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn set_autostart(&self, uuid: Uuid, enable: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE domains SET autostart = $1, updated_at = $2 WHERE uuid = $3")
            .bind(i64::from(enable))
            .bind(now_secs())
            .bind(uuid.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_update_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/d.db?mode=rwc", dir.path().display());
        let store = Store::open(&url).await.expect("open");
        let mut rec = DomainRecord {
            uuid: Uuid::new_v4(),
            name: "alpha".into(),
            definition: "name = \"alpha\"\n".into(),
            autostart: false,
        };
        store.upsert_domain(&rec).await.expect("insert");
        store
            .set_autostart(rec.uuid, true)
            .await
            .expect("autostart");
        rec.definition = "name = \"alpha\"\nvcpus = 2\n".into();
        store.upsert_domain(&rec).await.expect("update");
        let all = store.domains().await.expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].definition, rec.definition);
        assert!(all[0].autostart, "update must keep autostart");

        let clash = DomainRecord {
            uuid: Uuid::new_v4(),
            ..rec.clone()
        };
        assert!(
            store.upsert_domain(&clash).await.is_err(),
            "names are unique"
        );

        store.close().await;
        let reopened = Store::open(&url).await.expect("reopen");
        assert_eq!(reopened.domains().await.expect("list").len(), 1);
        reopened.delete_domain(rec.uuid).await.expect("delete");
        assert!(reopened.domains().await.expect("list").is_empty());
    }
}
