//! `list [--all|--inactive] [--name|--json]`: the domains as virsh's table, their names
//! one per line (virsh's `--name`), or a JSON array.

use clap::Args;
use vmgate::ClientError;
use vmgate::output::{list_json, list_table};
use vmgate_proto::v1::{ListFilter, ListRequest};

use crate::session::Session;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List every domain, running or not
    #[arg(long, conflicts_with = "inactive")]
    pub(crate) all: bool,
    /// List only domains that are not running
    #[arg(long)]
    inactive: bool,
    /// Print a JSON array with the fields id, name, uuid, state, autostart
    #[arg(long, conflicts_with = "name")]
    json: bool,
    /// Print only the names, one per line
    #[arg(long)]
    name: bool,
}

pub async fn run(session: &mut Session, args: &ListArgs) -> Result<String, ClientError> {
    let filter = match (args.all, args.inactive) {
        (true, _) => ListFilter::All,
        (false, true) => ListFilter::Inactive,
        (false, false) => ListFilter::Active,
    };
    let conn = session.conn().await?;
    let reply = conn
        .domain
        .list(ListRequest {
            filter: filter.into(),
        })
        .await?
        .into_inner();
    if args.json {
        Ok(list_json(&reply.domains)?)
    } else if args.name {
        Ok(reply
            .domains
            .iter()
            .map(|d| format!("{}\n", d.name))
            .collect())
    } else {
        Ok(list_table(&reply.domains))
    }
}
