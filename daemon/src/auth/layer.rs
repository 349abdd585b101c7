//! The tower layer in front of every gRPC service: it reads the connection's peer, looks
//! the method up in the permission table, refuses what the connection may not do (no
//! login yet, read-only, polkit's no), and hands the handlers an `Identity` in the
//! request extensions, plus a `CallAccess` when the polkit access driver is on.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{Status, body::Body};
use tower::{Layer, Service};

use super::{
    Identity, Peer,
    access::{AccessDriver, CallAccess, INTERACTIVE_HEADER, remote_refused},
    permissions::{Object, permission_for},
};
use crate::rpc::conn::ConnInfo;

/// Methods of the `Auth` service, which are all an unauthenticated connection may call.
const AUTH_SERVICE: &str = "/vmgate.v1.Auth/";

/// Request header by which a client asks to be treated as read-only.
pub const READONLY_HEADER: &str = "vmgate-readonly";

/// The layer; `access` is the polkit access driver when `access_drivers = ["polkit"]`.
#[derive(Clone, Default)]
pub struct AuthLayer {
    pub access: Option<Arc<AccessDriver>>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            access: self.access.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    access: Option<Arc<AccessDriver>>,
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
        let access = self.access.clone();
        Box::pin(async move {
            match authorize(&mut req, access).await {
                Ok(()) => inner.call(req).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// Decides whether the request may reach its handler.
async fn authorize<B>(
    req: &mut http::Request<B>,
    access: Option<Arc<AccessDriver>>,
) -> Result<(), Status> {
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
    let interactive = req
        .headers()
        .get(INTERACTIVE_HEADER)
        .is_some_and(|v| v == "1");
    if let (Some(check), Peer::Unix(peer)) = (&conn.polkit, &identity.peer) {
        check.check(peer, interactive).await?;
    }
    if let Some(driver) = access {
        let Peer::Unix(peer) = &identity.peer else {
            return Err(remote_refused());
        };
        let call = CallAccess::new(driver, peer.clone(), interactive, permission);
        // A domain's call is judged by its handler, which knows the domain.
        if permission.object != Object::Domain {
            call.connect().await?;
        }
        req.extensions_mut().insert(call);
    }
    req.extensions_mut().insert(identity);
    req.extensions_mut().insert(permission);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::auth::polkit::Polkit;

    fn request(peer: Peer, method: &str) -> http::Request<()> {
        let mut req = http::Request::builder()
            .uri(method)
            .body(())
            .expect("request");
        req.extensions_mut().insert(ConnInfo {
            peer,
            login: None,
            polkit: None,
        });
        req
    }

    #[tokio::test]
    async fn under_the_polkit_access_driver_remote_callers_are_refused_before_polkit() {
        // No bus is reachable here: the refusal must come before any question to polkit.
        let driver = Arc::new(AccessDriver {
            polkit: Arc::new(Polkit::new()),
            connect_driver: "Test",
        });
        let tls = Peer::Tls {
            addr: SocketAddr::from(([192, 0, 2, 7], 50412)),
            dn: Some("CN=client1".into()),
        };
        let mut req = request(tls, "/vmgate.v1.Domain/List");
        let status = authorize(&mut req, Some(driver))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status
                .message()
                .contains("polkit can only judge local processes"),
            "{}",
            status.message()
        );
        let tls = Peer::Tls {
            addr: SocketAddr::from(([192, 0, 2, 7], 50412)),
            dn: Some("CN=client1".into()),
        };
        let mut req = request(tls, "/vmgate.v1.Domain/List");
        authorize(&mut req, None)
            .await
            .expect("allowed without the driver");
    }
}
