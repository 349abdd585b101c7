//! The tower layer in front of every gRPC service: it reads the connection's peer, looks
//! the method up in the permission table, refuses what the connection may not do, and
//! hands the handlers an `Identity` in the request extensions.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Status, body::Body};
use tower::{Layer, Service};

use super::{Identity, permissions::permission_for};
use crate::rpc::conn::ConnInfo;

/// Methods of the `Auth` service, which are all an unauthenticated connection may call.
const AUTH_SERVICE: &str = "/vmgate.v1.Auth/";

/// Request header by which a client asks to be treated as read-only.
pub const READONLY_HEADER: &str = "vmgate-readonly";

#[derive(Clone, Debug, Default)]
pub struct AuthLayer;

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match authorize(&mut req) {
            Ok(()) => Box::pin(inner.call(req)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

/// Decides whether the request may reach its handler.
fn authorize<B>(req: &mut http::Request<B>) -> Result<(), Status> {
    let method = req.uri().path().to_owned();
    let Some(permission) = permission_for(&method) else {
        return Err(Status::unimplemented(format!("Unknown method {method}")));
    };
    let Some(conn) = req.extensions().get::<ConnInfo>().cloned() else {
        return Err(Status::unauthenticated("The connection has no identity"));
    };
    if method.starts_with(AUTH_SERVICE) {
        // Logging in is what an unauthenticated connection may do, and all it may do.
        req.extensions_mut().insert(conn.login);
        return Ok(());
    }
    let mut identity = Identity::of(conn.peer);
    if let Some(login) = &conn.login {
        match login.user() {
            Some(user) => identity.user = Some(user),
            None => {
                return Err(Status::unauthenticated(
                    "This connection must log in first: vmgated asks for a SASL login on it \
                     (auth_* = \"sasl\"); vmgate does so when it connects",
                ));
            }
        }
    }
    // A client may ask to be read-only on any transport (`vmgate -r`); it can only lose
    // rights.
    if req.headers().get(READONLY_HEADER).is_some_and(|v| v == "1") {
        identity.readonly = true;
    }
    if identity.readonly() && !permission.is_read_only() {
        return Err(Status::permission_denied(format!(
            "This connection is read-only and {method} needs {permission}; connect without -r (the read-write socket) to use it"
        )));
    }
    req.extensions_mut().insert(identity);
    req.extensions_mut().insert(permission);
    Ok(())
}
