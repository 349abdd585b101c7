//! The SASL server vmgate runs for console logins (RFB type 20 and VeNCrypt X509SASL) and
//! API logins: rsasl with SCRAM-SHA-256 and PLAIN, both checked against the one
//! [`UserDb`], and, in builds with the `gssapi` feature, Kerberos (GSSAPI) against a
//! keytab. [`SaslServer`] holds the configuration and which mechanisms are offered; a
//! [`SaslExchange`] is one login, stepped with the client's messages until it ends with
//! the authenticated user name (and for GSSAPI perhaps a security layer) or a refusal.
//!
//! An unknown user is answered exactly like a wrong password: SCRAM is given a decoy
//! record whose salt is derived from the name (stable, so asking twice shows nothing),
//! and the exchange fails at the proof as it would for a known user.
//!
//! A malformed message is a failed login like any other, so that consoles and the API
//! count it and audit it: SCRAM messages are checked against RFC 5802's grammar
//! ([`super::scram`]) before rsasl sees them, because rsasl 2.3.1's SCRAM parser panics on
//! some (`n,,`). Behind that, a panic in a mechanism step is caught and also ends the
//! exchange as [`SaslError::Failed`]; this needs `panic = "unwind"`, which the build
//! enforces below and a test holds every Cargo profile to.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock},
};

use rand::RngCore;
use rsasl::{
    callback::{Context, Request, SessionCallback, SessionData},
    config::SASLConfig,
    mechanisms::scram::properties::ScramStoredPassword,
    mechname::Mechname,
    prelude::{SASLServer, Session, SessionError, State, Validation},
    property::{AuthId, AuthzId, Password},
    validate::{Validate, ValidationError},
};
use sha2_10::{Digest, Sha256};

#[cfg(feature = "gssapi")]
use super::gssapi::{GssExchange, GssapiService};
use super::{
    sasl_layer::{LayerPolicy, SecurityLayer},
    scram::ScramGuard,
    users::{SCRAM_ITERATIONS, UserDb},
};

// With panic = "abort" a client's message that trips a bug in the SASL library would end
// the daemon instead of one login.
#[cfg(not(panic = "unwind"))]
compile_error!("vmgated needs panic = \"unwind\": auth::sasl catches panics of a SASL step");

/// The mechanisms this build implements, strongest first.
#[cfg(feature = "gssapi")]
pub const IMPLEMENTED: &[&str] = &["GSSAPI", "SCRAM-SHA-256", "PLAIN"];
/// The mechanisms this build implements, strongest first.
#[cfg(not(feature = "gssapi"))]
pub const IMPLEMENTED: &[&str] = &["SCRAM-SHA-256", "PLAIN"];

/// The one mechanism with a security layer.
pub const GSSAPI: &str = "GSSAPI";

/// The largest single SASL message accepted from a client (QEMU's limit).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// The authenticated user name, as the validation hands it back.
struct LoginUser;
impl Validation for LoginUser {
    type Value = String;
}

/// Answers rsasl's questions from the user database.
struct UserCallback {
    users: Arc<UserDb>,
}

/// A per-daemon secret that decoy salts are derived from.
fn decoy_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut s = [0; 32];
        rand::rng().fill_bytes(&mut s);
        s
    })
}

/// The authzid, when the client asked to act as someone other than itself.
fn foreign_authzid<'a>(context: &'a Context) -> Option<&'a str> {
    let authzid = context.get_ref::<AuthzId>().filter(|z| !z.is_empty())?;
    match context.get_ref::<AuthId>() {
        Some(authid) if authid == authzid => None,
        _ => Some(authzid),
    }
}

