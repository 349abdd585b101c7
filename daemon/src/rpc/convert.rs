//! Conversions between wire messages and core types, validating on the way in.

use std::time::{SystemTime, UNIX_EPOCH};

use tonic::Status;
use vmgate_proto::v1 as pb;

use super::status::invalid;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vmgate_config::{
    Secret,
    acl::{AclPolicy, AclRule},
    domain::ConnectedPolicy,
};

use crate::{
    audit::AuditRecord,
    core::{
        ConsoleRule, DisplayAddress, DomainView, ListFilter, SessionView, access::AclChange,
        console::SetPassword, events::DomainEvent, state::DomainState,
    },
};

/// The event families a listener may ask for, as `EventKind::family` names them.
pub const EVENT_FAMILIES: &[&str] = &["lifecycle", "reboot", "reset"];

/// The family an `EventsRequest` asks for: None for every family.
pub fn event_family(family: &str) -> Result<Option<&'static str>, Status> {
    if family.is_empty() {
        return Ok(None);
    }
    match EVENT_FAMILIES.iter().find(|f| **f == family) {
        Some(f) => Ok(Some(f)),
        None => Err(invalid(format!(
            "Unknown event family {family:?}: {}",
            EVENT_FAMILIES.join(", ")
        ))),
    }
}

/// Milliseconds since the Unix epoch, negative before it.
fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

impl From<&DomainEvent> for pb::DomainEvent {
    fn from(e: &DomainEvent) -> pb::DomainEvent {
        pb::DomainEvent {
            time_ms: unix_ms(e.time),
            domain: e.domain.clone(),
            uuid: e.uuid.to_string(),
            family: e.kind.family().to_owned(),
            event: e.kind.as_str().to_owned(),
            detail: e.detail.clone(),
            lost: 0,
        }
    }
}

/// The note a listener gets when it fell behind and `count` events were dropped for it.
pub fn events_lost(count: u64) -> pb::DomainEvent {
    pb::DomainEvent {
        time_ms: unix_ms(SystemTime::now()),
        family: "lost".to_owned(),
        lost: count,
        ..pb::DomainEvent::default()
    }
}

impl From<pb::ListFilter> for ListFilter {
    fn from(f: pb::ListFilter) -> ListFilter {
        match f {
            pb::ListFilter::Active => ListFilter::Active,
            pb::ListFilter::Inactive => ListFilter::Inactive,
            pb::ListFilter::All => ListFilter::All,
        }
    }
}

impl From<DomainState> for pb::DomainState {
    fn from(s: DomainState) -> pb::DomainState {
        match s {
            DomainState::ShutOff => pb::DomainState::ShutOff,
            DomainState::Running => pb::DomainState::Running,
            DomainState::Paused => pb::DomainState::Paused,
        }
    }
}

impl From<&DomainView> for pb::DomainSummary {
    fn from(v: &DomainView) -> pb::DomainSummary {
        pb::DomainSummary {
            id: v.id.unwrap_or(0),
            name: v.name.clone(),
            uuid: v.uuid.to_string(),
            state: pb::DomainState::from(v.state).into(),
            autostart: v.autostart,
        }
    }
}

impl From<&DomainView> for pb::DomainInfo {
    fn from(v: &DomainView) -> pb::DomainInfo {
        pb::DomainInfo {
            summary: Some(v.into()),
            memory_mib: v.memory_mib,
            vcpus: v.vcpus,
            cpu_time_ns: u64::try_from(v.cpu_time.as_nanos()).unwrap_or(u64::MAX),
            state_reason: v.reason.as_str().to_owned(),
            display: v.display.as_ref().map(Into::into),
        }
    }
}

impl From<&DisplayAddress> for pb::Display {
    fn from(a: &DisplayAddress) -> pb::Display {
        match a {
            DisplayAddress::Tcp(addr) => pb::Display {
                kind: "vnc".into(),
                host: addr.ip().to_string(),
                port: addr.port().into(),
                socket_path: String::new(),
            },
            DisplayAddress::Unix(path) => pb::Display {
                kind: "vnc".into(),
                host: String::new(),
                port: 0,
                socket_path: path.display().to_string(),
            },
        }
    }
}

