//! `dominfo DOMAIN [--json]`: virsh's label/value layout, or the stable JSON object.

use clap::Args;
use vmgate::ClientError;
use vmgate::output::{DomInfoJson, dominfo_text};

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct DominfoArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Print a JSON object instead
    #[arg(long)]
    json: bool,
}

pub async fn run(session: &mut Session, args: &DominfoArgs) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let info = conn
        .domain
        .info(domain_ref(&args.domain))
        .await?
        .into_inner();
    if args.json {
        let mut text = serde_json::to_string_pretty(&DomInfoJson::try_from(&info)?)?;
        text.push('\n');
        Ok(text)
    } else {
        Ok(dominfo_text(&info)?)
    }
}
