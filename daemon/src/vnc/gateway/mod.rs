//! One guest's VNC gateway: the listener clients connect to, and for each client the
//! handshake (with the lockout check, the handshake timeout and the bound on pending
//! connections), admission under the share policy, and the relay to the guest's own
//! framebuffer. Also the console's live state that operators change at runtime: its
//! password (with expiry) and its sessions. Closing the gateway (dropping it) stops the
//! listener and cuts every session.

mod handshake;
mod listen;
mod relay;

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmgate_config::{
    Secret,
    domain::{ConnectedPolicy, Graphics},
};

pub use handshake::security_name;
pub use listen::ConsoleAddress;

use self::{
    handshake::{Conn, HANDSHAKE_BUFFER, HandshakeError, authenticate, exchange_versions, refuse},
    listen::ConsoleListener,
    relay::{RelayEnd, open_backend, relay},
};
use super::{
    audit::{AuditEvent, AuditRecord},
    password::PasswordState,
    rfb::io::RfbStream,
    sessions::{Credential, CutReason, Joining, SessionInfo, SessionRegistry},
    settings::VncServices,
    source::Source,
    throttle::FailureOutcome,
};
use crate::driver::{ConsoleBackend, ConsoleStream};

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
    pending: Mutex<VecDeque<(u64, CancellationToken)>>,
    next_pending: AtomicU64,
}

impl Gateway {
    /// Binds the console's listener and starts serving it.
    pub async fn open(
        domain: &str,
        graphics: &Graphics,
        backend: Arc<dyn ConsoleBackend>,
        services: Arc<VncServices>,
        parent: &CancellationToken,
    ) -> Result<Gateway, GatewayError> {
        let password = graphics
            .passwd
            .clone()
            .or_else(|| services.settings.global_password.clone());
        if password.is_some() && services.settings.fips {
            return Err(GatewayError::FipsPassword);
        }
        let listener = listen::bind(domain, graphics, &services.settings).await?;
        let address = listener.address();
        let shared = Arc::new(Shared {
            domain: domain.to_owned(),
            services,
            backend,
            sessions: SessionRegistry::new(graphics.share_policy),
            password: watch::Sender::new(PasswordState {
                password,
                valid_to: graphics.passwd_valid_to,
                generation: 1,
            }),
            connected: graphics.connected,
            pending: Mutex::new(VecDeque::new()),
            next_pending: AtomicU64::new(1),
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
            |c| matches!(c, Credential::Password { generation } if *generation < current),
            reason,
        )
    }

    /// Registers an unauthenticated connection, evicting the oldest one over the bound.
    fn enqueue_pending(&self) -> (u64, CancellationToken) {
        let id = self.next_pending.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while pending.len() >= self.services.settings.max_pending {
            if let Some((_, oldest)) = pending.pop_front() {
                oldest.cancel();
            }
        }
        pending.push_back((id, token.clone()));
        (id, token)
    }

    fn dequeue_pending(&self, id: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|(p, _)| *p != id);
    }

