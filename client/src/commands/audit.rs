//! `audit [--domain DOMAIN] [--since TIME|DURATION] [--limit N] [--json]`: the console audit
//! trail, of one guest (`Console.DomainAudit`, permission `domain.console-admin`) or of all
//! (`Console.Audit`, permission `host.admin`), oldest record first.

use clap::Args;
use time::OffsetDateTime;
use vmgate::ClientError;
use vmgate::console::audit::{audit_json, audit_table, parse_since};
use vmgate_proto::v1::AuditRequest;

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this domain's records (name or UUID)
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Only records since an RFC 3339 time (2030-01-31T18:00:00Z) or for a duration back from
    /// now (30s, 15m, 1h, 2d)
    #[arg(long, value_name = "TIME|DURATION")]
    since: Option<String>,
    /// At most this many of the newest records [default: the daemon's, 1000]
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Print a JSON array with the fields time, time_ms, event, domain, source,
    /// security_type, identity, reason
    #[arg(long)]
    json: bool,
}

pub async fn run(session: &mut Session, args: &AuditArgs) -> Result<String, ClientError> {
    let since = match &args.since {
        Some(text) => parse_since(text, OffsetDateTime::now_utc().unix_timestamp())?,
        None => 0,
    };
    let request = AuditRequest {
        domain: args.domain.as_deref().map(domain_ref),
        since,
        limit: args.limit.unwrap_or(0),
    };
    let conn = session.conn().await?;
    let reply = if args.domain.is_some() {
        conn.console.domain_audit(request).await
    } else {
        conn.console.audit(request).await
    }?
    .into_inner();
    let mut records = reply.records;
    // A log reads oldest first, whatever order the daemon picked its newest records in.
    records.sort_by_key(|r| r.time_ms);
    if args.json {
        Ok(audit_json(&records)?)
    } else {
        Ok(audit_table(&records))
    }
}
