//! The live sessions of one guest's console: who is connected, how they authenticated,
//! traffic counters, and a way to cut each one with a reason. The share policy is decided
//! here because only the registry sees every session: `allow-exclusive` (a client asking
//! for exclusive access cuts the others; while it is connected new clients are refused),
//! `force-shared` (exclusive requests are refused), `ignore` (everybody connects).
//!
//! The console ACL lives here too, under the same lock as the sessions: a session joins
//! only if the rules in force admit it, and replacing the rules cuts, in the same critical
//! section, every open session they no longer admit. So no session can slip in between a
//! change and the sweep that follows it.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use vmgate_config::{
    AclDefault,
    acl::{self, AclRule, Principal},
    domain::SharePolicy,
};

/// How a session proved itself, which decides what a password change or an ACL change
/// does to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Security type None: nothing to revoke.
    Anonymous,
    /// The VNC password of this generation.
    Password { generation: u64 },
    /// A user login (SASL, VeNCrypt Plain): the ACL and the user database govern it.
    Login,
}

/// What `console-sessions` shows of a session.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: u64,
    pub client: String,
    pub security_type: &'static str,
    pub principal: Principal,
    pub since: OffsetDateTime,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub shared: bool,
}

/// Traffic counters the relay updates.
#[derive(Debug, Default)]
pub struct Counters {
    pub from_client: AtomicU64,
    pub to_client: AtomicU64,
}

/// The relay's side of a session: when to stop and why.
#[derive(Clone, Debug)]
pub struct Cut {
    token: CancellationToken,
    reason: Arc<Mutex<Option<CutReason>>>,
}

/// Why a session was cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutReason {
    pub text: String,
    /// The cut is a revocation of access (audited as `revoked`), not a plain disconnect.
    pub revoked: bool,
}

impl Cut {
    fn new() -> Cut {
        Cut {
            token: CancellationToken::new(),
            reason: Arc::default(),
        }
    }

    /// Cuts the session; the first reason given wins.
    pub fn cut(&self, reason: CutReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.token.cancel();
    }

    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    pub fn reason(&self) -> Option<CutReason> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Entry {
    info: SessionInfo,
    credential: Credential,
    counters: Arc<Counters>,
    cut: Cut,
}

/// Why a session may not join.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("this console allows shared access only (share policy force-shared)")]
    ExclusiveNotAllowed,
    #[error("another client has exclusive access to this console")]
    ExclusiveHeld,
    /// The ACL changed between the login and joining.
    #[error("not allowed to use this console (access list): {0}")]
    NotAllowed(String),
}

/// A joined session; leaving the registry happens when this is dropped.
pub struct Membership {
    registry: Arc<SessionRegistry>,
    pub id: u64,
    pub counters: Arc<Counters>,
    pub cut: Cut,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.inner().entries.remove(&self.id);
    }
}

/// Session ids are unique across every guest for the daemon's life.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The sessions of one console and the ACL they are admitted under.
pub struct SessionRegistry {
    policy: SharePolicy,
    acl_default: AclDefault,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: BTreeMap<u64, Entry>,
    rules: Arc<Vec<AclRule>>,
}

/// What the joining session brings.
pub struct Joining {
    pub client: String,
    pub security_type: &'static str,
    pub principal: Principal,
    pub credential: Credential,
    pub shared: bool,
}

