//! The lifecycle verbs: `start`, `destroy`, `reboot`, `reset`, `suspend`, `resume` share one
//! generic path (call, then print virsh's sentence with the name the daemon returns), and
//! `shutdown` adds its `--wait/--timeout/--force` options.

use clap::Args;
use vmgate::ClientError;
use vmgate_proto::v1::ShutdownRequest;

use super::{domain_ref, summary};
use crate::session::Session;

/// A lifecycle operation that takes only a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Destroy,
    Reboot,
    Reset,
    Suspend,
    Resume,
}

impl Verb {
    /// The end of virsh's "Domain 'NAME' ..." sentence.
    fn outcome(self) -> &'static str {
        match self {
            Verb::Start => "started",
            Verb::Destroy => "destroyed",
            Verb::Reboot => "is being rebooted",
            Verb::Reset => "was reset",
            Verb::Suspend => "suspended",
            Verb::Resume => "resumed",
        }
    }
}

pub async fn run(session: &mut Session, verb: Verb, key: &str) -> Result<String, ClientError> {
    let d = &mut session.conn().await?.domain;
    let r = domain_ref(key);
    let info = match verb {
        Verb::Start => d.start(r).await,
        Verb::Destroy => d.destroy(r).await,
        Verb::Reboot => d.reboot(r).await,
        Verb::Reset => d.reset(r).await,
        Verb::Suspend => d.suspend(r).await,
        Verb::Resume => d.resume(r).await,
    }?
    .into_inner();
    Ok(format!(
        "Domain '{}' {}\n",
        summary(&info)?.name,
        verb.outcome()
    ))
}

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Wait until the domain has powered off
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait (default: the daemon's)
    #[arg(long, value_name = "SECS", requires = "wait")]
    timeout: Option<u32>,
    /// With --wait: destroy the domain when the timeout passes
    #[arg(long, requires = "wait")]
    force: bool,
}

pub async fn shutdown(session: &mut Session, args: &ShutdownArgs) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let request = ShutdownRequest {
        domain: Some(domain_ref(&args.domain)),
        wait: args.wait,
        timeout_secs: args.timeout.unwrap_or(0),
        force: args.force,
    };
    let info = conn.domain.shutdown(request).await?.into_inner();
    let outcome = match (args.wait, info.state_reason.as_str()) {
        (false, _) => "is being shutdown".to_string(),
        (true, "destroyed") => {
            let after = args
                .timeout
                .map_or("the timeout".to_string(), |secs| format!("{secs} s"));
            format!("did not power off within {after} and was destroyed")
        }
        (true, _) => "has been shut down".to_string(),
    };
    Ok(format!("Domain '{}' {outcome}\n", summary(&info)?.name))
}
