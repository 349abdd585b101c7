//! SASL user rows: a name and its SCRAM-SHA-256 salted keys, never a password.

use sqlx::Row;

use super::{Store, StoreError, now_secs};

/// One user's SCRAM credential, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are password equivalents for SCRAM: never in logs.
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, iterations, salt, stored_key, server_key FROM sasl_users ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let iterations = u32::try_from(row.try_get::<i64, _>("iterations")?)
                    .map_err(|_| StoreError::Corrupt(format!("iterations of user {name:?}")))?;
                Ok(UserRecord {
                    iterations,
                    salt: row.try_get("salt")?,
                    stored_key: row.try_get("stored_key")?,
                    server_key: row.try_get("server_key")?,
                    name,
                })
            })
            .collect()
    }

    /// Inserts a new user; false when the name is taken.
    pub async fn insert_user(&self, rec: &UserRecord) -> Result<bool, StoreError> {
        self.write_user(
            "INSERT INTO sasl_users \
             (name, iterations, salt, stored_key, server_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO NOTHING",
            rec,
        )
        .await
    }

    /// Replaces an existing user's credential; false when there is no such user.
    pub async fn update_user(&self, rec: &UserRecord) -> Result<bool, StoreError> {
        self.write_user(
            "UPDATE sasl_users SET iterations = $2, salt = $3, stored_key = $4, \
             server_key = $5, updated_at = $6 WHERE name = $1",
            rec,
        )
        .await
    }

    /// Runs `sql` with the record's fields as $1..$5 and the time as $6; true when it
    /// changed one row.
    async fn write_user(&self, sql: &'static str, rec: &UserRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(sql)
            .bind(&rec.name)
            .bind(i64::from(rec.iterations))
            .bind(&rec.salt)
            .bind(&rec.stored_key)
            .bind(&rec.server_key)
            .bind(now_secs())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a user; false when there was none.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sasl_users WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, key: u8) -> UserRecord {
        UserRecord {
            name: name.into(),
            iterations: 4096,
            salt: vec![1; 16],
            stored_key: vec![key; 32],
            server_key: vec![key; 32],
        }
    }

    #[tokio::test]
    async fn users_are_inserted_once_updated_and_deleted() {
        let (store, _dir) = Store::open_temp().await;
        assert!(
            store
                .insert_user(&record("alice", 1))
                .await
                .expect("insert")
        );
        assert!(!store.insert_user(&record("alice", 2)).await.expect("dup"));
        assert!(
            store
                .update_user(&record("alice", 3))
                .await
                .expect("update")
        );
        assert!(!store.update_user(&record("bob", 3)).await.expect("no bob"));
        assert_eq!(store.users().await.expect("list"), vec![record("alice", 3)]);
        assert!(store.delete_user("alice").await.expect("delete"));
        assert!(!store.delete_user("alice").await.expect("gone"));
        assert!(store.users().await.expect("list").is_empty());
    }

    #[test]
    fn debug_output_has_no_keys() {
        let text = format!("{:?}", record("alice", 0xab));
        assert!(text.contains("alice") && !text.contains("171"), "{text}");
    }
}
