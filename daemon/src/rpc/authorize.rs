//! Authorization, at one point: every call passes here before its handler runs.
//!
//! - [`AuthorizeLayer`], the tower layer in front of every service, reads the connection's
//!   peer, looks the method up in the permission table (`auth::permissions`), refuses what
//!   the connection may not do (no login yet, read-only, polkit's no for its socket or, for
//!   calls on no domain, for the call), and hands the handlers an `Identity` in the request
//!   extensions, plus a `CallAccess` when the polkit access driver is on.
//! - A call on one domain is finished here once its request is decoded: [`domain`] finds
//!   the domain the request names (once), asks the access driver about that domain, and
//!   the handler receives the [`Granted`] domain. Only this module makes a `Granted`, and
//!   the core's operations on one domain take the `core::Target` inside it, so a handler
//!   cannot act on a domain nobody checked. `define` gets a [`GrantedDefinition`]: the
//!   definition parsed once, checked against the domain it names.
//! - `routes!` writes each service's generated trait: a domain method's handler is called
//!   with its `Granted` domain, the others with an [`Unscoped`] token once [`open`] has
//!   made sure the method is not about one domain. A test compares those lists with the
//!   permission table. Calls that list or stream many domains keep only those the caller
//!   may see ([`visible`], [`may_see`]).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{Request, Status, body::Body};
use tower::{Layer, Service};
use vmgate_config::{domain::DomainDef, limits::MAX_DEFINITION_BYTES};
use vmgate_proto::v1 as pb;

use super::{conn::ConnInfo, status};
use crate::{
    auth::{
        Identity, Peer,
        access::{AccessDriver, AccessError, CallAccess, INTERACTIVE_HEADER},
        permissions::{DOMAIN_GETATTR, Object, Permission, permission_for},
    },
    core::{CoreError, DomainView, Manager, Target},
};

/// Methods of the `Auth` service, which are all an unauthenticated connection may call.
const AUTH_SERVICE: &str = "/vmgate.v1.Auth/";

/// Request header by which a client asks to be treated as read-only.
pub const READONLY_HEADER: &str = "vmgate-readonly";

/// The layer; `access` is the polkit access driver when `access_drivers = ["polkit"]`.
#[derive(Clone, Default)]
pub struct AuthorizeLayer {
    pub access: Option<Arc<AccessDriver>>,
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            access: self.access.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    access: Option<Arc<AccessDriver>>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Authorize<S>
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
        return Err(status::unknown_method(&method));
    };
    let Some(conn) = req.extensions().get::<ConnInfo>().cloned() else {
        return Err(status::no_identity());
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
            None => return Err(status::login_first()),
        }
    }
    // A client may ask to be read-only on any transport (`vmgate -r`); it can only lose
    // rights.
    if req.headers().get(READONLY_HEADER).is_some_and(|v| v == "1") {
        identity.readonly = true;
    }
    if identity.readonly() && !permission.is_read_only() {
        return Err(status::read_only(&method, permission));
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
            return Err(AccessError::RemoteRefused.into());
        };
        let call = CallAccess::new(driver, peer.clone(), interactive, permission);
        // A call on a domain is judged once its request names the domain: `domain`.
        if permission.object != Object::Domain {
            call.connect().await?;
        }
        req.extensions_mut().insert(call);
    }
    req.extensions_mut().insert(identity);
    req.extensions_mut().insert(permission);
    Ok(())
}

/// A domain the caller was found allowed this call on: the handler's proof that the check
/// was made. Only [`domain`] makes one.
pub struct Granted(Target);

impl Granted {
    /// The domain, for the core's operations on it.
    pub fn target(&self) -> &Target {
        &self.0
    }
}

/// A definition `define` may store: parsed once, and allowed on the domain it names.
pub struct GrantedDefinition(DomainDef);

impl GrantedDefinition {
    pub fn into_def(self) -> DomainDef {
        self.0
    }
}

/// A request that names one domain.
pub trait NamesDomain {
    fn domain_ref(&self) -> Option<&pb::DomainRef>;
}

impl NamesDomain for pb::DomainRef {
    fn domain_ref(&self) -> Option<&pb::DomainRef> {
        Some(self)
    }
}

/// Requests whose domain is their `domain` field.
macro_rules! domain_field {
    ($($request:ty),* $(,)?) => {
        $(impl NamesDomain for $request {
            fn domain_ref(&self) -> Option<&pb::DomainRef> {
                self.domain.as_ref()
            }
        })*
    };
}

