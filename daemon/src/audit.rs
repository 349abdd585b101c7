//! Console audit records: what the gateway reports (connects, auth results, lockouts,
//! disconnects, revocations, password and ACL changes; `flood-summary` is the audit's own)
//! and the `AuditSink` it reports to. A leaf: the gateway and the core make records, the
//! store keeps them, and `audit_log` implements the sink (spool, database, tracing).

use std::fmt;

use time::OffsetDateTime;

/// The audit event names of the design, as stored and printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditEvent {
    Connect,
    AuthSuccess,
    AuthFailure,
    Lockout,
    Disconnect,
    Revoked,
    PasswordChange,
    AclChange,
    /// Records counted rather than kept one by one: the unauthenticated connects and
    /// disconnects of one source past its rate, or records the audit could not keep.
    FloodSummary,
}

impl AuditEvent {
    pub const ALL: [AuditEvent; 9] = [
        AuditEvent::Connect,
        AuditEvent::AuthSuccess,
        AuditEvent::AuthFailure,
        AuditEvent::Lockout,
        AuditEvent::Disconnect,
        AuditEvent::Revoked,
        AuditEvent::PasswordChange,
        AuditEvent::AclChange,
        AuditEvent::FloodSummary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Connect => "connect",
            AuditEvent::AuthSuccess => "auth-success",
            AuditEvent::AuthFailure => "auth-failure",
            AuditEvent::Lockout => "lockout",
            AuditEvent::Disconnect => "disconnect",
            AuditEvent::Revoked => "revoked",
            AuditEvent::PasswordChange => "password-change",
            AuditEvent::AclChange => "acl-change",
            AuditEvent::FloodSummary => "flood-summary",
        }
    }

    pub fn parse(name: &str) -> Option<AuditEvent> {
        AuditEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record. Empty strings mean "not applicable".
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub time: OffsetDateTime,
    pub event: AuditEvent,
    pub domain: String,
    /// The client: "127.0.0.1:53422", or "uid 1000" for a UNIX-socket console.
    pub source: String,
    /// The RFB security type: "none", "vnc", ...
    pub security_type: String,
    /// The user, certificate DN or uid the client authenticated as.
    pub identity: String,
    /// Why: the failure reason, who cut a session, what changed.
    pub reason: String,
}

impl AuditRecord {
    /// A record of `event` on `domain`, stamped now; fill the other fields as they apply.
    pub fn new(event: AuditEvent, domain: &str) -> AuditRecord {
        AuditRecord {
            time: OffsetDateTime::now_utc(),
            event,
            domain: domain.to_owned(),
            source: String::new(),
            security_type: String::new(),
            identity: String::new(),
            reason: String::new(),
        }
    }
}

/// Where audit records go. `record` must not block: implementations queue the record.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, record: AuditRecord);
}
