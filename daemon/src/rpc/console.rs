//! The `Console` service: live sessions, disconnecting one, the VNC password, the
//! console ACL, and the audit trail. Each handler converts, calls the core, converts back;
//! a call on one domain gets that domain already found and checked ([`Granted`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vmgate_proto::v1::{self as pb, console_server::Console};

use super::{
    authorize::{Granted, Unscoped, routes},
    convert,
};
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

routes! {
    impl Console for ConsoleService {
        domain {
            list_sessions(pb::DomainRef) -> pb::SessionList;
            disconnect(pb::DisconnectRequest) -> pb::Empty;
            set_password(pb::SetPasswordRequest) -> pb::SetPasswordReply;
            domain_audit(pb::AuditRequest) -> pb::AuditReply;
            list_acl(pb::DomainRef) -> pb::AclRules;
            change_acl(pb::AclChangeRequest) -> pb::AclChangeReply;
        }
        open {
            audit(pb::AuditRequest) -> pb::AuditReply;
        }
    }
}

impl ConsoleService {
    async fn list_sessions(
        &self,
        domain: Granted,
        _: Request<pb::DomainRef>,
    ) -> Reply<pb::SessionList> {
        let sessions = self.manager.console_sessions(domain.target())?;
        Ok(Response::new(pb::SessionList {
            sessions: sessions.iter().map(Into::into).collect(),
        }))
    }

    async fn disconnect(
        &self,
        domain: Granted,
        req: Request<pb::DisconnectRequest>,
    ) -> Reply<pb::Empty> {
        let by = caller(&req);
        self.manager
            .disconnect_session(domain.target(), req.get_ref().session_id, &by)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn set_password(
        &self,
        domain: Granted,
        req: Request<pb::SetPasswordRequest>,
    ) -> Reply<pb::SetPasswordReply> {
        let by = caller(&req);
        let change = convert::set_password(req.get_ref())?;
        let cut = self
            .manager
            .set_password(domain.target(), change, &by)
            .await?;
        Ok(Response::new(pb::SetPasswordReply {
            disconnected: u32::try_from(cut).unwrap_or(u32::MAX),
        }))
    }

    async fn domain_audit(
        &self,
        domain: Granted,
        req: Request<pb::AuditRequest>,
    ) -> Reply<pb::AuditReply> {
        let req = req.get_ref();
        let records = self
            .manager
            .audit(Some(domain.target()), convert::since(req.since)?, req.limit)
            .await?;
        Ok(Response::new(pb::AuditReply {
            records: records.iter().map(Into::into).collect(),
        }))
    }

    async fn list_acl(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::AclRules> {
        let rules = self.manager.console_acl(domain.target())?;
        Ok(Response::new(pb::AclRules {
            rules: rules.iter().map(Into::into).collect(),
        }))
    }

    async fn change_acl(
        &self,
        domain: Granted,
        req: Request<pb::AclChangeRequest>,
    ) -> Reply<pb::AclChangeReply> {
        let by = caller(&req);
        let change = convert::acl_change(req.get_ref())?;
        let outcome = self
            .manager
            .change_console_acl(domain.target(), change, &by)
            .await?;
        Ok(Response::new(pb::AclChangeReply {
            rules: outcome.rules.iter().map(Into::into).collect(),
            disconnected: u32::try_from(outcome.cut).unwrap_or(u32::MAX),
            warnings: outcome.warnings,
        }))
    }

    async fn audit(&self, _: Unscoped, req: Request<pb::AuditRequest>) -> Reply<pb::AuditReply> {
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