    fn audit(&self, event: AuditEvent, client: &str, security: &str, identity: &str, reason: &str) {
        let mut record = AuditRecord::new(event, &self.domain);
        record.source = client.to_owned();
        record.security_type = security.to_owned();
        record.identity = identity.to_owned();
        record.reason = reason.to_owned();
        self.services.audit.record(record);
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
                        tokio::spawn(serve_client(
                            shared.clone(),
                            stream,
                            client,
                            source,
                            stop.clone(),
                        ));
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
                        tokio::spawn(serve_client(
                            shared.clone(),
                            stream,
                            client,
                            Source::Uid(uid),
                            stop.clone(),
                        ));
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

async fn accept_failed(domain: &str, e: std::io::Error) {
    tracing::warn!(domain, "console accept failed: {e}");
    // EMFILE and friends: back off instead of spinning.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// Why a connection ended before it became a session.
enum Ended {
    Handshake(HandshakeError),
    Timeout,
    Evicted,
    Stopped,
}

/// One client, from accept to close.
async fn serve_client<S>(
    shared: Arc<Shared>,
    stream: S,
    client: String,
    source: Source,
    stop: CancellationToken,
) where
    S: ConsoleStream,
{
    shared.audit(AuditEvent::Connect, &client, "", "", "");
    let (pending_id, evicted) = shared.enqueue_pending();
    let conn: Conn = RfbStream::new(Box::new(stream), HANDSHAKE_BUFFER);
    let timeout = shared.services.settings.handshake_timeout;
    let outcome = tokio::select! {
        _ = evicted.cancelled() => Err(Ended::Evicted),
        _ = stop.cancelled() => Err(Ended::Stopped),
        r = tokio::time::timeout(timeout, handshake(&shared, conn, source)) => match r {
            Ok(r) => r.map_err(Ended::Handshake),
            Err(_) => Err(Ended::Timeout),
        },
    };
    shared.dequeue_pending(pending_id);

    let (auth, conn) = match outcome {
        Ok(done) => done,
        Err(ended) => return shared.end_handshake(ended, &client, source),
    };
    let security = auth.security;
    shared.services.throttle.record_success(source);
    shared.audit(
        AuditEvent::AuthSuccess,
        &client,
        security,
        &auth.identity,
        "",
    );

    let joining = Joining {
        client: client.clone(),
        security_type: security,
        identity: auth.identity.clone(),
        credential: auth.credential,
        shared: auth.shared,
    };
    let member = match shared.sessions.join(joining) {
        Ok(member) => member,
        Err(e) => {
            return shared.audit(
                AuditEvent::Disconnect,
                &client,
                security,
                &auth.identity,
                &e.to_string(),
            );
        }
    };
    let (guest, server_init, guest_leftover) = match open_backend(shared.backend.as_ref()).await {
        Ok(parts) => parts,
        Err(e) => {
            let reason = format!("the guest's console did not answer: {e}");
            return shared.audit(
                AuditEvent::Disconnect,
                &client,
                security,
                &auth.identity,
                &reason,
            );
        }
    };
    let (stream, client_leftover) = conn.into_parts();
    let mut to_client = server_init;
    to_client.extend_from_slice(&guest_leftover);
    let end = relay(
        stream,
        guest,
        client_leftover,
        to_client,
        &member.counters,
        &member.cut,
    )
    .await;
    let was_cut = matches!(end, RelayEnd::Cut);
    let (event, reason) = match end {
        RelayEnd::Cut => match member.cut.reason() {
            Some(r) if r.revoked => (AuditEvent::Revoked, r.text),
            Some(r) => (AuditEvent::Disconnect, r.text),
            None => (AuditEvent::Disconnect, "cut".to_owned()),
        },
        RelayEnd::ClientClosed => (
            AuditEvent::Disconnect,
            "client closed the connection".to_owned(),
        ),
        RelayEnd::GuestClosed => (
            AuditEvent::Disconnect,
            "the guest's console closed".to_owned(),
        ),
        RelayEnd::Error(e) => (AuditEvent::Disconnect, format!("connection error: {e}")),
    };
    if was_cut {
        tracing::info!(domain = %shared.domain, session = member.id, %client, "console session cut: {reason}");
    }
    shared.audit(event, &client, security, &auth.identity, &reason);
}

/// Version, lockout check, authentication, ClientInit.
async fn handshake(
    shared: &Shared,
    mut conn: Conn,
    source: Source,
) -> Result<(handshake::Authenticated, Conn), HandshakeError> {
    let version = exchange_versions(&mut conn).await?;
    if let Err(remaining) = shared.services.throttle.check(source) {
        let reason = format!(
            "locked out: too many failed logins from {source}; try again in {} s",
            remaining.as_secs().max(1)
        );
        refuse(&mut conn, version, &reason).await?;
        return Err(HandshakeError::Refused { security: None, reason });
    }
    let password = shared.password.borrow().clone();
    authenticate(conn, version, &password, shared.services.vencrypt.as_deref()).await
}

impl Shared {
    /// Records how a connection that never became a session ended, counting wrong
    /// credentials towards the lockout.
    fn end_handshake(&self, ended: Ended, client: &str, source: Source) {
        let (event, security, reason) = match ended {
            Ended::Handshake(e) if e.counts_as_failure() => {
                let security = e.security().unwrap_or_default();
                self.audit(AuditEvent::AuthFailure, client, security, "", &e.to_string());
                if let FailureOutcome::LockedOut(d) = self.services.throttle.record_failure(source) {
                    let lock = format!(
                        "too many failed logins from {source}; locked out for {} s",
                        d.as_secs()
                    );
                    tracing::warn!(domain = %self.domain, %client, "{lock}");
                    self.audit(AuditEvent::Lockout, client, security, "", &lock);
                }
                return;
            }
            Ended::Handshake(e @ HandshakeError::Refused { .. }) => {
                (AuditEvent::AuthFailure, e.security().unwrap_or_default(), e.to_string())
            }
            Ended::Handshake(e) => (AuditEvent::Disconnect, "", format!("handshake failed: {e}")),
            Ended::Timeout => (AuditEvent::Disconnect, "", "handshake timed out".to_owned()),
            Ended::Evicted => (
                AuditEvent::Disconnect,
                "",
                "evicted: too many unauthenticated connections (vnc_max_pending)".to_owned(),
            ),
            Ended::Stopped => (AuditEvent::Disconnect, "", "the guest stopped".to_owned()),
        };
        self.audit(event, client, security, "", &reason);
    }
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
