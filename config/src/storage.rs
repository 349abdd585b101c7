//! The `[storage]` section: where the daemon's database lives.
//!
//! Owns the `database_url` key and its default (a SQLite file in `state_dir`); the store
//! module in the daemon owns everything done with the URL.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// `[storage]`: the database of users, console ACLs, passwords and audit records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// sqlx database URL; unset means `sqlite://<state_dir>/vmgate.db?mode=rwc`.
    pub database_url: Option<String>,
}

impl StorageConfig {
    /// `database_url`, or the SQLite file `vmgate.db` in `state_dir` (created if missing).
    pub fn effective_database_url(&self, state_dir: &Path) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                state_dir.join("vmgate.db").display()
            ),
        }
    }
}
