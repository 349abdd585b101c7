//! Which gRPC service a call goes to: the first segment of its path names the service
//! (`/vmgate.v1.Domain/List`), and the generated server of that service decodes the call
//! and runs the method. A path naming no service gets gRPC's UNIMPLEMENTED.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use tonic::{body::Body, codegen::BoxFuture, server::NamedService};
use tower::Service;
use vmgate_proto::v1::{
    admin_server::AdminServer, console_server::ConsoleServer, domain_server::DomainServer,
};

use super::{
    admin::AdminService,
    auth::{AuthServer, AuthService},
    console::ConsoleService,
    domain::DomainService,
    status,
    users::{UsersServer, UsersService},
};

/// The five services of the API.
#[derive(Clone)]
pub struct Services {
    pub domain: DomainServer<DomainService>,
    pub console: ConsoleServer<ConsoleService>,
    pub users: UsersServer<UsersService>,
    pub auth: AuthServer<AuthService>,
    pub admin: AdminServer<AdminService>,
}

impl Service<http::Request<Body>> for Services {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The generated servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let service = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .map_or("", |(service, _)| service);
        match service {
            <DomainServer<DomainService> as NamedService>::NAME => self.domain.call(req),
            <ConsoleServer<ConsoleService> as NamedService>::NAME => self.console.call(req),
            <UsersServer<UsersService> as NamedService>::NAME => self.users.call(req),
            <AuthServer<AuthService> as NamedService>::NAME => self.auth.call(req),
            <AdminServer<AdminService> as NamedService>::NAME => self.admin.call(req),
            _ => {
                let status = status::unknown_service(req.uri().path());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
