//! One guest's VNC gateway: the listener clients connect to, and for each client the
//! handshake (with the lockout check, the handshake timeout and the bound on pending
//! connections), admission under the share policy, and the relay to the guest's own
//! framebuffer. Also the console's live state that operators change at runtime: its
//! password (with expiry) and its sessions. Closing the gateway (dropping it) stops the
//! listener and cuts every session.

mod client;
mod handshake;
mod judge;
mod listen;
mod login;
mod pending;
mod relay;

use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use vmgate_config::{
    Secret,
    acl::AclRule,
    domain::{ConnectedPolicy, Graphics},
};

pub use handshake::security_name;
pub use judge::SourceGates;
pub use listen::ConsoleAddress;

use self::{
    client::{refuse_busy, serve_client},
    listen::ConsoleListener,
    pending::{Admitted, PendingLimits, PendingSet},
};
use super::{
    password::PasswordState,
    sessions::{Credential, CutReason, SessionInfo, SessionRegistry},
    settings::VncServices,
    source::Source,
};
use crate::{
    audit::{AuditEvent, AuditRecord},
    driver::{ConsoleBackend, ConsoleStream},
};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("Cannot open the console: {0}")]
    Listen(String),
    #[error(
        "VNC password authentication uses DES, which FIPS mode forbids; remove the guest's passwd and [vnc] vnc_password"
    )]
    FipsPassword,
    #[error(
        "{0} console session(s) are open and the password policy is 'fail'; disconnect them first or use --connected keep|disconnect"
    )]
    SessionsOpen(usize),
    #[error("No console session {0} on this guest; see vmgate console-sessions")]
    NoSession(u64),
}

/// A password change requested through the API.
#[derive(Clone, Debug)]
pub struct PasswordChange {
    /// None falls back to the global `vnc_password` (or no password).
    pub password: Option<Secret>,
    pub valid_to: Option<OffsetDateTime>,
    pub policy: ConnectedPolicy,
}

/// Refusals (over `vnc_max_sessions`) that linger for the client to read them, per guest.
const REFUSALS_LINGERING: usize = 16;

/// A running console gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    stop: CancellationToken,
    address: ConsoleAddress,
}

struct Shared {
    domain: String,
    services: Arc<VncServices>,
    backend: Arc<dyn ConsoleBackend>,
    sessions: Arc<SessionRegistry>,
    password: watch::Sender<PasswordState>,
    connected: ConnectedPolicy,
    pending: Mutex<PendingSet>,
    /// Refusals of clients over `vnc_max_sessions` waiting for the client to read them.
    refusing: Arc<Semaphore>,
}

impl Gateway {
    /// Binds the console's listener and starts serving it, admitting sessions under the
    /// guest's console ACL `rules`.
    pub async fn open(
        domain: &str,
        graphics: &Graphics,
        rules: Vec<AclRule>,
        backend: Arc<dyn ConsoleBackend>,
        services: Arc<VncServices>,
        parent: &CancellationToken,
    ) -> Result<Gateway, GatewayError> {
        let password = graphics
            .passwd
            .clone()
            .or_else(|| services.settings.global_password.clone());
        if graphics.passwd.is_some() && services.sasl.is_some() {
            tracing::warn!(
                domain,
                "the guest's VNC passwd is ignored: vnc_sasl is on, so its console offers \
                 only user logins (X509SASL, X509Plain)"
            );
        }
        if password.is_some() && services.settings.fips {
            return Err(GatewayError::FipsPassword);
        }
        let listener = listen::bind(domain, graphics, &services.settings).await?;
        let address = listener.address();
        let acl_default = services.settings.acl_default;
        let shared = Arc::new(Shared {
            domain: domain.to_owned(),
            backend,
            sessions: SessionRegistry::new(graphics.share_policy, rules, acl_default),
            password: watch::Sender::new(PasswordState {
                password,
                valid_to: graphics.passwd_valid_to,
                generation: 1,
            }),
            connected: graphics.connected,
            pending: Mutex::new(PendingSet::new(PendingLimits {
                per_guest: services.settings.max_pending,
                per_source: services.settings.max_pending_per_source,
            })),
            services,
            refusing: Arc::new(Semaphore::new(REFUSALS_LINGERING)),
        });
        let stop = parent.child_token();
        tokio::spawn(accept_loop(shared.clone(), listener, stop.clone()));
        tokio::spawn(expire_passwords(shared.clone(), stop.clone()));
        tracing::info!(domain, address = ?address, "console gateway open");
        Ok(Gateway {
            shared,
            stop,
            address,
        })
    }

    pub fn address(&self) -> &ConsoleAddress {
        &self.address
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.shared.sessions.list()
    }

    /// Cuts session `id`, recording who asked.
    pub fn disconnect(&self, id: u64, by: &str) -> Result<(), GatewayError> {
        let reason = CutReason {
            text: format!("disconnected by {by}"),
            revoked: false,
        };
        if self.shared.sessions.cut(id, reason) {
            Ok(())
        } else {
            Err(GatewayError::NoSession(id))
        }
    }

    /// Puts new ACL rules in force for the next handshake; unless the guest's `connected`
    /// policy is `keep`, open sessions the rules no longer admit are cut at once. Returns
    /// how many were cut.
    pub fn set_acl(&self, rules: Vec<AclRule>) -> usize {
        let cut_open = self.shared.connected != ConnectedPolicy::Keep;
        let cut = self.shared.sessions.set_rules(rules, cut_open);
        if cut > 0 {
            tracing::info!(domain = %self.shared.domain, sessions = cut, "console ACL change cut sessions");
        }
        cut
    }

