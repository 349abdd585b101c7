//! SASL logins on API connections: which mechanisms a transport may offer, the state of
//! one connection's login, and `sasl_allowed_username_list`. A connection whose
//! transport is configured with `auth_* = "sasl"` starts logged out; the `Auth` service
//! steps its exchange; the auth layer lets nothing else through until it has succeeded.
//!
//! Policy, as libvirt's: PLAIN is offered only on UNIX sockets and inside TLS, never on
//! plain TCP. SCRAM has no security layer, so on plain TCP it is offered only with
//! `tcp_min_ssf = 0` (a test setup); otherwise the connection is told that TCP has no
//! security layer and to use TLS.

use std::sync::{Arc, Mutex, PoisonError};

use vmgate_config::{AuthKind, DaemonConfig, x509::glob_match};

use super::{
    Peer,
    sasl::{SaslError, SaslExchange, SaslServer, Step},
    sasl_layer::LayerPolicy,
};

/// Failed logins one connection may make before it is refused for good.
pub const MAX_FAILURES: u32 = 3;

/// How a connection's transport asks clients to authenticate.
#[derive(Clone)]
pub struct LoginPolicy {
    server: Arc<SaslServer>,
    allowed_users: Option<Arc<Vec<String>>>,
}

/// What one transport offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    Mechanisms(Vec<String>),
    /// No mechanism is safe here; the text says why and what to do.
    Refused(String),
}

impl LoginPolicy {
    pub fn new(server: Arc<SaslServer>, allowed_users: Option<Vec<String>>) -> LoginPolicy {
        LoginPolicy {
            server,
            allowed_users: allowed_users.map(Arc::new),
        }
    }

    /// The offer on a UNIX socket or inside TLS: every configured mechanism.
    pub fn secure_offer(&self) -> Offer {
        Offer::Mechanisms(self.server.offered().to_vec())
    }

    /// The offer on plain TCP with `tcp_min_ssf`.
    pub fn tcp_offer(&self, min_ssf: u32) -> Offer {
        if min_ssf > 0 {
            return Offer::Refused(format!(
                "plain TCP has no security layer (SCRAM-SHA-256 gives none and tcp_min_ssf is \
                 {min_ssf}); use TLS instead (qemu+tls://HOST/system), or set tcp_min_ssf = 0 \
                 on the daemon for test setups"
            ));
        }
        Offer::Mechanisms(self.server.offered_on_plain_tcp())
    }

    /// Whether `user` may log in (`sasl_allowed_username_list`; absent = anyone who
    /// authenticates, empty = nobody).
    fn allows(&self, user: &str) -> bool {
        self.allowed_users
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| glob_match(p, user)))
    }
}

/// Which connections must log in, by transport (`auth_unix_rw`, `auth_unix_ro`,
/// `auth_tcp`, `auth_tls`).
pub struct Logins {
    policy: LoginPolicy,
    unix_rw: bool,
    unix_ro: bool,
    tcp: bool,
    tls: bool,
    tcp_min_ssf: u32,
}

impl Logins {
    /// None when no transport uses SASL.
    pub fn from_config(daemon: &DaemonConfig, server: Arc<SaslServer>) -> Option<Logins> {
        let sasl = |kind: AuthKind| kind == AuthKind::Sasl;
        let logins = Logins {
            policy: LoginPolicy::new(server, daemon.sasl_allowed_username_list.clone()),
            unix_rw: sasl(daemon.auth_unix_rw),
            unix_ro: sasl(daemon.auth_unix_ro),
            tcp: sasl(daemon.auth_tcp),
            tls: sasl(daemon.auth_tls),
            tcp_min_ssf: daemon.tcp_min_ssf,
        };
        (logins.unix_rw || logins.unix_ro || logins.tcp || logins.tls).then_some(logins)
    }

    /// The login a new connection from `peer` must make, if any.
    pub fn for_peer(&self, peer: &Peer) -> Option<Arc<ConnLogin>> {
        let offer = match peer {
            Peer::Unix(p) if p.readonly && self.unix_ro => self.policy.secure_offer(),
            Peer::Unix(p) if !p.readonly && self.unix_rw => self.policy.secure_offer(),
            Peer::Tls { .. } if self.tls => self.policy.secure_offer(),
            Peer::Tcp { .. } if self.tcp => self.policy.tcp_offer(self.tcp_min_ssf),
            _ => return None,
        };
        Some(Arc::new(ConnLogin::new(self.policy.clone(), offer)))
    }
}

/// Why a login call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("{0}")]
    Sasl(#[from] SaslError),
    #[error("{0}")]
    Refused(String),
    #[error("user {0:?} authenticated but is not in sasl_allowed_username_list")]
    NotAllowed(String),
    #[error("no login is in progress; call Auth.Start first")]
    NotStarted,
    #[error("this connection is already authenticated")]
    AlreadyDone,
    #[error("too many failed logins on this connection; reconnect to try again")]
    TooManyFailures,
}

enum State {
    Idle {
        failures: u32,
    },
    Running {
        exchange: SaslExchange,
        failures: u32,
    },
    Done {
        user: String,
    },
}

/// The login state of one connection.
pub struct ConnLogin {
    policy: LoginPolicy,
    offer: Offer,
    state: Mutex<State>,
}

impl ConnLogin {
    pub fn new(policy: LoginPolicy, offer: Offer) -> ConnLogin {
        ConnLogin {
            policy,
            offer,
            state: Mutex::new(State::Idle { failures: 0 }),
        }
    }

