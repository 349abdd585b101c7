//! `console-disconnect DOMAIN ID`: cuts one console session (the ids `console-sessions` shows).

use clap::Args;
use vmgate::ClientError;
use vmgate_proto::v1::DisconnectRequest;

use super::domain_ref;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct ConsoleDisconnectArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    domain: String,
    /// The session's id, as console-sessions shows it
    #[arg(value_name = "ID")]
    id: u64,
}

pub async fn run(
    session: &mut Session,
    args: &ConsoleDisconnectArgs,
) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let request = DisconnectRequest {
        domain: Some(domain_ref(&args.domain)),
        session_id: args.id,
    };
    conn.console.disconnect(request).await?;
    Ok(format!(
        "Session {} of domain '{}' disconnected\n",
        args.id, args.domain
    ))
}