    /// Cuts the sessions of `user` (deleted, or its password changed); returns how many.
    pub fn cut_user(&self, user: &str, why: &str) -> usize {
        let reason = CutReason {
            text: format!("user {user} {why}"),
            revoked: true,
        };
        self.shared.sessions.cut_where(
            |c, p| *c == Credential::Login && p.user.as_deref() == Some(user),
            &reason,
        )
    }

    /// Installs a new password; returns how many sessions were cut under the policy.
    pub fn change_password(&self, change: PasswordChange, by: &str) -> Result<usize, GatewayError> {
        let shared = &self.shared;
        let policy = change.policy;
        if policy == ConnectedPolicy::Fail && !shared.sessions.is_empty() {
            return Err(GatewayError::SessionsOpen(shared.sessions.len()));
        }
        let password = change
            .password
            .or_else(|| shared.services.settings.global_password.clone());
        if password.is_some() && shared.services.settings.fips {
            return Err(GatewayError::FipsPassword);
        }
        let mut generation = 0;
        shared.password.send_modify(|state| {
            state.generation += 1;
            generation = state.generation;
            state.password = password;
            state.valid_to = change.valid_to;
        });
        let mut record = AuditRecord::new(AuditEvent::PasswordChange, &shared.domain);
        record.identity = by.to_owned();
        record.reason = match change.valid_to {
            Some(to) => format!("valid to {to}; connected={}", policy_name(policy)),
            None => format!("connected={}", policy_name(policy)),
        };
        shared.services.audit.record(record);
        if policy != ConnectedPolicy::Disconnect {
            return Ok(0);
        }
        let reason = CutReason {
            text: "the VNC password changed".into(),
            revoked: true,
        };
        Ok(shared.cut_password_sessions(generation, &reason))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
        let reason = CutReason {
            text: "the guest stopped".into(),
            revoked: false,
        };
        self.shared.sessions.cut_all(&reason);
    }
}

fn policy_name(policy: ConnectedPolicy) -> &'static str {
    match policy {
        ConnectedPolicy::Keep => "keep",
        ConnectedPolicy::Disconnect => "disconnect",
        ConnectedPolicy::Fail => "fail",
    }
}

impl Shared {
    /// Cuts sessions that logged in with a password older than `current`.
    fn cut_password_sessions(&self, current: u64, reason: &CutReason) -> usize {
        self.sessions.cut_where(
            |c, _| matches!(c, Credential::Password { generation } if *generation < current),
            reason,
        )
    }

    /// Registers an unauthenticated connection from `source`, evicting what the pending
    /// bounds say; None when there is no room for it.
    fn enqueue_pending(&self, source: Source) -> Option<(u64, CancellationToken)> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.admit(source) {
            Admitted::Yes { id, evict } => Some((id, evict)),
            Admitted::Full => None,
        }
    }

    fn dequeue_pending(&self, id: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.remove(id);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: ConsoleListener, stop: CancellationToken) {
    loop {
        match &listener {
            ConsoleListener::Tcp(l, _) => {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    a = l.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let client = peer.to_string();
                        let source = Source::Ip(peer.ip());
                        admit(&shared, stream, client, source, &stop);
                    }
                    Err(e) => accept_failed(&shared.domain, e).await,
                }
            }
            ConsoleListener::Unix(l, _) => {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    a = l.accept() => a,
                };
                match accepted.and_then(|(s, _)| s.peer_cred().map(|c| (s, c.uid()))) {
                    Ok((stream, uid)) => {
                        let client = format!("uid {uid}");
                        admit(&shared, stream, client, Source::Uid(uid), &stop);
                    }
                    Err(e) => accept_failed(&shared.domain, e).await,
                }
            }
        }
    }
    if let ConsoleListener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!(domain = %shared.domain, "console gateway closed");
}

/// Serves a new client if the daemon's console limit has room for it, else refuses it.
fn admit<S: ConsoleStream>(
    shared: &Arc<Shared>,
    stream: S,
    client: String,
    source: Source,
    stop: &CancellationToken,
) {
    match shared.services.session_slots.clone().try_acquire_owned() {
        Ok(slot) => {
            let serve = serve_client(shared.clone(), stream, client, source, stop.clone());
            tokio::spawn(async move {
                serve.await;
                drop(slot);
            });
        }
        Err(_) => refuse_busy(shared, stream, &client),
    }
}

async fn accept_failed(domain: &str, e: std::io::Error) {
    tracing::warn!(domain, "console accept failed: {e}");
    // EMFILE and friends: back off instead of spinning.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// Cuts password sessions when the password's validity passes, under `connected`.
async fn expire_passwords(shared: Arc<Shared>, stop: CancellationToken) {
    let mut changes = shared.password.subscribe();
    loop {
        let (valid_to, generation) = {
            let state = changes.borrow_and_update();
            (state.valid_to.filter(|_| state.is_set()), state.generation)
        };
        let wait = valid_to.map(|to| {
            let left = to - OffsetDateTime::now_utc();
            std::time::Duration::try_from(left).unwrap_or_default()
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = async { match wait { Some(w) => tokio::time::sleep(w).await, None => std::future::pending().await } } => {
                if shared.connected == ConnectedPolicy::Disconnect {
                    let reason = CutReason { text: "the VNC password expired".into(), revoked: true };
                    let n = shared.cut_password_sessions(generation + 1, &reason);
                    tracing::info!(domain = %shared.domain, sessions = n, "VNC password expired");
                }
                // Nothing more to do until the password changes.
                if changes.changed().await.is_err() { return }
            }
        }
    }
}
