//! `admin`: daemon administration, as virt-admin does it. `admin reload-tls` makes vmgated
//! re-read its TLS certificates, keys and CRLs (virt-admin server-update-tls).

use clap::{Args, Subcommand};
use vmgate::ClientError;
use vmgate_proto::v1::Empty;

use crate::session::Session;

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Re-read the daemon's TLS certificates, keys, CAs and CRLs (API and consoles); open
    /// connections keep the old ones, new ones get the new
    ReloadTls,
}

pub async fn run(session: &mut Session, args: &AdminArgs) -> Result<String, ClientError> {
    match args.action {
        AdminAction::ReloadTls => {
            let reply = session
                .conn()
                .await?
                .admin
                .reload_tls(Empty {})
                .await?
                .into_inner();
            Ok(format!(
                "Reloaded the TLS configuration of {}\n",
                reply.reloaded.join(", ")
            ))
        }
    }
}
