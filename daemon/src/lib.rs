//! vmgated: a libvirt-like management daemon for QEMU guests whose distinguishing job is
//! secure access to guest consoles.
//!
//! # Layout
//!
//! Each top-level module, what it owns, and the only modules it may import (`use crate::`).
//! The edges point one way. A module reaches one it may not import only through a trait
//! or a value handed down: the gateway reports to an `audit::AuditSink` that `audit_log`
//! implements; a TLS reload reaches the console's VeNCrypt through the `reload::ReloadTls`
//! it registers; the core hands the gateway its ACL rules, and the gateway's session
//! registry decides under its own lock. The test in `layers` reads this
//! table and fails on any import outside it, on a cycle, and on a module missing from it.
//! The crate root (this file) wires them together and may name any.
//!
//! | module | owns | may import |
//! |---|---|---|
//! | `rpc` | the API: listeners, admission, HTTP/2, `authorize` (every permission check), one file per gRPC service, the one error -> status mapping, wire conversions | `core`, `auth`, `audit`, `verb`, `reload`, `tls`, `shutdown` |
//! | `core` | the `Manager`: domains, definitions, the state machine, lifecycle, console rules and passwords; hands out its own view types | `vnc`, `driver`, `auth`, `audit_log`, `audit`, `verb`, `store`, `shutdown` |
//! | `vnc` | the per-guest console gateway: RFB security types, sessions and the ACL decision, lockout, autoport | `driver`, `auth`, `audit`, `reload`, `tls` |
//! | `driver` | the `Driver`/`Guest` traits, the `qemu` and `test` drivers (the test driver's framebuffer speaks RFB through the `vmgate-rfb` crate) | `verb` |
//! | `audit_log` | the `AuditSink` the consoles report to: flood summaries, the durable spool, the writer and the pruner | `audit`, `store`, `shutdown` |
//! | `auth` | who the caller is (peers, SASL and SCRAM logins, the user database), the method -> permission table, polkit | `store` |
//! | `store` | sqlx over SQLite; the only module with SQL | `audit` |
//! | `audit` | audit record types and the `AuditSink` trait | nothing |
//! | `verb` | the lifecycle verbs (start, shutdown, destroy, ...): one enum for the state machine, the core and the drivers | nothing |
//! | `reload` | the registry of TLS configurations that SIGHUP and `Admin.ReloadTls` reload | `tls` |
//! | `tls` | rustls server configurations from PEM files, client certificate checks | nothing |
//! | `systemd` | activated sockets (by `FileDescriptorName=`) and `Type=notify` readiness | `shutdown` |
//! | `shutdown` | the cancellation token and task tracker every component hangs off | nothing |
//! | `host` | directories, umask and file limits at start | nothing |
//! | `args` | the command line (also read by the man page generator) | nothing |

pub mod args;
pub mod audit;
pub mod audit_log;
pub mod auth;
pub mod core;
pub mod driver;
pub mod host;
#[cfg(test)]
mod layers;
pub mod reload;
pub mod rpc;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod verb;
pub mod vnc;

use std::sync::Arc;

use vmgate_config::{AccessDriver, AuthKind, Config, DriverKind, Supported};

use crate::{
    audit_log::{AuditLog, AuditOptions},
    auth::users::UserDb,
    core::{Manager, ManagerOptions},
    driver::{Driver, qemu::QemuDriver, test::TestDriver},
    rpc::{
        listen::{self, SocketSpec},
        tls_listen,
    },
    vnc::settings::VncServices,
};
pub use reload::Reloader;
pub use shutdown::Shutdown;

