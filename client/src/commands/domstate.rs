//! `domstate DOMAIN [--reason]`: the state word, optionally with why.

use clap::Args;
use vmgate::ClientError;
use vmgate::output::domstate_text;

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct DomstateArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Also show why the domain is in its state
    #[arg(long)]
    reason: bool,
}

pub async fn run(session: &mut Session, args: &DomstateArgs) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let info = conn
        .domain
        .info(domain_ref(&args.domain))
        .await?
        .into_inner();
    Ok(domstate_text(&info, args.reason)?)
}