impl SessionCallback for UserCallback {
    fn callback(
        &self,
        _session: &SessionData,
        context: &Context,
        request: &mut Request,
    ) -> Result<(), SessionError> {
        if !request.is::<ScramStoredPassword>() {
            return Ok(());
        }
        let name = context.get_ref::<AuthId>().unwrap_or_default();
        match self.users.get(name) {
            Some(user) => {
                request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                    user.iterations,
                    &user.salt,
                    &user.stored_key,
                    &user.server_key,
                ))?;
            }
            None => {
                let salt = Sha256::new()
                    .chain_update(decoy_secret())
                    .chain_update(name.as_bytes())
                    .finalize();
                let keys = Sha256::new()
                    .chain_update(b"keys")
                    .chain_update(salt)
                    .finalize();
                request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                    SCRAM_ITERATIONS,
                    &salt[..16],
                    &keys,
                    &keys,
                ))?;
            }
        }
        Ok(())
    }

    fn validate(
        &self,
        session: &SessionData,
        context: &Context,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        let Some(name) = context.get_ref::<AuthId>() else {
            return Ok(());
        };
        if foreign_authzid(context).is_some() || self.users.get(name).is_none() {
            return Ok(());
        }
        let proven = match session.mechanism().mechanism.as_str() {
            // SCRAM calls validate only once the client's proof matched the record.
            "SCRAM-SHA-256" => true,
            "PLAIN" => context
                .get_ref::<Password>()
                .is_some_and(|p| self.users.check_password(name, p)),
            _ => false,
        };
        if proven {
            validate.with::<LoginUser, _>(|| Ok(name.to_owned()))?;
        }
        Ok(())
    }
}

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaslError {
    #[error("SASL mechanism {0:?} is not offered here; offered: {1}")]
    NotOffered(String, String),
    /// Wrong user or password; deliberately says no more.
    #[error("authentication failed")]
    Failed,
    /// The client's messages did not follow the mechanism.
    #[error("SASL protocol error: {0}")]
    Protocol(String),
    /// Refused for a reason that is not a guessed secret (a Kerberos ticket that is
    /// expired, for another service, or undecryptable with the keytab); the text is for
    /// the log and audit trail.
    #[error("{0}")]
    Refused(String),
}

/// Where Kerberos logins of one kind (consoles, API) find their key and how they name
/// principals: the `*_sasl_keytab`, `*_sasl_service` and `*_sasl_local_realm` keys.
#[derive(Clone, Debug)]
pub struct KerberosService {
    pub keytab: Option<std::path::PathBuf>,
    pub service: String,
    pub local_realm: Option<String>,
}

/// The SASL configuration shared by every login of one kind (consoles, API).
pub struct SaslServer {
    config: Arc<SASLConfig>,
    offered: Vec<String>,
    users: Arc<UserDb>,
    #[cfg(feature = "gssapi")]
    gssapi: Option<GssapiService>,
}

impl SaslServer {
    /// `offered` is filtered to the implemented mechanisms, keeping the caller's order;
    /// GSSAPI stays only once [`with_gssapi`](Self::with_gssapi) gives it a service.
    pub fn new(users: Arc<UserDb>, offered: &[String]) -> Result<SaslServer, String> {
        let config = SASLConfig::builder()
            .with_defaults()
            .with_callback(UserCallback {
                users: users.clone(),
            })
            .map_err(|e| format!("cannot set up SASL: {e}"))?;
        let offered = offered
            .iter()
            .filter(|m| IMPLEMENTED.contains(&m.as_str()))
            .cloned()
            .collect();
        Ok(SaslServer {
            config,
            offered,
            users,
            #[cfg(feature = "gssapi")]
            gssapi: None,
        })
    }

    /// A server offering `mechanisms`, accepting Kerberos logins as `kerberos` says when
    /// GSSAPI is among them (and the build has it).
    pub fn configured(
        users: Arc<UserDb>,
        mechanisms: &[String],
        kerberos: &KerberosService,
    ) -> Result<SaslServer, String> {
        let server = SaslServer::new(users, mechanisms)?;
        #[cfg(feature = "gssapi")]
        let server = server.with_gssapi(GssapiService::new(
            kerberos.keytab.clone(),
            &kerberos.service,
            kerberos.local_realm.clone(),
        ))?;
        #[cfg(not(feature = "gssapi"))]
        let _ = kerberos;
        Ok(server)
    }

