//! The `Users` service: the SASL user database. Passwords arrive here and go straight
//! into SCRAM key derivation; they are never logged.

use std::sync::Arc;

use tonic::{Request, Response, Status};
pub use vmgate_proto::v1::users_server::UsersServer;
use vmgate_proto::v1::{self as pb, users_server::Users};

use crate::core::Manager;

pub struct UsersService {
    pub manager: Arc<Manager>,
}

type Reply<T> = Result<Response<T>, Status>;

fn disconnected(cut: usize) -> pb::UserChangeReply {
    pb::UserChangeReply {
        disconnected: u32::try_from(cut).unwrap_or(u32::MAX),
    }
}

#[tonic::async_trait]
impl Users for UsersService {
    async fn list(&self, _req: Request<pb::Empty>) -> Reply<pb::UserList> {
        Ok(Response::new(pb::UserList {
            names: self.manager.sasl_users(),
        }))
    }

    async fn add(&self, req: Request<pb::UserPassword>) -> Reply<pb::Empty> {
        let req = req.get_ref();
        self.manager.add_sasl_user(&req.name, &req.password).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn set_password(&self, req: Request<pb::UserPassword>) -> Reply<pb::UserChangeReply> {
        let req = req.get_ref();
        let cut = self
            .manager
            .set_sasl_password(&req.name, &req.password)
            .await?;
        Ok(Response::new(disconnected(cut)))
    }

    async fn delete(&self, req: Request<pb::UserName>) -> Reply<pb::UserChangeReply> {
        let cut = self.manager.delete_sasl_user(&req.get_ref().name).await?;
        Ok(Response::new(disconnected(cut)))
    }
}
