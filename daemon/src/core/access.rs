//! Who may use consoles: each guest's console ACL (list and change, with the change put in
//! force on the running console at once and audited) and the SASL user database (add,
//! change password, delete, list). Changes reach the store first, then memory, so a failed
//! write changes nothing.

use vmgate_config::acl::{self, AclKind, AclRule};

use super::{CoreError, Manager, inventory::Target, views::ConsoleRule};
use crate::{
    audit::{AuditEvent, AuditRecord},
    auth::users::{check_user_name, make_record},
    store::{RuleUpdate, StoredRule},
};

/// One change to a guest's rules.
#[derive(Clone, Debug)]
pub enum AclChange {
    /// `grant`/`deny`: the rule goes first, replacing any rule of the same kind and pattern,
    /// so the newest decision about a pattern is the one checked first.
    Put(AclRule),
    /// `revoke --user/--dn PATTERN`: removes the rules of that kind and pattern.
    Remove { kind: AclKind, pattern: String },
    /// `revoke --rule ID`.
    RemoveId(i64),
    /// `set FILE`: replaces every rule.
    Replace(Vec<AclRule>),
}

impl AclChange {
    /// How the audit trail describes the change.
    fn describe(&self) -> String {
        match self {
            AclChange::Put(rule) => format!("put {rule} first"),
            AclChange::Remove { kind, pattern } => format!("removed {kind} {pattern}"),
            AclChange::RemoveId(id) => format!("removed rule {id}"),
            AclChange::Replace(rules) => format!("replaced all rules ({} now)", rules.len()),
        }
    }
}

/// What a change left.
#[derive(Clone, Debug)]
pub struct AclOutcome {
    pub rules: Vec<ConsoleRule>,
    /// Open sessions the new rules cut.
    pub cut: usize,
    /// Said when rules are set that this console cannot apply.
    pub warnings: Vec<String>,
}

/// The rules a change leaves, with the ids of those kept.
fn apply(current: &[StoredRule], change: AclChange) -> Result<RuleUpdate, CoreError> {
    let kept = |keep: &dyn Fn(&StoredRule) -> bool| -> RuleUpdate {
        current
            .iter()
            .filter(|r| keep(r))
            .map(|r| (Some(r.id), r.rule.clone()))
            .collect()
    };
    let update = match change {
        AclChange::Put(rule) => {
            rule.check().map_err(CoreError::InvalidRequest)?;
            let mut update = vec![(None, rule.clone())];
            update.extend(kept(&|r| {
                !(r.rule.kind == rule.kind && r.rule.pattern == rule.pattern)
            }));
            update
        }
        AclChange::Remove { kind, pattern } => {
            let update = kept(&|r| !(r.rule.kind == kind && r.rule.pattern == pattern));
            if update.len() == current.len() {
                return Err(CoreError::NotFound(format!(
                    "No {kind} rule with the pattern {pattern:?} on this guest; see vmgate \
                     console-acl list"
                )));
            }
            update
        }
        AclChange::RemoveId(id) => {
            let update = kept(&|r| r.id != id);
            if update.len() == current.len() {
                return Err(CoreError::NotFound(format!(
                    "No rule {id} on this guest; see vmgate console-acl list"
                )));
            }
            update
        }
        AclChange::Replace(rules) => {
            acl::check_rules(&rules).map_err(CoreError::InvalidRequest)?;
            rules.into_iter().map(|r| (None, r)).collect()
        }
    };
    if update.len() > acl::MAX_RULES {
        return Err(CoreError::InvalidRequest(format!(
            "a guest may have at most {} console ACL rules; remove some first",
            acl::MAX_RULES
        )));
    }
    Ok(update)
}

impl Manager {
    /// The guest's console ACL rules, in order.
    pub fn console_acl(&self, target: &Target) -> Result<Vec<ConsoleRule>, CoreError> {
        let slot = self.slot_of(target)?;
        let rules = slot.data().acl.iter().map(ConsoleRule::from).collect();
        Ok(rules)
    }

    /// Changes a guest's rules; a running console applies them at once.
    pub async fn change_console_acl(
        &self,
        target: &Target,
        change: AclChange,
        by: &str,
    ) -> Result<AclOutcome, CoreError> {
        let slot = self.slot_of(target)?;
        // Serialized with start, which hands the rules to a new console.
        let _op = slot.op.lock().await;
        let current = slot.data().acl.clone();
        let description = change.describe();
        let update = apply(&current, change)?;
        let rules = self.store.replace_acl_rules(slot.uuid, update).await?;
        let plain: Vec<AclRule> = rules.iter().map(|r| r.rule.clone()).collect();
        let (name, cut) = {
            let mut d = slot.data();
            d.acl.clone_from(&rules);
            let cut = d
                .run
                .as_ref()
                .and_then(|r| r.gateway.as_ref())
                .map_or(0, |g| g.set_acl(plain.clone()));
            (d.def.name.clone(), cut)
        };
        let mut record = AuditRecord::new(AuditEvent::AclChange, &name);
        record.identity = by.to_owned();
        record.reason = format!("{description}; {cut} session(s) cut");
        self.options.vnc.audit.record(record);
        tracing::info!(domain = %name, by, cut, "console ACL changed: {description}");
        Ok(AclOutcome {
            rules: rules.iter().map(ConsoleRule::from).collect(),
            cut,
            warnings: self.acl_warnings(&plain),
        })
    }

