//! `console-acl list|grant|deny|revoke|set`: who may use a guest's console. Rules are
//! ordered and the first rule of a kind that matches decides; `grant` and `deny` put their
//! rule first (replacing one with the same kind and pattern), `revoke` removes rules, `set`
//! replaces them all from a TOML file of `[[rule]]` tables. A running console applies a
//! change at once and cuts the open sessions it no longer admits.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use vmgate::ClientError;
use vmgate_config::{
    acl::{AclKind, AclPolicy, parse_rules},
    limits::MAX_ACL_FILE_BYTES,
};
use vmgate_proto::v1::{AclChangeRequest, AclRule, AclRules, acl_change_request::Change};

use super::domain_ref;
use crate::session::Session;
use vmgate::output::format_table;

#[derive(Debug, Args)]
pub struct ConsoleAclArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Show the rules in the order they are checked
    List {
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// Print a JSON array with the fields id, order, kind, pattern, policy
        #[arg(long)]
        json: bool,
    },
    /// Allow a user or certificate DN (the rule goes first)
    Grant(PatternArgs),
    /// Refuse a user or certificate DN (the rule goes first)
    Deny(PatternArgs),
    /// Remove the rules for a pattern, or one rule by id
    Revoke(RevokeArgs),
    /// Replace every rule with those of a TOML file of [[rule]] tables (kind, match, policy)
    Set {
        #[arg(value_name = "DOMAIN")]
        domain: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `--user PATTERN` or `--dn PATTERN`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// A SASL user name or glob (`*` any run of characters, `?` one character)
    #[arg(long, value_name = "PATTERN")]
    user: Option<String>,
    /// A client certificate DN or glob, written C=..,O=..,CN=.. as `vmgate pki query-dn`
    /// prints it
    #[arg(long, value_name = "PATTERN")]
    dn: Option<String>,
}

impl Target {
    fn kind_and_pattern(&self) -> (AclKind, String) {
        match (&self.user, &self.dn) {
            (Some(user), _) => (AclKind::User, user.clone()),
            (None, Some(dn)) => (AclKind::Dn, dn.clone()),
            // clap's group makes one of them required.
            (None, None) => (AclKind::User, String::new()),
        }
    }
}

#[derive(Debug, Args)]
struct PatternArgs {
    #[arg(value_name = "DOMAIN")]
    domain: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[arg(value_name = "DOMAIN")]
    domain: String,
    #[command(flatten)]
    which: RevokeTarget,
}

/// Exactly one of `--user`, `--dn`, `--rule`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RevokeTarget {
    /// Remove the user rules with exactly this pattern
    #[arg(long, value_name = "PATTERN")]
    user: Option<String>,
    /// Remove the dn rules with exactly this pattern
    #[arg(long, value_name = "PATTERN")]
    dn: Option<String>,
    /// Remove the rule with this id (see console-acl list)
    #[arg(long, value_name = "ID")]
    rule: Option<i64>,
}

fn rule(kind: AclKind, pattern: String, policy: AclPolicy) -> AclRule {
    AclRule {
        id: 0,
        kind: kind.as_str().to_owned(),
        pattern,
        policy: policy.as_str().to_owned(),
    }
}

pub async fn run(session: &mut Session, args: &ConsoleAclArgs) -> Result<String, ClientError> {
    let (domain, change, done) = match &args.action {
        Action::List { domain, json } => {
            let conn = session.conn().await?;
            let rules = conn
                .console
                .list_acl(domain_ref(domain))
                .await?
                .into_inner();
            return if *json {
                rules_json(&rules.rules)
            } else {
                Ok(rules_table(&rules.rules))
            };
        }
        Action::Grant(a) | Action::Deny(a) => {
            let (kind, pattern) = a.target.kind_and_pattern();
            let policy = match &args.action {
                Action::Grant(_) => AclPolicy::Allow,
                _ => AclPolicy::Deny,
            };
            let done = format!("{policy} {kind} {pattern}: rule added first");
            (&a.domain, Change::Put(rule(kind, pattern, policy)), done)
        }
        Action::Revoke(RevokeArgs { domain, which: a }) => match (&a.user, &a.dn, a.rule) {
            (_, _, Some(id)) => (domain, Change::RemoveId(id), format!("rule {id} removed")),
            (Some(p), _, None) | (None, Some(p), None) => {
                let kind = if a.user.is_some() {
                    AclKind::User
                } else {
                    AclKind::Dn
                };
                let done = format!("{kind} rules for {p} removed");
                let change = Change::Remove(rule(kind, p.clone(), AclPolicy::Deny));
                (domain, change, done)
            }
            // clap requires one of them.
            (None, None, None) => {
                return Err(ClientError::Invalid(
                    "say which rules to remove: --user PATTERN, --dn PATTERN or --rule ID".into(),
                ));
            }
        },
        Action::Set { domain, file } => {
            // Bounded, so an endless file or a FIFO is refused rather than read forever.
            let text = vmgate::input::read_text(file, MAX_ACL_FILE_BYTES, "a console ACL file")?;
            let parsed =
                parse_rules(&text, &file.display().to_string()).map_err(ClientError::Invalid)?;
            let rules = parsed
                .into_iter()
                .map(|r| rule(r.kind, r.pattern, r.policy))
                .collect();
            let done = "rules replaced".to_owned();
            (domain, Change::Replace(AclRules { rules }), done)
        }
    };
    let conn = session.conn().await?;
    let request = AclChangeRequest {
        domain: Some(domain_ref(domain)),
        change: Some(change),
    };
    let reply = conn.console.change_acl(request).await?.into_inner();
    for warning in &reply.warnings {
        eprintln!("warning: domain '{domain}': {warning}");
    }
    Ok(match reply.disconnected {
        0 => format!("Console ACL of domain '{domain}': {done}\n"),
        n => format!("Console ACL of domain '{domain}': {done}; {n} session(s) disconnected\n"),
    })
}

/// ` Id   Order   Kind   Policy   Pattern`, in the order the rules are checked.
fn rules_table(rules: &[AclRule]) -> String {
    let rows: Vec<Vec<String>> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                r.id.to_string(),
                (i + 1).to_string(),
                r.kind.clone(),
                r.policy.clone(),
                r.pattern.clone(),
            ]
        })
        .collect();
    format_table(&["Id", "Order", "Kind", "Policy", "Pattern"], &rows)
}

/// One element of `console-acl list --json`; the field names are a stable interface.
#[derive(Serialize)]
struct RuleJson<'a> {
    id: i64,
    order: usize,
    kind: &'a str,
    pattern: &'a str,
    policy: &'a str,
}

fn rules_json(rules: &[AclRule]) -> Result<String, ClientError> {
    let entries: Vec<RuleJson> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleJson {
            id: r.id,
            order: i + 1,
            kind: &r.kind,
            pattern: &r.pattern,
            policy: &r.policy,
        })
        .collect();
    Ok(serde_json::to_string_pretty(&entries)? + "\n")
}