domain_field!(
    pb::ShutdownRequest,
    pb::AutostartRequest,
    pb::DisconnectRequest,
    pb::SetPasswordRequest,
    pb::AuditRequest,
    pb::AclChangeRequest,
);

/// The key of a `DomainRef`, which must not be empty.
pub fn domain_key(r: Option<&pb::DomainRef>) -> Result<&str, Status> {
    match r.map(|r| r.key.trim()) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(status::invalid("A domain name or UUID is required")),
    }
}

/// Finds the domain the request names, once, and checks the call on it under the access
/// driver (its `domain_name` and `domain_uuid` details).
pub async fn domain<T: NamesDomain>(
    req: &Request<T>,
    manager: &Manager,
) -> Result<Granted, Status> {
    let target = manager.find_target(domain_key(req.get_ref().domain_ref())?)?;
    if let Some(access) = req.extensions().get::<CallAccess>() {
        access
            .domain(target.name(), &target.uuid().to_string())
            .await?;
    }
    Ok(Granted(target))
}

/// `define`: parses the definition (refusing one over the size limit first), and checks
/// the call on the domain it names: its UUID when it gives one or the name is taken, else
/// none yet.
pub async fn definition(
    req: &Request<pb::DefineRequest>,
    manager: &Manager,
) -> Result<GrantedDefinition, Status> {
    let define = req.get_ref();
    if define.toml.len() > MAX_DEFINITION_BYTES {
        return Err(status::invalid(format!(
            "The definition is {} bytes; at most {MAX_DEFINITION_BYTES} are accepted",
            define.toml.len()
        )));
    }
    let source = match define.source.as_str() {
        "" => "definition",
        source => source,
    };
    let def = DomainDef::parse(&define.toml, source)
        .map_err(|e| CoreError::InvalidDefinition(e.to_string()))?;
    if let Some(access) = req.extensions().get::<CallAccess>() {
        let uuid = def
            .uuid
            .or_else(|| manager.lookup(&def.name).ok().map(|v| v.uuid))
            .map(|u| u.to_string())
            .unwrap_or_default();
        access.domain(&def.name, &uuid).await?;
    }
    Ok(GrantedDefinition(def))
}

/// What a handler on no domain in particular receives: the proof that `open` let its call
/// through. It also keeps a handler apart from the generated trait method of the same
/// name, which takes the request alone.
pub struct Unscoped(());

/// A method routed without the domain check: refused if the permission table says it is
/// about one domain, or if the request did not pass [`AuthorizeLayer`], so a routing
/// mistake fails closed.
pub fn open<T>(req: &Request<T>, method: &str) -> Result<Unscoped, Status> {
    match req.extensions().get::<Permission>() {
        Some(permission) if permission.object != Object::Domain => Ok(Unscoped(())),
        _ => Err(status::unchecked_domain_method(method)),
    }
}

/// `events --domain`: the UUID of the domain whose events the caller wants; which events
/// it may see is [`may_see`]'s judgement, one event at a time.
pub fn event_domain(
    r: Option<&pb::DomainRef>,
    manager: &Manager,
) -> Result<Option<uuid::Uuid>, Status> {
    match r {
        Some(domain) => Ok(Some(manager.lookup(domain_key(Some(domain))?)?.uuid)),
        None => Ok(None),
    }
}

/// Whether the caller may see the domain `name` (`getattr`): every domain without the
/// access driver.
pub async fn may_see(
    access: Option<&CallAccess>,
    name: &str,
    uuid: &str,
) -> Result<bool, AccessError> {
    match access {
        Some(access) => access.allows(DOMAIN_GETATTR, name, uuid).await,
        None => Ok(true),
    }
}

/// `list`: the domains the caller may `getattr`.
pub async fn visible<T>(
    req: &Request<T>,
    views: Vec<DomainView>,
) -> Result<Vec<DomainView>, Status> {
    let access = req.extensions().get::<CallAccess>();
    if access.is_none() {
        return Ok(views);
    }
    let mut kept = Vec::with_capacity(views.len());
    for view in views {
        if may_see(access, &view.name, &view.uuid.to_string()).await? {
            kept.push(view);
        }
    }
    Ok(kept)
}

