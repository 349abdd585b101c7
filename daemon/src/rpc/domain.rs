//! The `Domain` service: each handler converts its request, calls the core, and converts
//! the answer back. `authorize` checked the call before any of this runs, and a call on one
//! domain gets that domain already found and checked ([`Granted`]).
//! `Events` hands its stream to the relay in `events`, which ends it at shutdown.

use std::{sync::Arc, time::Duration};

use tonic::{Request, Response, Status};
use vmgate_proto::v1::{self as pb, domain_server::Domain};

use super::{
    authorize::{Granted, GrantedDefinition, Unscoped, event_domain, routes, visible},
    convert::event_family,
    events::{self, EventFilter, EventStream},
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

routes! {
    impl Domain for DomainService {
        type EventsStream = EventStream;
        domain {
            undefine(pb::DomainRef) -> pb::Empty;
            lookup(pb::DomainRef) -> pb::DomainSummary;
            info(pb::DomainRef) -> pb::DomainInfo;
            start(pb::DomainRef) -> pb::DomainInfo;
            shutdown(pb::ShutdownRequest) -> pb::DomainInfo;
            destroy(pb::DomainRef) -> pb::DomainInfo;
            reboot(pb::DomainRef) -> pb::DomainInfo;
            reset(pb::DomainRef) -> pb::DomainInfo;
            suspend(pb::DomainRef) -> pb::DomainInfo;
            resume(pb::DomainRef) -> pb::DomainInfo;
            set_autostart(pb::AutostartRequest) -> pb::DomainSummary;
            get_definition(pb::DomainRef) -> pb::Definition;
            get_secure_definition(pb::DomainRef) -> pb::Definition;
        }
        define {
            define(pb::DefineRequest) -> pb::DefineReply;
        }
        open {
            list(pb::ListRequest) -> pb::ListReply;
            events(pb::EventsRequest) -> EventStream;
        }
    }
}

impl DomainService {
    async fn act(&self, domain: Granted, verb: GuestVerb) -> Reply<pb::DomainInfo> {
        let view = self.manager.act(domain.target(), verb).await?;
        Ok(Response::new((&view).into()))
    }

    async fn define(&self, def: GrantedDefinition) -> Reply<pb::DefineReply> {
        let (view, created) = self.manager.define(def.into_def()).await?;
        Ok(Response::new(pb::DefineReply {
            domain: Some((&view).into()),
            created,
        }))
    }

    async fn undefine(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::Empty> {
        self.manager.undefine(domain.target()).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list(&self, _: Unscoped, req: Request<pb::ListRequest>) -> Reply<pb::ListReply> {
        let filter = req.get_ref().filter();
        let views = visible(&req, self.manager.list(filter.into())).await?;
        let domains = views.iter().map(Into::into).collect();
        Ok(Response::new(pb::ListReply { domains }))
    }

    async fn lookup(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainSummary> {
        let view = self.manager.view(domain.target())?;
        Ok(Response::new((&view).into()))
    }

    async fn info(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        let view = self.manager.view(domain.target())?;
        Ok(Response::new((&view).into()))
    }

    async fn start(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        let view = self.manager.start(domain.target()).await?;
        Ok(Response::new((&view).into()))
    }

    async fn shutdown(
        &self,
        domain: Granted,
        req: Request<pb::ShutdownRequest>,
    ) -> Reply<pb::DomainInfo> {
        let req = req.into_inner();
        let wait = req.wait.then(|| ShutdownWait {
            timeout: match req.timeout_secs {
                0 => DEFAULT_SHUTDOWN_WAIT,
                secs => Duration::from_secs(secs.into()),
            },
            force: req.force,
        });
        let view = self.manager.shutdown(domain.target(), wait).await?;
        Ok(Response::new((&view).into()))
    }

    async fn destroy(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(domain, GuestVerb::Destroy).await
    }

    async fn reboot(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(domain, GuestVerb::Reboot).await
    }

    async fn reset(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(domain, GuestVerb::Reset).await
    }

    async fn suspend(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(domain, GuestVerb::Suspend).await
    }

    async fn resume(&self, domain: Granted, _: Request<pb::DomainRef>) -> Reply<pb::DomainInfo> {
        self.act(domain, GuestVerb::Resume).await
    }

    async fn set_autostart(
        &self,
        domain: Granted,
        req: Request<pb::AutostartRequest>,
    ) -> Reply<pb::DomainSummary> {
        let view = self
            .manager
            .set_autostart(domain.target(), req.get_ref().enable)
            .await?;
        Ok(Response::new((&view).into()))
    }

    async fn get_definition(
        &self,
        domain: Granted,
        _: Request<pb::DomainRef>,
    ) -> Reply<pb::Definition> {
        let toml = self.manager.definition(domain.target(), false)?;
        Ok(Response::new(pb::Definition { toml }))
    }

    async fn get_secure_definition(
        &self,
        domain: Granted,
        _: Request<pb::DomainRef>,
    ) -> Reply<pb::Definition> {
        let toml = self.manager.definition(domain.target(), true)?;
        Ok(Response::new(pb::Definition { toml }))
    }

    async fn events(&self, _: Unscoped, req: Request<pb::EventsRequest>) -> Reply<EventStream> {
        // Subscribed before the lookup, so nothing published once the domain is found is
        // missed; the client sees the stream open only after both.
        let receiver = self.manager.subscribe_events();
        let access = req.extensions().get::<CallAccess>().cloned();
        let req = req.get_ref();
        let filter = EventFilter {
            uuid: event_domain(req.domain.as_ref(), &self.manager)?,
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
