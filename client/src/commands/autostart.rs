//! `autostart DOMAIN [--disable]`: whether vmgated starts the domain when it starts.

use clap::Args;
use vmgate::ClientError;
use vmgate_proto::v1::AutostartRequest;

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct AutostartArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Turn autostart off
    #[arg(long)]
    disable: bool,
}

pub async fn run(session: &mut Session, args: &AutostartArgs) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let request = AutostartRequest {
        domain: Some(domain_ref(&args.domain)),
        enable: !args.disable,
    };
    let domain = conn.domain.set_autostart(request).await?.into_inner();
    let what = if args.disable { "unmarked" } else { "marked" };
    Ok(format!("Domain '{}' {what} as autostarted\n", domain.name))
}
