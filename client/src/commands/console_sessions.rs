//! `console-sessions DOMAIN [--json]`: the open sessions of a guest's console.

use clap::Args;
use vmgate::ClientError;
use vmgate::console::sessions::{sessions_json, sessions_table};

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct ConsoleSessionsArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// Print a JSON array with the fields id, client, security_type, identity, user, dn,
    /// connected_since, bytes_in, bytes_out, shared
    #[arg(long)]
    json: bool,
}

pub async fn run(session: &mut Session, args: &ConsoleSessionsArgs) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let list = conn
        .console
        .list_sessions(domain_ref(&args.domain))
        .await?
        .into_inner();
    if args.json {
        Ok(sessions_json(&list.sessions)?)
    } else {
        Ok(sessions_table(&list.sessions))
    }
}