    /// Accepts Kerberos logins for `service` when GSSAPI is among the offered mechanisms;
    /// fails when its keytab cannot be used.
    #[cfg(feature = "gssapi")]
    pub fn with_gssapi(mut self, service: GssapiService) -> Result<SaslServer, String> {
        if self.offers_gssapi() {
            service.check()?;
            self.gssapi = Some(service);
        }
        Ok(self)
    }

    /// The Kerberos service name clients get tickets for; empty without GSSAPI.
    pub fn gssapi_service(&self) -> &str {
        #[cfg(feature = "gssapi")]
        if let Some(service) = &self.gssapi {
            return service.service();
        }
        ""
    }

    /// Whether GSSAPI is offered (and so, in a build with it, a service is set).
    pub fn offers_gssapi(&self) -> bool {
        self.offered.iter().any(|m| m == GSSAPI)
    }

    /// Whether a password mechanism (SCRAM-SHA-256 or PLAIN) is offered.
    pub fn offers_passwords(&self) -> bool {
        self.offered.iter().any(|m| m.as_str() != GSSAPI)
    }

    /// The offered mechanisms that protect a connection without TLS: GSSAPI only.
    pub fn offered_without_tls(&self) -> Vec<String> {
        self.offered
            .iter()
            .filter(|m| m.as_str() == GSSAPI)
            .cloned()
            .collect()
    }

    /// The mechanisms offered, in order.
    pub fn offered(&self) -> &[String] {
        &self.offered
    }

    /// The mechanisms offered on plain TCP to the API: SCRAM only, as PLAIN would send the
    /// password in the clear and GSSAPI's layer cannot wrap HTTP/2.
    pub fn offered_on_plain_tcp(&self) -> Vec<String> {
        self.offered
            .iter()
            .filter(|m| m.as_str() != "PLAIN" && m.as_str() != GSSAPI)
            .cloned()
            .collect()
    }

    pub fn users(&self) -> &Arc<UserDb> {
        &self.users
    }

    /// Starts a login with the mechanism the client chose among `offered`; a security
    /// layer, if the mechanism has one, follows `layers`.
    pub fn start(
        &self,
        mechanism: &str,
        offered: &[String],
        layers: LayerPolicy,
    ) -> Result<SaslExchange, SaslError> {
        let not_offered = || SaslError::NotOffered(mechanism.to_owned(), offered.join(","));
        if !offered.iter().any(|m| m == mechanism) {
            return Err(not_offered());
        }
        #[cfg(feature = "gssapi")]
        if mechanism == GSSAPI {
            let service = self.gssapi.as_ref().ok_or_else(not_offered)?;
            return Ok(SaslExchange {
                mechanism: Mechanism::Gssapi(Box::new(service.start(layers))),
                scram: None,
                finished: false,
                caught_panic: false,
            });
        }
        let _ = layers; // SCRAM and PLAIN have no security layer.
        let name = Mechname::parse(mechanism.as_bytes()).map_err(|_| not_offered())?;
        let session = SASLServer::<LoginUser>::new(self.config.clone())
            .start_suggested(name)
            .map_err(|_| not_offered())?;
        Ok(SaslExchange {
            mechanism: Mechanism::Rsasl(session),
            scram: ScramGuard::for_mechanism(mechanism),
            finished: false,
            caught_panic: false,
        })
    }
}

/// One step's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// Data for the client; None when the mechanism has nothing to send.
    pub output: Option<Vec<u8>>,
    /// The exchange is over: read [`SaslExchange::user`].
    pub done: bool,
}

/// The mechanism a login runs.
enum Mechanism {
    Rsasl(Session<LoginUser>),
    #[cfg(feature = "gssapi")]
    Gssapi(Box<GssExchange>),
}

/// One login in progress.
pub struct SaslExchange {
    mechanism: Mechanism,
    /// The grammar check of a SCRAM login's client messages.
    scram: Option<ScramGuard>,
    finished: bool,
    caught_panic: bool,
}

