//! The handlers' half of the polkit access driver: a call on a domain is judged once the
//! handler knows which domain the request names (the auth layer sees only the method).
//! Every handler of a domain-scoped method takes its domain through [`domain`], which is
//! [`domain_key`] when the driver is off.

use tonic::{Request, Status};
use vmgate_proto::v1 as pb;

use vmgate_config::domain::DomainDef;

use super::{convert::domain_key, status::invalid};
use crate::{
    auth::{access::CallAccess, permissions::DOMAIN_GETATTR},
    core::{DomainView, Manager},
};

/// The key to hand the core for the domain `r` names, once the caller may do this call
/// on it: its UUID under the access driver (so a rename in between cannot swap the
/// domain), the key as given otherwise.
pub async fn domain<T>(
    req: &Request<T>,
    manager: &Manager,
    r: Option<&pb::DomainRef>,
) -> Result<String, Status> {
    let key = domain_key(r)?;
    let Some(access) = req.extensions().get::<CallAccess>() else {
        return Ok(key.to_owned());
    };
    let view = manager.lookup(key)?;
    let uuid = view.uuid.to_string();
    access.domain(&view.name, &uuid).await?;
    Ok(uuid)
}

/// `define`: the domain is the one the definition names (its UUID when it gives one or the
/// name is taken, else none yet).
pub async fn definition(
    access: &CallAccess,
    manager: &Manager,
    toml: &str,
    source: &str,
) -> Result<(), Status> {
    let def = DomainDef::parse(toml, source).map_err(|e| invalid(e.to_string()))?;
    let uuid = def
        .uuid
        .or_else(|| manager.lookup(&def.name).ok().map(|v| v.uuid))
        .map(|u| u.to_string())
        .unwrap_or_default();
    access.domain(&def.name, &uuid).await
}

/// `list`: the domains the caller may `getattr`.
pub async fn visible(
    access: &CallAccess,
    views: Vec<DomainView>,
) -> Result<Vec<DomainView>, Status> {
    let mut kept = Vec::with_capacity(views.len());
    for view in views {
        let uuid = view.uuid.to_string();
        if access.allows(DOMAIN_GETATTR, &view.name, &uuid).await? {
            kept.push(view);
        }
    }
    Ok(kept)
}