impl From<&SessionView> for pb::Session {
    fn from(s: &SessionView) -> pb::Session {
        pb::Session {
            id: s.id,
            client: s.client.clone(),
            security_type: s.security_type.to_owned(),
            identity: s.principal.to_string(),
            user: s.principal.user.clone().unwrap_or_default(),
            dn: s.principal.dn.clone().unwrap_or_default(),
            connected_since: s.since.unix_timestamp(),
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            shared: s.shared,
        }
    }
}

impl From<&AuditRecord> for pb::AuditRecord {
    fn from(r: &AuditRecord) -> pb::AuditRecord {
        pb::AuditRecord {
            time_ms: i64::try_from(r.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
            event: r.event.as_str().to_owned(),
            domain: r.domain.clone(),
            source: r.source.clone(),
            security_type: r.security_type.clone(),
            identity: r.identity.clone(),
            reason: r.reason.clone(),
        }
    }
}

impl From<&ConsoleRule> for pb::AclRule {
    fn from(r: &ConsoleRule) -> pb::AclRule {
        pb::AclRule {
            id: r.id,
            kind: r.rule.kind.as_str().to_owned(),
            pattern: r.rule.pattern.clone(),
            policy: r.rule.policy.as_str().to_owned(),
        }
    }
}

/// A rule from a request; `policy` is not read when `with_policy` is false.
fn acl_rule(r: &pb::AclRule, with_policy: bool) -> Result<AclRule, Status> {
    let policy = if with_policy {
        r.policy.parse().map_err(invalid)?
    } else {
        AclPolicy::Deny
    };
    Ok(AclRule {
        kind: r.kind.parse().map_err(invalid)?,
        pattern: r.pattern.clone(),
        policy,
    })
}

/// An ACL change request, validated.
pub fn acl_change(req: &pb::AclChangeRequest) -> Result<AclChange, Status> {
    use pb::acl_change_request::Change;
    match &req.change {
        Some(Change::Put(rule)) => Ok(AclChange::Put(acl_rule(rule, true)?)),
        Some(Change::Remove(rule)) => {
            let rule = acl_rule(rule, false)?;
            Ok(AclChange::Remove {
                kind: rule.kind,
                pattern: rule.pattern,
            })
        }
        Some(Change::RemoveId(id)) => Ok(AclChange::RemoveId(*id)),
        Some(Change::Replace(rules)) => Ok(AclChange::Replace(
            rules
                .rules
                .iter()
                .map(|r| acl_rule(r, true))
                .collect::<Result<_, _>>()?,
        )),
        None => Err(invalid(
            "The ACL change is empty: put, remove, remove_id or replace",
        )),
    }
}

/// A password change request, validated.
pub fn set_password(req: &pb::SetPasswordRequest) -> Result<SetPassword, Status> {
    let valid_to = if req.expire_now {
        Some(OffsetDateTime::now_utc())
    } else if req.valid_to.is_empty() {
        None
    } else {
        let parsed = OffsetDateTime::parse(&req.valid_to, &Rfc3339).map_err(|e| {
            invalid(format!(
                "valid_to {:?} is not an RFC 3339 time ({e})",
                req.valid_to
            ))
        })?;
        Some(parsed)
    };
    let policy = match req.connected() {
        pb::ConnectedPolicy::Default => None,
        pb::ConnectedPolicy::Keep => Some(ConnectedPolicy::Keep),
        pb::ConnectedPolicy::Disconnect => Some(ConnectedPolicy::Disconnect),
        pb::ConnectedPolicy::Fail => Some(ConnectedPolicy::Fail),
    };
    let password = (!req.password.is_empty()).then(|| Secret::new(req.password.clone()));
    Ok(SetPassword {
        password,
        valid_to,
        policy,
    })
}

/// An optional Unix time in seconds (0 = none).
pub fn since(secs: i64) -> Result<Option<OffsetDateTime>, Status> {
    if secs == 0 {
        return Ok(None);
    }
    OffsetDateTime::from_unix_timestamp(secs)
        .map(Some)
        .map_err(|_| invalid(format!("since {secs} is not a valid time")))
}
