//! Persistent state, behind one module so the backend can change: the only place with SQL.
//! sqlx's runtime API over an `AnyPool`, `$N` placeholders and SQL that both SQLite and
//! PostgreSQL accept; migrations are embedded per backend. A SQLite file is created 0600
//! before sqlx opens it (its -wal and -shm files inherit that mode) and runs in WAL mode.

mod acl;
mod audit;
mod domains;
mod runs;
mod users;

pub use acl::{RuleUpdate, StoredRule};
pub(crate) use audit::unix_ms;
pub use domains::DomainRecord;
pub use runs::RunRecord;
pub use users::UserRecord;

use std::{
    fs::OpenOptions,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use sqlx::{
    AnyPool,
    any::AnyPoolOptions,
    migrate::{MigrateError, Migrator},
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Database URL {0:?} is not supported; use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("Cannot create the database file {path}: {source}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot open the database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("Cannot migrate the database schema: {0}")]
    Migrate(#[from] MigrateError),
    #[error("Database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("Corrupt record in the database: {0}")]
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The daemon's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_file(url)
        {
            create_private_file(&path)?;
        }
        let mut options = AnyPoolOptions::new().max_connections(8);
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    // In WAL mode NORMAL keeps every commit across a daemon crash and syncs
                    // at checkpoints, not on each commit: audit records of busy consoles
                    // must not cost an fsync each. Only an OS crash or power loss can drop
                    // the newest commits.
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .map_err(|source| StoreError::Open {
                url: redact_url(url),
                source,
            })?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
        } else {
            POSTGRES_MIGRATIONS.run(&pool).await?;
        }
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A fresh SQLite database in a temporary directory, for unit tests.
    #[cfg(test)]
    pub(crate) async fn open_temp() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
        (Store::open(&url).await.expect("open"), dir)
    }
}

/// The file behind a `sqlite://PATH?params` URL, or None for in-memory databases.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Creates `path` with mode 0600 if it is missing, and tightens it if it is looser.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::CreateFile {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    let mode = file.metadata().map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    Ok(())
}

/// Hides a password in a postgres URL before it reaches a message.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The UUID in column `column` of `row`; a value that does not parse is corruption,
/// reported with `table`.
fn row_uuid(row: &sqlx::any::AnyRow, table: &str, column: &str) -> Result<uuid::Uuid, StoreError> {
    use sqlx::Row;
    let text: String = row.try_get(column)?;
    uuid::Uuid::parse_str(&text)
        .map_err(|_| StoreError::Corrupt(format!("{table}.{column} {text:?}")))
}

/// Seconds since the epoch, for row timestamps.
fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/x.db?mode=rwc"),
            Some("/var/lib/x.db".into())
        );
        assert_eq!(sqlite_file("sqlite://rel/x.db"), Some("rel/x.db".into()));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[test]
    fn passwords_do_not_reach_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@db/x"),
            "postgres://u:***@db/x"
        );
    }

    #[tokio::test]
    async fn database_file_is_private_and_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.db");
        let store = Store::open(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .expect("open");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .expect("pragma");
        assert_eq!(journal, "wal");
    }
}