impl SessionRegistry {
    pub fn new(
        policy: SharePolicy,
        rules: Vec<AclRule>,
        acl_default: AclDefault,
    ) -> Arc<SessionRegistry> {
        Arc::new(SessionRegistry {
            policy,
            acl_default,
            inner: Mutex::new(Inner {
                entries: BTreeMap::new(),
                rules: Arc::new(rules),
            }),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ACL's verdict on `who` under the rules in force now.
    pub fn admits(&self, who: &Principal) -> Result<(), String> {
        let rules = self.inner().rules.clone();
        acl::check(&rules, who, self.acl_default)
    }

    /// Puts new rules in force. With `cut_open`, every open session they no longer admit
    /// is cut (as a revocation) in the same critical section; returns how many.
    pub fn set_rules(&self, rules: Vec<AclRule>, cut_open: bool) -> usize {
        let mut inner = self.inner();
        inner.rules = Arc::new(rules);
        if !cut_open {
            return 0;
        }
        let mut cut = 0;
        for entry in inner.entries.values() {
            if let Err(why) = acl::check(&inner.rules, &entry.info.principal, self.acl_default) {
                entry.cut.cut(CutReason {
                    text: format!("access revoked: {why}"),
                    revoked: true,
                });
                cut += 1;
            }
        }
        cut
    }

    /// Admits a session under the ACL and the share policy, cutting others when it takes
    /// exclusive access.
    pub fn join(self: &Arc<Self>, joining: Joining) -> Result<Membership, JoinError> {
        let mut inner = self.inner();
        acl::check(&inner.rules, &joining.principal, self.acl_default)
            .map_err(JoinError::NotAllowed)?;
        let entries = &mut inner.entries;
        let exclusive = match self.policy {
            SharePolicy::Ignore => false,
            SharePolicy::ForceShared if !joining.shared => {
                return Err(JoinError::ExclusiveNotAllowed);
            }
            SharePolicy::ForceShared => false,
            SharePolicy::AllowExclusive => !joining.shared,
        };
        if exclusive {
            for other in entries.values() {
                other.cut.cut(CutReason {
                    text: format!("client {} asked for exclusive access", joining.client),
                    revoked: false,
                });
            }
        } else if self.policy == SharePolicy::AllowExclusive
            && entries
                .values()
                .any(|e| !e.info.shared && !e.cut.token.is_cancelled())
        {
            return Err(JoinError::ExclusiveHeld);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(Counters::default());
        let cut = Cut::new();
        entries.insert(
            id,
            Entry {
                info: SessionInfo {
                    id,
                    client: joining.client,
                    security_type: joining.security_type,
                    principal: joining.principal,
                    since: OffsetDateTime::now_utc(),
                    bytes_in: 0,
                    bytes_out: 0,
                    shared: joining.shared,
                },
                credential: joining.credential,
                counters: counters.clone(),
                cut: cut.clone(),
            },
        );
        Ok(Membership {
            registry: self.clone(),
            id,
            counters,
            cut,
        })
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        self.inner()
            .entries
            .values()
            .map(|e| SessionInfo {
                bytes_in: e.counters.from_client.load(Ordering::Relaxed),
                bytes_out: e.counters.to_client.load(Ordering::Relaxed),
                ..e.info.clone()
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cuts session `id`; false when there is no such session.
    pub fn cut(&self, id: u64, reason: CutReason) -> bool {
        match self.inner().entries.get(&id) {
            Some(entry) => {
                entry.cut.cut(reason);
                true
            }
            None => false,
        }
    }

    /// Cuts every session whose credential and principal match; returns how many.
    pub fn cut_where(
        &self,
        matches: impl Fn(&Credential, &Principal) -> bool,
        reason: &CutReason,
    ) -> usize {
        let inner = self.inner();
        let mut count = 0;
        for entry in inner
            .entries
            .values()
            .filter(|e| matches(&e.credential, &e.info.principal))
        {
            entry.cut.cut(reason.clone());
            count += 1;
        }
        count
    }

    /// Cuts everything (the guest stopped).
    pub fn cut_all(&self, reason: &CutReason) {
        self.cut_where(|_, _| true, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joining(client: &str, shared: bool) -> Joining {
        Joining {
            client: client.into(),
            security_type: "none",
            principal: Principal::default(),
            credential: Credential::Anonymous,
            shared,
        }
    }

    #[test]
    fn allow_exclusive_cuts_others_and_then_refuses_newcomers() {
        let reg = SessionRegistry::new(SharePolicy::AllowExclusive, vec![], AclDefault::Allow);
        let a = reg.join(joining("a", true)).expect("a");
        let b = reg
            .join(joining("b", false))
            .expect("b takes exclusive access");
        assert!(a.cut.reason().is_some_and(|r| r.text.contains("exclusive")));
        assert_eq!(
            reg.join(joining("c", true)).err(),
            Some(JoinError::ExclusiveHeld)
        );
        drop(a);
        drop(b);
        assert!(reg.is_empty());
        reg.join(joining("d", true)).expect("free again");
    }

    #[test]
    fn force_shared_refuses_exclusive_and_ignore_admits_all() {
        let reg = SessionRegistry::new(SharePolicy::ForceShared, vec![], AclDefault::Allow);
        assert_eq!(
            reg.join(joining("a", false)).err(),
            Some(JoinError::ExclusiveNotAllowed)
        );
        let reg = SessionRegistry::new(SharePolicy::Ignore, vec![], AclDefault::Allow);
        let a = reg.join(joining("a", false)).expect("a");
        let _b = reg.join(joining("b", false)).expect("b");
        assert!(a.cut.reason().is_none(), "ignore never cuts");
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn new_rules_cut_exactly_the_sessions_they_no_longer_admit() {
        use vmgate_config::acl::{AclKind, AclPolicy};
        let allow = |name: &str| AclRule {
            kind: AclKind::User,
            pattern: name.into(),
            policy: AclPolicy::Allow,
        };
        let user = |name: &str| Joining {
            principal: Principal {
                user: Some(name.into()),
                dn: None,
            },
            credential: Credential::Login,
            ..joining(name, true)
        };
        let reg = SessionRegistry::new(
            SharePolicy::Ignore,
            vec![allow("alice"), allow("bob")],
            AclDefault::Allow,
        );
        let alice = reg.join(user("alice")).expect("alice");
        let bob = reg.join(user("bob")).expect("bob");
        let anon = reg.join(joining("c", true)).expect("anonymous");
        assert!(matches!(
            reg.join(user("carol")),
            Err(JoinError::NotAllowed(_))
        ));

        assert_eq!(reg.set_rules(vec![allow("alice")], true), 1);
        let cut = bob.cut.reason().expect("bob cut");
        assert!(cut.revoked && cut.text.contains("bob"), "{cut:?}");
        assert!(alice.cut.reason().is_none() && anon.cut.reason().is_none());
        assert!(matches!(
            reg.join(user("bob")),
            Err(JoinError::NotAllowed(_))
        ));

        assert_eq!(reg.set_rules(vec![], false), 0, "keep: nobody is cut");
        assert!(alice.cut.reason().is_none());
        reg.join(user("bob")).expect("no rules admit everyone");
    }

    #[test]
    fn password_sessions_are_cut_by_generation() {
        let reg = SessionRegistry::new(SharePolicy::Ignore, vec![], AclDefault::Allow);
        let old = reg
            .join(Joining {
                credential: Credential::Password { generation: 1 },
                ..joining("a", true)
            })
            .expect("a");
        let anon = reg.join(joining("b", true)).expect("b");
        let reason = CutReason {
            text: "password changed".into(),
            revoked: false,
        };
        let n = reg.cut_where(
            |c, _| matches!(c, Credential::Password { generation } if *generation < 2),
            &reason,
        );
        assert_eq!(n, 1);
        assert_eq!(old.cut.reason(), Some(reason));
        assert!(anon.cut.reason().is_none());
        assert_eq!(
            reg.list().len(),
            2,
            "cut sessions leave when their relay ends"
        );
    }
}
