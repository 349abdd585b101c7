//! The `Admin` service: facts about the daemon and the connection.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vmgate_proto::v1::{self as pb, admin_server::Admin};

use crate::{auth::Identity, core::Manager};

pub struct AdminService {
    pub manager: Arc<Manager>,
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
}
