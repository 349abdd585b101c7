//! The core's own types for what it hands out about consoles: where a console listens, a
//! live session, and an ACL rule with its id. The API layer converts these, so it never
//! names a type of the store or of the gateway, and either can change its own.

use std::{net::SocketAddr, path::PathBuf};

use time::OffsetDateTime;
use vmgate_config::acl::{AclRule, Principal};

use crate::{
    store::StoredRule,
    vnc::{gateway::ConsoleAddress, sessions::SessionInfo},
};

/// Where a running guest's console listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl From<&ConsoleAddress> for DisplayAddress {
    fn from(address: &ConsoleAddress) -> DisplayAddress {
        match address {
            ConsoleAddress::Tcp(addr) => DisplayAddress::Tcp(*addr),
            ConsoleAddress::Unix(path) => DisplayAddress::Unix(path.clone()),
        }
    }
}

/// A console ACL rule and its id, which stays the same across changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleRule {
    pub id: i64,
    pub rule: AclRule,
}

impl From<&StoredRule> for ConsoleRule {
    fn from(stored: &StoredRule) -> ConsoleRule {
        ConsoleRule {
            id: stored.id,
            rule: stored.rule.clone(),
        }
    }
}

/// A live console session, as `console-sessions` shows it.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: u64,
    pub client: String,
    pub security_type: &'static str,
    pub principal: Principal,
    pub since: OffsetDateTime,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub shared: bool,
}

impl From<SessionInfo> for SessionView {
    fn from(s: SessionInfo) -> SessionView {
        SessionView {
            id: s.id,
            client: s.client,
            security_type: s.security_type,
            principal: s.principal,
            since: s.since,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            shared: s.shared,
        }
    }
}
