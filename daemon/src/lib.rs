//! vmgated: a libvirt-like management daemon for QEMU guests whose distinguishing job is
//! secure access to guest consoles.
//!
//! # Layout
//!
//! - `shutdown`: the cancellation token and task tracker every component hangs off.
//! - `host`: directories, umask and file limits at start.
//! - `rpc`: transport only. UNIX socket listeners, one file per gRPC service, the one
//!   error -> status mapping. Converts requests and calls `core`.
//! - `auth`: who the caller is (peer credentials) and the method -> permission table,
//!   enforced by one tower layer before any handler runs.
//! - `core`: the `Manager`: domain definitions, the state machine with its guards, and the
//!   lifecycle operations. Never sees tonic.
//! - `store`: sqlx over SQLite (PostgreSQL later); the only module with SQL.
//! - `driver`: the `Driver`/`Guest` traits and the drivers (`test` now, `qemu` later).
//! - `vnc`: consoles; `vnc::rfb` is the pure RFB wire code.
//!
//! Dependencies point one way: `rpc -> auth, core`; `core -> store, driver`.

pub mod auth;
pub mod core;
pub mod driver;
pub mod host;
pub mod rpc;
pub mod shutdown;
pub mod store;
pub mod vnc;

use std::sync::Arc;

use vmgate_config::{Config, DriverKind, Supported};

use crate::{
    core::{Manager, ManagerOptions, audit::AuditLog},
    driver::{Driver, test::TestDriver},
    rpc::listen::{self, SocketSpec},
    vnc::settings::VncServices,
};
pub use shutdown::Shutdown;

/// What this build of vmgated can honour; the config is validated against it.
pub fn supported() -> Supported {
    Supported {
        test_driver: true,
        ..Supported::none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Dir(#[from] host::DirError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Core(#[from] core::CoreError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Serve(#[from] rpc::ServeError),
    #[error("The {0} driver is not available in this build; set [daemon] driver = \"test\"")]
    DriverUnavailable(&'static str),
}

/// Runs the daemon until `shutdown` is triggered.
pub async fn run(cfg: Config, shutdown: Shutdown) -> Result<(), DaemonError> {
    let daemon = &cfg.daemon;
    host::set_private_umask();
    host::ensure_dir(&daemon.state_dir, 0o700, "state directory", "state_dir")?;
    host::ensure_dir(
        &daemon.unix_sock_dir,
        0o755,
        "socket directory",
        "unix_sock_dir",
    )?;
    host::raise_nofile_limit();

    let store = store::Store::open(&cfg.storage.effective_database_url(&daemon.state_dir)).await?;
    let driver: Arc<dyn Driver> = match daemon.driver {
        DriverKind::Test => Arc::new(TestDriver),
        DriverKind::Qemu => return Err(DaemonError::DriverUnavailable("qemu")),
    };
    let audit = AuditLog::start(store.clone(), cfg.vnc.audit_max_age_days, &shutdown);
    let vnc = VncServices::new(&cfg, Arc::new(audit.clone()));
    let options = ManagerOptions {
        unix_sock_dir: daemon.unix_sock_dir.clone(),
        vnc,
        audit: audit.clone(),
    };
    let manager = Arc::new(Manager::load(store.clone(), driver, options, shutdown.clone()).await?);

    // Bind only now that everything behind the sockets is ready.
    let sockets = vec![
        listen::bind(SocketSpec {
            path: daemon.rw_socket_path(),
            mode: daemon.unix_sock_rw_perms.bits(),
            group: daemon.unix_sock_group.clone(),
            readonly: false,
        })?,
        listen::bind(SocketSpec {
            path: daemon.ro_socket_path(),
            mode: daemon.unix_sock_ro_perms.bits(),
            group: daemon.unix_sock_group.clone(),
            readonly: true,
        })?,
    ];
    manager.autostart().await;
    tracing::info!(
        socket = %daemon.rw_socket_path().display(),
        driver = manager.driver_name(),
        "vmgated ready"
    );

    let limits = rpc::ClientLimits {
        max_clients: usize::try_from(daemon.max_clients).unwrap_or(usize::MAX),
        max_client_requests: daemon.max_client_requests,
    };
    let served = rpc::serve(manager.clone(), sockets, limits, &shutdown).await;
    shutdown.trigger();
    manager.stop_guests().await;
    audit.flush().await;
    shutdown.wait().await;
    store.close().await;
    tracing::info!("vmgated stopped");
    Ok(served?)
}
