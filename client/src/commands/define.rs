//! `define FILE`: sends a TOML definition to the daemon, which validates and stores it. The
//! file is read as `input` allows: a regular file or a pipe, up to the daemon's limit.

use std::path::PathBuf;

use clap::Args;
use vmgate::{ClientError, input};
use vmgate_config::limits::MAX_DEFINITION_BYTES;
use vmgate_proto::v1::DefineRequest;

use crate::session::Session;

#[derive(Debug, Args)]
pub struct DefineArgs {
    /// The domain definition (TOML)
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub async fn run(session: &mut Session, args: &DefineArgs) -> Result<String, ClientError> {
    // Read before connecting, so a typo in the file name is reported first; within the
    // daemon's limit, so an endless file or a huge one is refused before it fills memory.
    let path = args.file.clone();
    let toml = tokio::task::spawn_blocking(move || {
        input::read_text(&path, MAX_DEFINITION_BYTES, "a domain definition")
    })
    .await
    .map_err(|e| ClientError::ReadFile {
        path: args.file.clone(),
        err: std::io::Error::other(e),
    })??;
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