/// Writes a generated service trait's impl for `$service`, whose handlers are inherent
/// methods of the same names: those under `domain` take the [`Granted`] domain first,
/// `define` takes the [`GrantedDefinition`], those under `open` take the [`Unscoped`]
/// token first. Each handler's arguments differ from the trait method's, so a missing
/// handler is a compile error, not a call of the trait method by itself.
/// Also lists the routes, for the test that compares them with the permission table.
macro_rules! routes {
    (
        impl $trait:ident for $service:ty {
            $(type $assoc:ident = $assoc_ty:ty;)*
            domain { $($domain_method:ident($domain_req:ty) -> $domain_reply:ty;)* }
            $(define { $define_method:ident($define_req:ty) -> $define_reply:ty; })?
            open { $($open_method:ident($open_req:ty) -> $open_reply:ty;)* }
        }
    ) => {
        #[tonic::async_trait]
        impl $trait for $service {
            $(type $assoc = $assoc_ty;)*
            $(
                async fn $domain_method(
                    &self,
                    req: tonic::Request<$domain_req>,
                ) -> Result<tonic::Response<$domain_reply>, tonic::Status> {
                    let domain = $crate::rpc::authorize::domain(&req, &self.manager).await?;
                    <$service>::$domain_method(self, domain, req).await
                }
            )*
            $(
                async fn $define_method(
                    &self,
                    req: tonic::Request<$define_req>,
                ) -> Result<tonic::Response<$define_reply>, tonic::Status> {
                    let def = $crate::rpc::authorize::definition(&req, &self.manager).await?;
                    <$service>::$define_method(self, def).await
                }
            )?
            $(
                async fn $open_method(
                    &self,
                    req: tonic::Request<$open_req>,
                ) -> Result<tonic::Response<$open_reply>, tonic::Status> {
                    let open = $crate::rpc::authorize::open(&req, stringify!($open_method))?;
                    <$service>::$open_method(self, open, req).await
                }
            )*
        }

        #[cfg(test)]
        impl $service {
            /// The methods that get a checked domain (`define` included), in snake case.
            pub const DOMAIN_ROUTES: &[&str] = &[
                $(stringify!($domain_method),)* $(stringify!($define_method),)?
            ];
            /// The methods that do not.
            pub const OPEN_ROUTES: &[&str] = &[$(stringify!($open_method)),*];
        }
    };
}
pub(crate) use routes;

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    use std::collections::BTreeSet;

    use tonic::server::NamedService;
    use vmgate_proto::v1::{console_server::ConsoleServer, domain_server::DomainServer};

    use crate::{
        auth::permissions,
        rpc::{console::ConsoleService, domain::DomainService},
    };

    /// `/vmgate.v1.Domain/SetAutostart` for `set_autostart` of `vmgate.v1.Domain`.
    fn path(service: &str, method: &str) -> String {
        let camel: String = method
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        format!("/{service}/{camel}")
    }

    fn routes(service: &str, methods: &[&str]) -> BTreeSet<String> {
        methods.iter().map(|m| path(service, m)).collect()
    }

    #[test]
    fn exactly_the_methods_on_a_domain_are_routed_through_the_domain_check() {
        let domain = <DomainServer<DomainService> as NamedService>::NAME;
        let console = <ConsoleServer<ConsoleService> as NamedService>::NAME;
        let mut checked = routes(domain, DomainService::DOMAIN_ROUTES);
        checked.extend(routes(console, ConsoleService::DOMAIN_ROUTES));
        let mut unchecked = routes(domain, DomainService::OPEN_ROUTES);
        unchecked.extend(routes(console, ConsoleService::OPEN_ROUTES));
        let on_a_domain: BTreeSet<String> = permissions::table()
            .iter()
            .filter(|(_, p)| p.object == Object::Domain)
            .map(|(method, _)| (*method).to_owned())
            .collect();
        assert_eq!(checked, on_a_domain);
        for method in &unchecked {
            let permission = permission_for(method).expect("in the table");
            assert_ne!(permission.object, Object::Domain, "{method}");
        }
    }

    #[test]
    fn a_domain_method_routed_without_its_check_is_refused() {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(permission_for("/vmgate.v1.Domain/Start").expect("known"));
        let status = open(&req, "start").err().expect("refused");
        assert_eq!(status.code(), tonic::Code::Internal);
        let unauthorized = Request::new(());
        assert!(
            open(&unauthorized, "list").is_err(),
            "no permission: refused"
        );
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(permission_for("/vmgate.v1.Domain/List").expect("known"));
        assert!(open(&req, "list").is_ok(), "a call on no domain passes");
    }
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
