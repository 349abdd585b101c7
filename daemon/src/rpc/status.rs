//! Every gRPC status the daemon answers is built here: the one mapping from the daemon's
//! errors to status codes, and the texts of the refusals the API layer makes itself. A
//! test (`layers`) keeps `tonic::Status` from being built anywhere else.

use tonic::{Code, Status};

use crate::{
    auth::{access::AccessError, login::LoginError, permissions::Permission, sasl::SaslError},
    core::CoreError,
    reload::ReloadError,
};

impl From<CoreError> for Status {
    fn from(err: CoreError) -> Status {
        let code = match &err {
            CoreError::NoDomain(_) => Code::NotFound,
            CoreError::InvalidDefinition(_) => Code::InvalidArgument,
            CoreError::NameTaken { .. } | CoreError::UuidTaken { .. } => Code::AlreadyExists,
            CoreError::WrongState { .. } | CoreError::OnAnotherHost { .. } => {
                Code::FailedPrecondition
            }
            CoreError::ShutdownTimeout { .. } => Code::DeadlineExceeded,
            CoreError::Driver { .. } if err.guest_gone() => Code::FailedPrecondition,
            CoreError::Driver { .. } => Code::Internal,
            CoreError::NoSession(_) | CoreError::NotFound(_) => Code::NotFound,
            CoreError::AlreadyExists(_) => Code::AlreadyExists,
            CoreError::InvalidRequest(_) => Code::InvalidArgument,
            CoreError::Console { .. } | CoreError::NoConsole(_) | CoreError::ConsoleState(_) => {
                Code::FailedPrecondition
            }
            CoreError::Store(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!("internal error: {err}");
        }
        Status::new(code, err.to_string())
    }
}

impl From<ReloadError> for Status {
    fn from(err: ReloadError) -> Status {
        let code = match &err {
            ReloadError::NothingToReload | ReloadError::Failed { .. } => Code::FailedPrecondition,
            ReloadError::Interrupted(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

impl From<AccessError> for Status {
    fn from(err: AccessError) -> Status {
        let code = match &err {
            AccessError::Denied(_) | AccessError::RemoteRefused => Code::PermissionDenied,
            AccessError::Unavailable(_) => Code::Unavailable,
        };
        Status::new(code, err.to_string())
    }
}

/// What an API client hears when its Kerberos login is refused.
const KERBEROS_REFUSED: &str = "Kerberos authentication failed (the daemon's log has the reason; check the ticket with \
     klist)";

impl From<LoginError> for Status {
    fn from(err: LoginError) -> Status {
        let code = match &err {
            LoginError::Sasl(SaslError::NotOffered(..))
            | LoginError::Refused(_)
            | LoginError::NotStarted
            | LoginError::AlreadyDone => Code::FailedPrecondition,
            LoginError::NotAllowed(_) => Code::PermissionDenied,
            LoginError::Sasl(SaslError::Protocol(_)) => Code::InvalidArgument,
            // Why Kerberos refused (the ticket's target, the keytab's trouble) is for the
            // log, not for a client that has not authenticated.
            LoginError::Sasl(SaslError::Refused(reason)) => {
                tracing::warn!("API Kerberos login refused: {reason}");
                return Status::unauthenticated(KERBEROS_REFUSED);
            }
            LoginError::Sasl(SaslError::Failed) | LoginError::TooManyFailures => {
                Code::Unauthenticated
            }
        };
        Status::new(code, err.to_string())
    }
}

/// A request field that failed conversion.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// A method the permission table does not know.
pub fn unknown_method(method: &str) -> Status {
    Status::unimplemented(format!("Unknown method {method}"))
}

/// A path naming none of the API's services.
pub fn unknown_service(path: &str) -> Status {
    Status::unimplemented(format!(
        "Unknown service in {path}; is the client newer than this vmgated?"
    ))
}

/// A request that came without the connection's identity (a transport bug).
pub fn no_identity() -> Status {
    Status::unauthenticated("The connection has no identity")
}

/// A call before the SASL login its transport asks for.
pub fn login_first() -> Status {
    Status::unauthenticated(
        "This connection must log in first: vmgated asks for a SASL login on it \
         (auth_* = \"sasl\"); vmgate does so when it connects",
    )
}

/// A read-only connection calling a method that needs more.
pub fn read_only(method: &str, permission: Permission) -> Status {
    Status::permission_denied(format!(
        "This connection is read-only and {method} needs {permission}; connect without -r (the read-write socket) to use it"
    ))
}

/// A domain-scoped method that reached its handler without the per-domain check: refused
/// rather than run unchecked (the routing of `rpc::authorize` and the permission table
/// disagree).
pub fn unchecked_domain_method(method: &str) -> Status {
    tracing::error!("{method} is domain-scoped but not routed through the domain check");
    Status::internal(format!(
        "{method} cannot be authorized by this vmgated; please report this"
    ))
}

/// A login step on a connection whose transport needs no login.
pub fn no_login_needed() -> Status {
    Status::failed_precondition("this connection needs no login (its auth setting is \"none\")")
}

/// A login step with no login started.
pub fn no_login_in_progress() -> Status {
    Status::failed_precondition("no login is in progress")
}

/// What a stream hears when the daemon stops.
pub fn shutting_down() -> Status {
    Status::unavailable("vmgated is shutting down")
}

/// A call that outlived the deadline its client sent (`grpc-timeout`).
pub fn deadline_passed() -> Status {
    Status::cancelled("Timeout expired")
}

/// A connection over an admission limit; `why` names the limit and the way out.
pub fn too_many_clients(why: String) -> Status {
    Status::resource_exhausted(why)
}
