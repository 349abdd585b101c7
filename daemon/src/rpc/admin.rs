//! The `Admin` service: facts about the daemon and the connection, and reloading TLS
//! credentials (the registry in `reload` does the work).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vmgate_proto::v1::{self as pb, admin_server::Admin};

use crate::{auth::Identity, core::Manager, reload::Reloader};

pub struct AdminService {
    pub manager: Arc<Manager>,
    pub reloader: Reloader,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn version(&self, req: Request<pb::Empty>) -> Result<Response<pb::VersionReply>, Status> {
        let readonly = req
            .extensions()
            .get::<Identity>()
            .is_some_and(Identity::readonly);
        Ok(Response::new(pb::VersionReply {
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            driver: self.manager.driver_name().to_owned(),
            hypervisor_version: self.manager.hypervisor_version(),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            readonly,
        }))
    }

    async fn reload_tls(
        &self,
        req: Request<pb::Empty>,
    ) -> Result<Response<pb::ReloadTlsReply>, Status> {
        let caller = req.extensions().get::<Identity>().map(Identity::to_string);
        let reloaded = self.reloader.reload().await.inspect_err(|e| {
            tracing::warn!(caller = caller.as_deref().unwrap_or("-"), "TLS reload: {e}")
        })?;
        tracing::info!(
            caller = caller.as_deref().unwrap_or("-"),
            "reloaded the TLS configuration of {}",
            reloaded.join(", ")
        );
        Ok(Response::new(pb::ReloadTlsReply { reloaded }))
    }
}