    /// Rules this daemon's consoles cannot apply, because no session presents that kind of
    /// identity.
    fn acl_warnings(&self, rules: &[AclRule]) -> Vec<String> {
        let vnc = &self.options.vnc;
        let mut warnings = Vec::new();
        if rules.iter().any(|r| r.kind == AclKind::User) && vnc.sasl.is_none() {
            warnings.push(
                "user rules have no effect: consoles present no user identity while [vnc] \
                 vnc_sasl is off (sessions log in with a VNC password or none)"
                    .to_owned(),
            );
        }
        let verifies = vnc.vencrypt.as_ref().is_some_and(|t| t.verifies_clients());
        if rules.iter().any(|r| r.kind == AclKind::Dn) && !verifies {
            warnings.push(
                "dn rules have no effect: consoles present no certificate identity unless \
                 [vnc] vnc_tls and vnc_tls_x509_verify are on"
                    .to_owned(),
            );
        }
        warnings
    }

    /// The SASL user names.
    pub fn sasl_users(&self) -> Vec<String> {
        self.options.users.names()
    }

    /// Adds a user; the password is kept only as SCRAM keys.
    pub async fn add_sasl_user(&self, name: &str, password: &[u8]) -> Result<(), CoreError> {
        check_user_name(name).map_err(CoreError::InvalidRequest)?;
        check_password(password)?;
        let record = hash_off_thread(name, password).await;
        if !self.store.insert_user(&record).await? {
            return Err(CoreError::AlreadyExists(format!(
                "SASL user {name:?} already exists; use vmgate sasl-user passwd to change its \
                 password"
            )));
        }
        self.options.users.put(record);
        tracing::info!(user = name, "SASL user added");
        Ok(())
    }

    /// Changes a user's password; its open console sessions are cut.
    pub async fn set_sasl_password(&self, name: &str, password: &[u8]) -> Result<usize, CoreError> {
        check_password(password)?;
        let record = hash_off_thread(name, password).await;
        if !self.store.update_user(&record).await? {
            return Err(no_user(name));
        }
        self.options.users.put(record);
        tracing::info!(user = name, "SASL user password changed");
        Ok(self.cut_user_sessions(name, "changed password"))
    }

    /// Deletes a user; its open console sessions are cut.
    pub async fn delete_sasl_user(&self, name: &str) -> Result<usize, CoreError> {
        if !self.store.delete_user(name).await? {
            return Err(no_user(name));
        }
        self.options.users.remove(name);
        tracing::info!(user = name, "SASL user deleted");
        Ok(self.cut_user_sessions(name, "was deleted"))
    }

    fn cut_user_sessions(&self, name: &str, why: &str) -> usize {
        self.slots()
            .iter()
            .map(|slot| {
                let d = slot.data();
                d.run
                    .as_ref()
                    .and_then(|r| r.gateway.as_ref())
                    .map_or(0, |g| g.cut_user(name, why))
            })
            .sum()
    }
}

fn no_user(name: &str) -> CoreError {
    CoreError::NotFound(format!("No SASL user {name:?}; see vmgate sasl-user list"))
}

/// The longest password accepted (the CLI checks the same limit before sending).
const MAX_PASSWORD_LEN: usize = vmgate_config::limits::MAX_USER_PASSWORD_BYTES;

fn check_password(password: &[u8]) -> Result<(), CoreError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(CoreError::InvalidRequest(format!(
            "the password must be 1 to {MAX_PASSWORD_LEN} bytes long"
        )));
    }
    Ok(())
}

/// PBKDF2 takes milliseconds: not on the async threads.
async fn hash_off_thread(name: &str, password: &[u8]) -> crate::store::UserRecord {
    let (name, password) = (name.to_owned(), password.to_vec());
    match tokio::task::spawn_blocking(move || make_record(&name, &password)).await {
        Ok(record) => record,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use vmgate_config::acl::AclPolicy;

    use super::*;

    fn stored(id: i64, pattern: &str) -> StoredRule {
        StoredRule {
            id,
            rule: AclRule {
                kind: AclKind::User,
                pattern: pattern.into(),
                policy: AclPolicy::Allow,
            },
        }
    }

    #[test]
    fn put_goes_first_and_replaces_the_same_pattern() {
        let current = [stored(1, "alice"), stored(2, "*")];
        let deny_alice = AclRule {
            kind: AclKind::User,
            pattern: "alice".into(),
            policy: AclPolicy::Deny,
        };
        let update = apply(&current, AclChange::Put(deny_alice.clone())).expect("put");
        assert_eq!(
            update,
            vec![(None, deny_alice), (Some(2), current[1].rule.clone())]
        );
    }

    #[test]
    fn removing_what_is_not_there_is_an_error() {
        let current = [stored(1, "alice")];
        let missing = AclChange::Remove {
            kind: AclKind::Dn,
            pattern: "alice".into(),
        };
        assert!(matches!(
            apply(&current, missing),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            apply(&current, AclChange::RemoveId(9)),
            Err(CoreError::NotFound(_))
        ));
        assert_eq!(
            apply(&current, AclChange::RemoveId(1)).expect("remove"),
            vec![]
        );
    }
}
