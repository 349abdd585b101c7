//! The `Domain` service: each method converts its request, calls the core, and converts
//! the answer back. Permissions were checked by the auth layer before any of this runs.
//! `Events` hands its stream to the relay in `events`, which ends it at shutdown.

use std::{sync::Arc, time::Duration};

use tonic::{Request, Response, Status};
use vmgate_config::limits::MAX_DEFINITION_BYTES;
use vmgate_proto::v1::{self as pb, domain_server::Domain};

use super::{
    convert::{domain_key, event_family},
    events::{self, EventFilter, EventStream},
    guard,
    status::invalid,
};
use crate::{
    auth::access::CallAccess,
    core::{Manager, ShutdownWait},
    shutdown::Shutdown,
    verb::GuestVerb,
};

/// How long `shutdown --wait` waits when the caller gives no timeout.
const DEFAULT_SHUTDOWN_WAIT: Duration = Duration::from_secs(120);

pub struct DomainService {
    pub manager: Arc<Manager>,
    /// Ends the event streams when the daemon stops.
    pub shutdown: Shutdown,
}

type Reply<T> = Result<Response<T>, Status>;

impl DomainService {
    async fn act(&self, req: Request<pb::DomainRef>, verb: GuestVerb) -> Reply<pb::DomainInfo> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let view = self.manager.act(&key, verb).await?;
        Ok(Response::new((&view).into()))
    }
}

#[tonic::async_trait]
impl Domain for DomainService {
    type EventsStream = EventStream;

    async fn define(&self, req: Request<pb::DefineRequest>) -> Reply<pb::DefineReply> {
        let access = req.extensions().get::<CallAccess>().cloned();
        let req = req.into_inner();
        if req.toml.len() > MAX_DEFINITION_BYTES {
            return Err(invalid(format!(
                "The definition is {} bytes; at most {MAX_DEFINITION_BYTES} are accepted",
                req.toml.len()
            )));
        }
        let source = if req.source.is_empty() {
            "definition"
        } else {
            &req.source
        };
        if let Some(access) = access {
            guard::definition(&access, &self.manager, &req.toml, source).await?;
        }
        let (view, created) = self.manager.define(&req.toml, source).await?;
        Ok(Response::new(pb::DefineReply {
            domain: Some((&view).into()),
            created,
        }))
    }

    async fn undefine(&self, req: Request<pb::DomainRef>) -> Reply<pb::Empty> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        self.manager.undefine(&key).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Reply<pb::ListReply> {
        let filter = req.get_ref().filter();
        let mut views = self.manager.list(filter.into());
        if let Some(access) = req.extensions().get::<CallAccess>() {
            views = guard::visible(access, views).await?;
        }
        let domains = views.iter().map(Into::into).collect();
        Ok(Response::new(pb::ListReply { domains }))
    }

    async fn lookup(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainSummary> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let view = self.manager.lookup(&key)?;
        Ok(Response::new((&view).into()))
    }

    async fn info(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let view = self.manager.lookup(&key)?;
        Ok(Response::new((&view).into()))
    }

    async fn start(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let view = self.manager.start(&key).await?;
        Ok(Response::new((&view).into()))
    }

    async fn shutdown(&self, req: Request<pb::ShutdownRequest>) -> Reply<pb::DomainInfo> {
        let key = guard::domain(&req, &self.manager, req.get_ref().domain.as_ref()).await?;
        let req = req.into_inner();
        let wait = req.wait.then(|| ShutdownWait {
            timeout: match req.timeout_secs {
                0 => DEFAULT_SHUTDOWN_WAIT,
                secs => Duration::from_secs(secs.into()),
            },
            force: req.force,
        });
        let view = self.manager.shutdown(&key, wait).await?;
        Ok(Response::new((&view).into()))
    }

    async fn destroy(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(req, GuestVerb::Destroy).await
    }

    async fn reboot(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(req, GuestVerb::Reboot).await
    }

    async fn reset(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(req, GuestVerb::Reset).await
    }

    async fn suspend(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(req, GuestVerb::Suspend).await
    }

    async fn resume(&self, req: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(req, GuestVerb::Resume).await
    }

    async fn set_autostart(&self, req: Request<pb::AutostartRequest>) -> Reply<pb::DomainSummary> {
        let key = guard::domain(&req, &self.manager, req.get_ref().domain.as_ref()).await?;
        let view = self
            .manager
            .set_autostart(&key, req.get_ref().enable)
            .await?;
        Ok(Response::new((&view).into()))
    }

    async fn get_definition(&self, req: Request<pb::DomainRef>) -> Reply<pb::Definition> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let toml = self.manager.definition(&key, false)?;
        Ok(Response::new(pb::Definition { toml }))
    }

    async fn get_secure_definition(&self, req: Request<pb::DomainRef>) -> Reply<pb::Definition> {
        let key = guard::domain(&req, &self.manager, Some(req.get_ref())).await?;
        let toml = self.manager.definition(&key, true)?;
        Ok(Response::new(pb::Definition { toml }))
    }

    async fn events(&self, req: Request<pb::EventsRequest>) -> Reply<Self::EventsStream> {
        // Subscribed before the lookup, so nothing published once the domain is found is
        // missed; the client sees the stream open only after both.
        let receiver = self.manager.subscribe_events();
        let access = req.extensions().get::<CallAccess>().cloned();
        let req = req.get_ref();
        let uuid = match &req.domain {
            Some(domain) => Some(self.manager.lookup(domain_key(Some(domain))?)?.uuid),
            None => None,
        };
        let filter = EventFilter {
            uuid,
            family: event_family(&req.family)?,
        };
        Ok(Response::new(events::stream_checked(
            receiver,
            filter,
            access,
            &self.shutdown,
        )))
    }
}
