//! `domuuid DOMAIN` and `domname UUID`: the two directions of the name/UUID lookup.

use clap::Args;
use vmgate::ClientError;

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct DomnameArgs {
    /// The domain's UUID
    #[arg(value_name = "UUID")]
    uuid: String,
}

pub async fn domuuid(session: &mut Session, key: &str) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let domain = conn.domain.lookup(domain_ref(key)).await?.into_inner();
    Ok(format!("{}\n", domain.uuid))
}

pub async fn domname(session: &mut Session, args: &DomnameArgs) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let domain = conn
        .domain
        .lookup(domain_ref(&args.uuid))
        .await?
        .into_inner();
    Ok(format!("{}\n", domain.name))
}
