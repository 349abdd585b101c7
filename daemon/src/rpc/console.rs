//! The `Console` service: live sessions, disconnecting one, the VNC password, the
//! console ACL, and the audit trail. Each method converts, calls the core, converts back.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vmgate_proto::v1::{self as pb, console_server::Console};

use super::{convert, guard};
use crate::{auth::Identity, core::Manager};

pub struct ConsoleService {
    pub manager: Arc<Manager>,
}

type Reply<T> = Result<Response<T>, Status>;

/// Who is asking, for audit records ("uid 1000 (pid 4242)").
fn caller<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<Identity>()
        .map(Identity::to_string)
        .unwrap_or_else(|| "unknown caller".into())
}

#[tonic::async_trait]
impl Console for ConsoleService {
    async fn list_sessions(&self, req: Request<pb::DomainRef>) -> Reply<pb::SessionList> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let sessions = self.manager.console_sessions(&key)?;
        Ok(Response::new(pb::SessionList {
            sessions: sessions.iter().map(Into::into).collect(),
        }))
    }

    async fn disconnect(&self, req: Request<pb::DisconnectRequest>) -> Reply<pb::Empty> {
        let by = caller(&req);
        let key = guard::domain(&req, &self.manager, req.get_ref().domain.as_ref()).await?;
        self.manager
            .disconnect_session(&key, req.get_ref().session_id, &by)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn set_password(
        &self,
        req: Request<pb::SetPasswordRequest>,
    ) -> Reply<pb::SetPasswordReply> {
        let by = caller(&req);
        let key = guard::domain(&req, &self.manager, req.get_ref().domain.as_ref()).await?;
        let change = convert::set_password(req.get_ref())?;
        let cut = self.manager.set_password(&key, change, &by).await?;
        Ok(Response::new(pb::SetPasswordReply {
            disconnected: u32::try_from(cut).unwrap_or(u32::MAX),
        }))
    }

    async fn domain_audit(&self, req: Request<pb::AuditRequest>) -> Reply<pb::AuditReply> {
        let key = guard::domain(&req, &self.manager, req.get_ref().domain.as_ref()).await?;
        let req = req.get_ref();
        let records = self
            .manager
            .audit(Some(&key), convert::since(req.since)?, req.limit)
            .await?;
        Ok(Response::new(pb::AuditReply {
            records: records.iter().map(Into::into).collect(),
        }))
    }

    async fn list_acl(&self, req: Request<pb::DomainRef>) -> Reply<pb::AclRules> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let rules = self.manager.console_acl(&key)?;
        Ok(Response::new(pb::AclRules {
            rules: rules.iter().map(Into::into).collect(),
        }))
    }

    async fn change_acl(&self, req: Request<pb::AclChangeRequest>) -> Reply<pb::AclChangeReply> {
        let by = caller(&req);
        let key = guard::domain(&req, &self.manager, req.get_ref().domain.as_ref()).await?;
        let change = convert::acl_change(req.get_ref())?;
        let outcome = self.manager.change_console_acl(&key, change, &by).await?;
        Ok(Response::new(pb::AclChangeReply {
            rules: outcome.rules.iter().map(Into::into).collect(),
            disconnected: u32::try_from(outcome.cut).unwrap_or(u32::MAX),
            warnings: outcome.warnings,
        }))
    }

    async fn audit(&self, req: Request<pb::AuditRequest>) -> Reply<pb::AuditReply> {
        let req = req.get_ref();
        let records = self
            .manager
            .audit(None, convert::since(req.since)?, req.limit)
            .await?;
        Ok(Response::new(pb::AuditReply {
            records: records.iter().map(Into::into).collect(),
        }))
    }
}