    /// The Kerberos service of GSSAPI logins; empty without GSSAPI.
    pub fn gssapi_service(&self) -> &str {
        self.policy.server.gssapi_service()
    }

    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// The user the connection logged in as, once it has.
    pub fn user(&self) -> Option<String> {
        match &*self.lock() {
            State::Done { user } => Some(user.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a login and runs its first step.
    pub fn start(&self, mechanism: &str, input: Option<&[u8]>) -> Result<Step, LoginError> {
        let offered = match &self.offer {
            Offer::Mechanisms(m) => m,
            Offer::Refused(why) => return Err(LoginError::Refused(why.clone())),
        };
        let failures = match &*self.lock() {
            State::Done { .. } => return Err(LoginError::AlreadyDone),
            State::Idle { failures } | State::Running { failures, .. } => *failures,
        };
        if failures >= MAX_FAILURES {
            return Err(LoginError::TooManyFailures);
        }
        let exchange = self
            .policy
            .server
            .start(mechanism, offered, LayerPolicy::NoneOnly)?;
        *self.lock() = State::Running { exchange, failures };
        self.step(input)
    }

    /// Feeds the client's next message. Runs PBKDF2 for PLAIN: call it off the async
    /// threads.
    pub fn step(&self, input: Option<&[u8]>) -> Result<Step, LoginError> {
        let mut state = self.lock();
        // While a step runs it counts as failed: should it never return (a panic), the
        // failure stays on the books rather than resetting the connection's count.
        let counted = match &*state {
            State::Running { failures, .. } | State::Idle { failures } => {
                failures.saturating_add(1)
            }
            State::Done { .. } => 0,
        };
        let (mut exchange, failures) =
            match std::mem::replace(&mut *state, State::Idle { failures: counted }) {
                State::Running { exchange, failures } => (exchange, failures),
                State::Done { user } => {
                    *state = State::Done { user };
                    return Err(LoginError::AlreadyDone);
                }
                State::Idle { failures } => {
                    *state = State::Idle { failures };
                    return Err(LoginError::NotStarted);
                }
            };
        let failed = |state: &mut State, e: LoginError| {
            *state = State::Idle {
                failures: failures + 1,
            };
            Err(e)
        };
        let step = match exchange.step(input) {
            Ok(step) => step,
            Err(e) => return failed(&mut state, e.into()),
        };
        if !step.done {
            *state = State::Running { exchange, failures };
            return Ok(step);
        }
        let user = match exchange.user() {
            Ok(user) => user,
            Err(e) => return failed(&mut state, e.into()),
        };
        if !self.policy.allows(&user) {
            return failed(&mut state, LoginError::NotAllowed(user));
        }
        *state = State::Done { user };
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::{UserDb, make_record};

    fn policy(allowed: Option<Vec<String>>) -> LoginPolicy {
        let users = Arc::new(UserDb::new(vec![make_record("alice", b"pw")]));
        let server =
            SaslServer::new(users, &["SCRAM-SHA-256".into(), "PLAIN".into()]).expect("server");
        LoginPolicy::new(Arc::new(server), allowed)
    }

    #[test]
    fn plain_tcp_never_offers_plain_and_needs_min_ssf_zero() {
        let p = policy(None);
        assert!(matches!(p.tcp_offer(56), Offer::Refused(why) if why.contains("TLS")));
        assert_eq!(
            p.tcp_offer(0),
            Offer::Mechanisms(vec!["SCRAM-SHA-256".into()])
        );
        let login = ConnLogin::new(p.clone(), p.tcp_offer(0));
        assert!(matches!(
            login.start("PLAIN", Some(b"\0alice\0pw")),
            Err(LoginError::Sasl(SaslError::NotOffered(..)))
        ));
    }

    #[test]
    fn plain_login_then_done_and_the_allow_list_applies() {
        let p = policy(Some(vec!["ali*".into()]));
        let login = ConnLogin::new(p.clone(), p.secure_offer());
        assert!(login.start("PLAIN", Some(b"\0alice\0pw")).expect("ok").done);
        assert_eq!(login.user().as_deref(), Some("alice"));
        assert_eq!(
            login.start("PLAIN", Some(b"\0alice\0pw")),
            Err(LoginError::AlreadyDone)
        );

        let p = policy(Some(vec![]));
        let login = ConnLogin::new(p.clone(), p.secure_offer());
        assert_eq!(
            login.start("PLAIN", Some(b"\0alice\0pw")),
            Err(LoginError::NotAllowed("alice".into()))
        );
        assert_eq!(login.user(), None);
    }

    #[test]
    fn failures_are_bounded_per_connection() {
        let p = policy(None);
        let login = ConnLogin::new(p.clone(), p.secure_offer());
        for _ in 0..MAX_FAILURES {
            assert!(login.start("PLAIN", Some(b"\0alice\0no")).is_err());
        }
        assert_eq!(
            login.start("PLAIN", Some(b"\0alice\0pw")),
            Err(LoginError::TooManyFailures)
        );
    }

    #[test]
    fn malformed_scram_messages_are_failed_logins_that_count() {
        let p = policy(None);
        let login = ConnLogin::new(p.clone(), p.secure_offer());
        for msg in [b"n,,".as_slice(), b"n,,n=alice,", b"n,a,n=alice,r=abc"] {
            assert_eq!(
                login.start("SCRAM-SHA-256", Some(msg)),
                Err(LoginError::Sasl(SaslError::Failed))
            );
        }
        for msg in [b"n,,n".as_slice(), b"n,,n=alice,r"] {
            assert_eq!(
                login.start("SCRAM-SHA-256", Some(msg)),
                Err(LoginError::TooManyFailures)
            );
        }
        assert_eq!(login.user(), None);
    }
}
