//! The `[vnc]` settings every gateway shares, and the services they share: console TLS,
//! the SASL server for user logins, the lockout tracker (failures count across all
//! guests) and the audit sink.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use vmgate_config::{AclDefault, Config, Secret};

use crate::{
    audit::AuditSink,
    auth::{
        sasl::{KerberosService, SaslServer},
        users::UserDb,
    },
    tls::TlsError,
};

use super::{
    gateway::SourceGates,
    ports::PortAllocator,
    throttle::{Throttle, ThrottleConfig},
    vencrypt::VencryptTls,
};

/// What the gateways need from the daemon's configuration.
#[derive(Clone, Debug)]
pub struct VncSettings {
    /// Default listen address (`vnc_listen`).
    pub listen: String,
    /// Serve consoles on `<unix_sock_dir>/vnc/<guest>.sock` instead of TCP.
    pub auto_unix_socket: bool,
    pub unix_sock_dir: PathBuf,
    pub unix_sock_group: Option<String>,
    pub port_min: u16,
    pub port_max: u16,
    /// Console autoport over `port_min..=port_max`, shared by every gateway.
    pub autoport: PortAllocator,
    /// The global fallback VNC password (`vnc_password`).
    pub global_password: Option<Secret>,
    /// DES (VNC password auth) is refused in FIPS mode.
    pub fips: bool,
    /// Unauthenticated connections per guest (`vnc_max_pending`).
    pub max_pending: usize,
    /// Unauthenticated connections per guest from one source (`vnc_max_pending_per_source`).
    pub max_pending_per_source: usize,
    /// Console connections, pending or authenticated, over all guests (`vnc_max_sessions`).
    pub max_sessions: usize,
    pub handshake_timeout: Duration,
    /// What a guest without ACL rules does with sessions that present an identity.
    pub acl_default: AclDefault,
}

impl VncSettings {
    pub fn from_config(cfg: &Config) -> VncSettings {
        let vnc = &cfg.vnc;
        VncSettings {
            listen: vnc.vnc_listen.clone(),
            auto_unix_socket: vnc.vnc_auto_unix_socket,
            unix_sock_dir: cfg.daemon.unix_sock_dir.clone(),
            unix_sock_group: cfg.daemon.unix_sock_group.clone(),
            port_min: vnc.remote_display_port_min,
            port_max: vnc.remote_display_port_max,
            autoport: PortAllocator::new(vnc.remote_display_port_min, vnc.remote_display_port_max),
            global_password: vnc.vnc_password.clone(),
            fips: vnc.fips_enabled(),
            max_pending: usize::try_from(vnc.vnc_max_pending)
                .unwrap_or(usize::MAX)
                .max(1),
            max_pending_per_source: usize::try_from(vnc.vnc_max_pending_per_source)
                .unwrap_or(usize::MAX)
                .max(1),
            max_sessions: vnc
                .vnc_max_sessions
                .map_or_else(default_max_sessions, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                })
                .max(1),
            handshake_timeout: Duration::from_secs(vnc.vnc_handshake_timeout_secs),
            acl_default: vnc.vnc_acl_default,
        }
    }
}

/// File descriptors kept out of the consoles' reach for the API sockets, guests' QMP and
/// log files, and the store.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// `vnc_max_sessions` when unset: half of what the open-file limit leaves after the
/// reserve, since a session behind QEMU holds two descriptors (client and guest).
fn default_max_sessions() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(limit.saturating_sub(DESCRIPTOR_RESERVE) / 2).unwrap_or(usize::MAX)
}

/// Why the consoles' shared services could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// Not a `#[source]`: the message carries the whole cause, which `{:#}` would repeat.
    #[error("Console TLS: {0}")]
    Tls(TlsError),
    #[error("Console SASL (vnc_sasl): {0}")]
    Sasl(String),
}

impl From<TlsError> for ServicesError {
    fn from(e: TlsError) -> Self {
        ServicesError::Tls(e)
    }
}

/// Everything the gateways of all guests share.
pub struct VncServices {
    pub settings: VncSettings,
    /// TLS for VeNCrypt when `vnc_tls` is on; every console then offers only VeNCrypt.
    pub vencrypt: Option<Arc<VencryptTls>>,
    /// User logins when `vnc_sasl` is on (X509SASL and X509Plain inside VeNCrypt).
    pub sasl: Option<Arc<SaslServer>>,
    pub throttle: Throttle,
    /// Credentials of one source are judged one at a time, across every guest.
    pub gates: SourceGates,
    /// One permit per console connection over all guests (`vnc_max_sessions`).
    pub session_slots: Arc<Semaphore>,
    pub audit: Arc<dyn AuditSink>,
}

impl VncServices {
    /// Fails when `vnc_tls` is on and the certificate directory is not usable.
    pub fn new(
        cfg: &Config,
        audit: Arc<dyn AuditSink>,
        users: Arc<UserDb>,
    ) -> Result<Arc<VncServices>, ServicesError> {
        let vnc = &cfg.vnc;
        let vencrypt = if vnc.vnc_tls {
            let tls =
                VencryptTls::load(vnc.vnc_tls_x509_cert_dir.clone(), vnc.vnc_tls_x509_verify)?;
            Some(Arc::new(tls))
        } else {
            None
        };
        let sasl = if vnc.vnc_sasl {
            let kerberos = KerberosService {
                keytab: vnc.vnc_sasl_keytab.clone(),
                service: vnc.vnc_sasl_service.clone(),
                local_realm: vnc.vnc_sasl_local_realm.clone(),
            };
            let server = SaslServer::configured(users, &vnc.vnc_sasl_mechanisms, &kerberos)
                .map_err(ServicesError::Sasl)?;
            Some(Arc::new(server))
        } else {
            None
        };
        let settings = VncSettings::from_config(cfg);
        Ok(Arc::new(VncServices {
            vencrypt,
            sasl,
            throttle: Throttle::new(ThrottleConfig {
                max_failures: vnc.vnc_auth_max_failures,
                window: Duration::from_secs(vnc.vnc_auth_failure_window_secs),
                lockout: Duration::from_secs(vnc.vnc_auth_lockout_secs),
            }),
            gates: SourceGates::default(),
            session_slots: Arc::new(Semaphore::new(
                settings.max_sessions.min(Semaphore::MAX_PERMITS),
            )),
            settings,
            audit,
        }))
    }
}
