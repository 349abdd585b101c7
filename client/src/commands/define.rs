//! `define FILE`: sends a TOML definition to the daemon, which validates and stores it.

use std::path::PathBuf;

use clap::Args;
use vmgate::ClientError;
use vmgate_proto::v1::DefineRequest;

use crate::session::Session;

#[derive(Debug, Args)]
pub struct DefineArgs {
    /// The domain definition (TOML)
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub async fn run(session: &mut Session, args: &DefineArgs) -> Result<String, ClientError> {
    // Read before connecting, so a typo in the file name is reported first.
    let toml =
        tokio::fs::read_to_string(&args.file)
            .await
            .map_err(|err| ClientError::ReadFile {
                path: args.file.clone(),
                err,
            })?;
    let source = args.file.display().to_string();
    let conn = session.conn().await?;
    let reply = conn
        .domain
        .define(DefineRequest {
            toml,
            source: source.clone(),
        })
        .await?
        .into_inner();
    let domain = reply
        .domain
        .ok_or(ClientError::Incomplete("domain summary"))?;
    Ok(format!("Domain '{}' defined from {source}\n", domain.name))
}
