//! Conversions between wire messages and core types, validating on the way in.

use tonic::Status;
use vmgate_proto::v1 as pb;

use super::status::invalid;
use crate::core::{DomainView, ListFilter, state::DomainState};

/// The key of a `DomainRef`, which must not be empty.
pub fn domain_key(r: Option<&pb::DomainRef>) -> Result<&str, Status> {
    match r.map(|r| r.key.trim()) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(invalid("A domain name or UUID is required")),
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
            display: None,
        }
    }
}