/// What this build of vmgated can honour; the config is validated against it.
pub fn supported() -> Supported {
    Supported {
        test_driver: true,
        qemu_driver: true,
        qemu_run_as: true,
        polkit: true,
        polkit_access: true,
        listen_tls: true,
        vnc_password: true,
        vnc_unix_socket: true,
        vnc_tls: true,
        vnc_sasl: true,
        sasl: true,
        listen_tcp: true,
        gssapi: cfg!(feature = "gssapi"),
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
    AuditSpool(#[from] audit_log::SpoolError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Consoles(#[from] vnc::settings::ServicesError),
    /// The API listener's own TLS files (`listen_tls`).
    #[error("TLS listener (listen_tls): {0}")]
    ApiTls(tls::TlsError),
    #[error("API SASL: {0}")]
    Sasl(String),
    #[error("qemu driver: {0}")]
    QemuDriver(String),
}

/// The SASL server of API logins (`sasl_mechanisms`, and Kerberos' `sasl_*` keys).
/// GSSAPI is set up (and its keytab read) only when a transport that may offer it, a
/// UNIX socket or TLS, asks for SASL: as the config check judges it.
fn api_sasl_server(
    daemon: &vmgate_config::DaemonConfig,
    users: Arc<auth::users::UserDb>,
) -> Result<auth::sasl::SaslServer, String> {
    let sasl = |kind: AuthKind| kind == AuthKind::Sasl;
    let kerberos_possible = sasl(daemon.auth_unix_ro)
        || sasl(daemon.auth_unix_rw)
        || (daemon.listen_tls && sasl(daemon.auth_tls));
    let mechanisms: Vec<String> = daemon
        .sasl_mechanisms
        .iter()
        .filter(|m| kerberos_possible || m.as_str() != auth::sasl::GSSAPI)
        .cloned()
        .collect();
    let kerberos = auth::sasl::KerberosService {
        keytab: daemon.sasl_keytab.clone(),
        service: daemon.sasl_service.clone(),
        local_realm: daemon.sasl_local_realm.clone(),
    };
    auth::sasl::SaslServer::configured(users, &mechanisms, &kerberos)
}

/// The UNIX sockets whose connections need polkit's yes, if any.
fn polkit_sockets(
    daemon: &vmgate_config::DaemonConfig,
    polkit: &Arc<auth::polkit::Polkit>,
) -> Option<rpc::PolkitSockets> {
    let rw = daemon.auth_unix_rw == AuthKind::Polkit;
    let ro = daemon.auth_unix_ro == AuthKind::Polkit;
    (rw || ro).then(|| rpc::PolkitSockets {
        polkit: polkit.clone(),
        rw,
        ro,
    })
}

/// Runs the daemon until `shutdown` is triggered.
pub async fn run(cfg: Config, shutdown: Shutdown) -> Result<(), DaemonError> {
    run_with(cfg, shutdown, Reloader::new(), systemd::Handoff::none()).await
}

/// [`run`], registering the daemon's TLS configurations in `reloader`, so that whoever
/// holds another handle on it (main's SIGHUP handler) can reload them, and serving the
/// sockets systemd passed in `handoff` (whose `apply_to` the config must have seen before
/// it was validated) instead of binding those.
pub async fn run_with(
    cfg: Config,
    shutdown: Shutdown,
    reloader: Reloader,
    handoff: systemd::Handoff,
) -> Result<(), DaemonError> {
    let systemd::Handoff {
        sockets: mut passed,
        notify,
    } = handoff;
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
    host::return_freed_memory_promptly();
    // The API's own certificate, key, CA and CRL are checked before anything else starts.
    let api_tls = if daemon.listen_tls {
        Some(tls_listen::api_config(daemon).map_err(DaemonError::ApiTls)?)
    } else {
        None
    };

    let store = store::Store::open(&cfg.storage.effective_database_url(&daemon.state_dir)).await?;
    let driver: Arc<dyn Driver> = match daemon.driver {
        DriverKind::Test => Arc::new(TestDriver),
        DriverKind::Qemu => Arc::new(
            QemuDriver::new(&cfg, shutdown.child_token()).map_err(DaemonError::QemuDriver)?,
        ),
    };
    let audit = AuditLog::start(
        store.clone(),
        AuditOptions::new(&daemon.state_dir, &cfg.vnc),
        &shutdown,
    )?;
    let users = Arc::new(UserDb::new(store.users().await?));
    let vnc = VncServices::new(&cfg, Arc::new(audit.clone()), users.clone())?;
    if let Some(vencrypt) = &vnc.vencrypt {
        reloader.register(vencrypt.clone());
    }
    let options = ManagerOptions {
        unix_sock_dir: daemon.unix_sock_dir.clone(),
        vnc,
        audit: audit.clone(),
        users: users.clone(),
    };
    let manager = Arc::new(Manager::load(store.clone(), driver, options, shutdown.clone()).await?);
    manager.reattach_guests().await?;

    // Bind only now that everything behind the sockets is ready; TLS and TCP first, so
    // that they are up once the UNIX sockets answer. A socket systemd passed under the
    // listener's name is served instead (`systemd::activation`).
    let tls = match api_tls {
        Some(config) => {
            reloader.register(config.clone());
            let listener = tls_listen::bind_or_adopt(
                daemon.listen_addr.as_deref(),
                daemon.tls_port,
                config,
                passed.take_tcp(systemd::SocketName::Tls),
            )
            .await?;
            for addr in listener.local_addrs() {
                tracing::info!(%addr, "listening for TLS clients");
            }
            Some(listener)
        }
        None => None,
    };
    let tcp = if daemon.listen_tcp {
        let listeners = rpc::tcp_listen::bind_or_adopt(
            daemon.listen_addr.as_deref(),
            daemon.tcp_port,
            passed.take_tcp(systemd::SocketName::Tcp),
        )
        .await?;
        for l in &listeners {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "listening for TCP clients (SASL login required)");
            }
        }
        listeners
    } else {
        Vec::new()
    };
    let mut sockets = listen::bind_or_adopt(
        SocketSpec {
            path: daemon.rw_socket_path(),
            mode: daemon.unix_sock_rw_perms.bits(),
            group: daemon.unix_sock_group.clone(),
            readonly: false,
        },
        passed.take_unix(systemd::SocketName::Rw),
    )?;
    sockets.extend(listen::bind_or_adopt(
        SocketSpec {
            path: daemon.ro_socket_path(),
            mode: daemon.unix_sock_ro_perms.bits(),
            group: daemon.unix_sock_group.clone(),
            readonly: true,
        },
        passed.take_unix(systemd::SocketName::Ro),
    )?);
    passed.close_unused();
    manager.autostart().await;
    let rw_socket = sockets.first().map(|s| s.path().display().to_string());
    let rw_socket = rw_socket.unwrap_or_default();
    tracing::info!(
        socket = %rw_socket,
        driver = manager.driver_name(),
        "vmgated ready"
    );
    notify.announce_ready(&format!("Serving the API on {rw_socket}"), &shutdown);

    let limits = rpc::ClientLimits {
        max_clients: usize::try_from(daemon.max_clients).unwrap_or(usize::MAX),
        max_clients_rw_reserve: usize::try_from(daemon.max_clients_rw_reserve)
            .unwrap_or(usize::MAX),
        max_client_requests: daemon.max_client_requests,
        max_anonymous_clients: usize::try_from(daemon.max_anonymous_clients)
            .unwrap_or(usize::MAX)
            .max(1),
        auth_timeout: std::time::Duration::from_secs(daemon.auth_timeout_secs.max(1).into()),
        keepalive: u64::try_from(daemon.keepalive_interval).ok().map(|secs| {
            rpc::h2_server::Keepalive {
                interval: std::time::Duration::from_secs(secs),
                count: daemon.keepalive_count,
            }
        }),
    };
    let polkit = Arc::new(auth::polkit::Polkit::new());
    let api_sasl = api_sasl_server(daemon, users).map_err(DaemonError::Sasl)?;
    let listeners = rpc::Listeners {
        unix: sockets,
        tls,
        tcp,
        logins: auth::login::Logins::from_config(daemon, Arc::new(api_sasl)),
        polkit_sockets: polkit_sockets(daemon, &polkit),
        access: daemon
            .access_drivers
            .contains(&AccessDriver::Polkit)
            .then(|| {
                Arc::new(auth::access::AccessDriver {
                    polkit: polkit.clone(),
                    connect_driver: match daemon.driver {
                        DriverKind::Qemu => "QEMU",
                        DriverKind::Test => "Test",
                    },
                })
            }),
    };
    rpc::serve(manager.clone(), listeners, limits, reloader, &shutdown).await;
    shutdown.trigger();
    manager.stop_guests().await;
    audit.flush().await;
    shutdown.wait().await;
    store.close().await;
    tracing::info!("vmgated stopped");
    Ok(())
}
