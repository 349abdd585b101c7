//! `dumpconf DOMAIN [--security-info]`: the definition as TOML, with VNC passwords only when
//! asked for (which needs the `domain.read-secure` permission).

use clap::Args;
use vmgate::ClientError;

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct DumpconfArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Include secrets such as VNC passwords
    #[arg(long)]
    security_info: bool,
}

pub async fn run(session: &mut Session, args: &DumpconfArgs) -> Result<String, ClientError> {
    let d = &mut session.conn().await?.domain;
    let r = domain_ref(&args.domain);
    let definition = if args.security_info {
        d.get_secure_definition(r).await
    } else {
        d.get_definition(r).await
    }?
    .into_inner();
    let mut text = definition.toml;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
