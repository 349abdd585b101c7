//! The `Auth` service: SASL logins on an API connection. Each step runs off the async
//! threads (PLAIN runs PBKDF2). The connection's login state comes from `authorize`,
//! which is also what refuses every other call until the login has succeeded.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vmgate_proto::v1::{self as pb, auth_server::Auth};

use super::status;
use crate::auth::{
    login::{ConnLogin, LoginError, Offer},
    sasl::{GSSAPI, SaslError, Step},
};

pub use vmgate_proto::v1::auth_server::AuthServer;

pub struct AuthService;

type Reply<T> = Result<Response<T>, Status>;

/// The login state of the request's connection; None when its transport needs no login.
fn login<T>(req: &Request<T>) -> Option<Arc<ConnLogin>> {
    req.extensions()
        .get::<Option<Arc<ConnLogin>>>()
        .cloned()
        .flatten()
}

fn reply(step: Step, login: &ConnLogin) -> pb::SaslReply {
    pb::SaslReply {
        has_data: step.output.is_some(),
        data: step.output.unwrap_or_default(),
        complete: step.done,
        user: login.user().unwrap_or_default(),
    }
}

/// Runs `f` on the blocking pool. A step that never returned (a panic the SASL layer did
/// not catch) is a failed login to the client, which learns nothing of the cause; the
/// connection's login counts it (see `ConnLogin::step`).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LoginError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => {
            tracing::error!("an API login step ended abnormally: {e}");
            Err(LoginError::Sasl(SaslError::Failed).into())
        }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn mechanisms(&self, req: Request<pb::Empty>) -> Reply<pb::MechanismList> {
        let Some(login) = login(&req).filter(|l| l.user().is_none()) else {
            return Ok(Response::new(pb::MechanismList::default()));
        };
        let (mechanisms, refusal) = match login.offer() {
            Offer::Mechanisms(m) => (m.clone(), String::new()),
            Offer::Refused(why) => (Vec::new(), why.clone()),
        };
        let gssapi_service = if mechanisms.iter().any(|m| m == GSSAPI) {
            login.gssapi_service().to_owned()
        } else {
            String::new()
        };
        Ok(Response::new(pb::MechanismList {
            required: true,
            mechanisms,
            refusal,
            gssapi_service,
        }))
    }

    async fn start(&self, req: Request<pb::SaslStart>) -> Reply<pb::SaslReply> {
        let Some(login) = login(&req) else {
            return Err(status::no_login_needed());
        };
        let req = req.into_inner();
        let input = req.has_data.then_some(req.data);
        let stepped = login.clone();
        let step = blocking(move || stepped.start(&req.mechanism, input.as_deref())).await;
        log_outcome(&login, &step);
        Ok(Response::new(reply(step?, &login)))
    }

    async fn step(&self, req: Request<pb::SaslStep>) -> Reply<pb::SaslReply> {
        let Some(login) = login(&req) else {
            return Err(status::no_login_in_progress());
        };
        let req = req.into_inner();
        let input = req.has_data.then_some(req.data);
        let stepped = login.clone();
        let step = blocking(move || stepped.step(input.as_deref())).await;
        log_outcome(&login, &step);
        Ok(Response::new(reply(step?, &login)))
    }
}

fn log_outcome(login: &ConnLogin, step: &Result<Step, Status>) {
    match step {
        Ok(s) if s.done => {
            tracing::info!(user = login.user().unwrap_or_default(), "API SASL login")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("API SASL login refused: {}", e.message()),
    }
}