impl SaslExchange {
    /// Feeds the client's message (None when it sent none) and returns the reply. A
    /// malformed message, or one the mechanism panics on, ends the exchange as
    /// [`SaslError::Failed`], exactly as a wrong password does.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Step, SaslError> {
        if self.finished {
            return Err(SaslError::Protocol("the exchange is already over".into()));
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.step_mechanism(input))) {
            Ok(step) => step,
            Err(_) => {
                // The panic hook has printed where; the message itself stays unlogged.
                tracing::warn!(
                    "a SASL step panicked on a client message; refused as a failed login"
                );
                self.finished = true;
                self.caught_panic = true;
                Err(SaslError::Failed)
            }
        }
    }

    /// Whether a step panicked (and was refused as a failed login).
    pub fn caught_panic(&self) -> bool {
        self.caught_panic
    }

    fn step_mechanism(&mut self, input: Option<&[u8]>) -> Result<Step, SaslError> {
        if let Some(guard) = &mut self.scram
            && let Err(e) = guard.check(input)
        {
            tracing::debug!("SASL login refused: {e}");
            self.finished = true;
            return Err(SaslError::Failed);
        }
        // Without the gssapi feature the match has a single arm.
        #[allow(clippy::infallible_destructuring_match)]
        let session = match &mut self.mechanism {
            Mechanism::Rsasl(session) => session,
            #[cfg(feature = "gssapi")]
            Mechanism::Gssapi(exchange) => {
                let step = exchange.step(input).map_err(SaslError::Refused);
                self.finished = !step.as_ref().is_ok_and(|s| !s.done);
                return step.map(|s| Step {
                    output: s.output,
                    done: s.done,
                });
            }
        };
        let mut output = Vec::new();
        let state = match session.step(input, &mut output) {
            Ok(state) => state,
            // A bad proof or a malformed message both end the exchange as a failure;
            // which one it was is not the client's business.
            Err(SessionError::MechanismError(_)) | Err(SessionError::ValidationError(_)) => {
                self.finished = true;
                return Err(SaslError::Failed);
            }
            Err(e) => {
                self.finished = true;
                return Err(SaslError::Protocol(e.to_string()));
            }
        };
        let sent = state.has_sent_message();
        self.finished = matches!(state, State::Finished(_));
        Ok(Step {
            output: sent.then_some(output),
            done: self.finished,
        })
    }

    /// The authenticated user, once the exchange is over and succeeded.
    pub fn user(&mut self) -> Result<String, SaslError> {
        if !self.finished {
            return Err(SaslError::Protocol("the exchange is not over".into()));
        }
        if self.caught_panic {
            return Err(SaslError::Failed);
        }
        match &mut self.mechanism {
            Mechanism::Rsasl(session) => session.validation().ok_or(SaslError::Failed),
            #[cfg(feature = "gssapi")]
            Mechanism::Gssapi(exchange) => {
                exchange.user().map(str::to_owned).ok_or(SaslError::Failed)
            }
        }
    }

    /// Whether the client may end its messages with any padding byte, not only a NUL:
    /// gtk-vnc copies one byte past each GSSAPI token, whatever it holds. The byte is
    /// counted in the length and carries nothing, so dropping it unread is safe.
    pub fn tolerates_any_padding(&self) -> bool {
        match &self.mechanism {
            Mechanism::Rsasl(_) => false,
            #[cfg(feature = "gssapi")]
            Mechanism::Gssapi(_) => true,
        }
    }

    /// The security layer the login negotiated, taken once; None without one.
    pub fn take_layer(&mut self) -> Option<Box<dyn SecurityLayer>> {
        match &mut self.mechanism {
            Mechanism::Rsasl(_) => None,
            #[cfg(feature = "gssapi")]
            Mechanism::Gssapi(exchange) => exchange
                .take_layer()
                .map(|layer| Box::new(layer) as Box<dyn SecurityLayer>),
        }
    }
}

#[cfg(test)]
mod tests;
