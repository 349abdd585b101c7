//! Per-guest console ACLs: the rule schema (`[[rule]]` tables with `kind`, `match`,
//! `policy`, as `vmgate console-acl set FILE` reads them), the checks every rule passes
//! before it is stored, and [`check`], the one decision function the gateway applies at
//! login and again to open sessions whenever the rules change.
//!
//! Semantics (DESIGN.md): rules are ordered; each kind of identity a session presents (its
//! SASL user, its client certificate DN) is checked against the rules of that kind, first
//! match wins and no match denies; a kind for which the guest has no rules does not
//! restrict. A guest with no rules at all admits everyone, unless `vnc_acl_default =
//! "deny"`. Sessions that present no identity (security type None, VNC password) are not
//! subject to the ACL.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AclDefault, located, values::toml_name, x509::glob_match};

/// The most rules one guest may have.
pub const MAX_RULES: usize = 1000;
/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Which identity a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclKind {
    /// The SASL (or X509Plain) user name.
    User,
    /// The client certificate's DN, written `C=GB,ST=London,...,CN=name`.
    Dn,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclPolicy {
    Allow,
    Deny,
}

toml_name! {
    AclKind { User => "user", Dn => "dn" }
    AclPolicy { Allow => "allow", Deny => "deny" }
}

impl std::str::FromStr for AclKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(AclKind::User),
            "dn" => Ok(AclKind::Dn),
            _ => Err(format!("unknown rule kind {s:?}; use \"user\" or \"dn\"")),
        }
    }
}

impl std::str::FromStr for AclPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(AclPolicy::Allow),
            "deny" => Ok(AclPolicy::Deny),
            _ => Err(format!(
                "unknown rule policy {s:?}; use \"allow\" or \"deny\""
            )),
        }
    }
}

/// One rule: `policy` applies to sessions whose identity of `kind` matches the glob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub kind: AclKind,
    /// A glob where `*` matches any run of characters and `?` any one character.
    #[serde(rename = "match")]
    pub pattern: String,
    pub policy: AclPolicy,
}

impl AclRule {
    /// Checks the pattern: not empty, not too long, no control characters.
    pub fn check(&self) -> Result<(), String> {
        let p = &self.pattern;
        if p.is_empty() {
            return Err(format!(
                "the {} pattern is empty; write a name or a glob such as \"*\"",
                self.kind
            ));
        }
        if p.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "the {} pattern is {} bytes long; the limit is {MAX_PATTERN_LEN}",
                self.kind,
                p.len()
            ));
        }
        if p.chars().any(char::is_control) {
            return Err(format!(
                "the {} pattern {p:?} contains control characters; remove them",
                self.kind
            ));
        }
        Ok(())
    }
}

impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.policy, self.kind, self.pattern)
    }
}

/// Checks a whole rule list: each rule, and the count.
pub fn check_rules(rules: &[AclRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "{} rules given; a guest may have at most {MAX_RULES}",
            rules.len()
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        rule.check().map_err(|e| format!("rule {}: {e}", i + 1))?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    #[serde(default)]
    rule: Vec<AclRule>,
}

/// Parses an ACL file (`[[rule]]` tables) and checks its rules. Errors start with
/// `origin:line:column:` when the position is known.
pub fn parse_rules(text: &str, origin: &str) -> Result<Vec<AclRule>, String> {
    let file: AclFile = located::parse(text).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| match e.position {
                Some((line, col)) => format!("{origin}:{line}:{col}: {}", e.message),
                None => format!("{origin}: {}", e.message),
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    check_rules(&file.rule).map_err(|e| format!("{origin}: {e}"))?;
    Ok(file.rule)
}

/// Writes rules in the form [`parse_rules`] reads.
pub fn rules_to_toml(rules: &[AclRule]) -> String {
    let mut out = String::new();
    for rule in rules {
        out.push_str("[[rule]]\n");
        out.push_str(&format!("kind = \"{}\"\n", rule.kind));
        out.push_str(&format!(
            "match = {}\n",
            toml::Value::String(rule.pattern.clone())
        ));
        out.push_str(&format!("policy = \"{}\"\n\n", rule.policy));
    }
    out
}

/// Who a console session proved to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The SASL or X509Plain user name.
    pub user: Option<String>,
    /// The verified client certificate's DN.
    pub dn: Option<String>,
}

impl Principal {
    /// A session without any identity is not subject to the ACL.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none() && self.dn.is_none()
    }

    fn identities(&self) -> impl Iterator<Item = (AclKind, &str)> {
        let user = self.user.as_deref().map(|u| (AclKind::User, u));
        let dn = self.dn.as_deref().map(|d| (AclKind::Dn, d));
        user.into_iter().chain(dn)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.user, &self.dn) {
            (Some(u), Some(d)) => write!(f, "{u} ({d})"),
            (Some(u), None) => f.write_str(u),
            (None, Some(d)) => f.write_str(d),
            (None, None) => Ok(()),
        }
    }
}

/// Decides whether `who` may use a console with these rules. The error is for logs and
/// the audit trail (it names the rule); clients get a generic refusal.
pub fn check(rules: &[AclRule], who: &Principal, default: AclDefault) -> Result<(), String> {
    if who.is_anonymous() {
        return Ok(());
    }
    if rules.is_empty() {
        return match default {
            AclDefault::Allow => Ok(()),
            AclDefault::Deny => {
                Err("the guest has no console ACL rules and vnc_acl_default is \"deny\"".into())
            }
        };
    }
    for (kind, value) in who.identities() {
        let mut of_kind = rules.iter().filter(|r| r.kind == kind).peekable();
        if of_kind.peek().is_none() {
            continue;
        }
        match of_kind.find(|r| glob_match(&r.pattern, value)) {
            Some(rule) if rule.policy == AclPolicy::Allow => {}
            Some(rule) => {
                return Err(format!("{kind} {value:?} is denied by the rule \"{rule}\""));
            }
            None => return Err(format!("no {kind} rule matches {value:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
