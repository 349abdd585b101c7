//! The core's errors. Each names the domain and the way out; `rpc::status` maps them to
//! gRPC codes in one place.

use super::state::DomainState;
use crate::{driver::DriverError, store::StoreError, verb::Verb};

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("Domain '{0}' not found (no domain has that name, UUID or id); see vmgate list --all")]
    NoDomain(String),
    #[error("{0}")]
    InvalidDefinition(String),
    #[error(
        "Domain '{name}' already exists with UUID {uuid}; to update it, put uuid = \"{uuid}\" in the definition"
    )]
    NameTaken { name: String, uuid: uuid::Uuid },
    #[error(
        "UUID {uuid} already belongs to domain '{name}'; a definition cannot rename a domain, remove the uuid line to define a new one"
    )]
    UuidTaken { uuid: uuid::Uuid, name: String },
    #[error("Cannot {verb} domain '{name}': it is {state}; {hint}", hint = state.hint(*verb))]
    WrongState {
        name: String,
        state: DomainState,
        verb: Verb,
    },
    #[error(
        "Domain '{name}' did not power off within {secs} s; use --force to destroy it after the timeout"
    )]
    ShutdownTimeout { name: String, secs: u64 },
    #[error("Domain '{name}': {error}")]
    Driver { name: String, error: DriverError },
    #[error("Domain '{name}' runs on host {host}; connect to that host's vmgated")]
    OnAnotherHost { name: String, host: String },
    #[error("Domain '{name}': {message}")]
    Console { name: String, message: String },
    #[error("Domain '{0}' has no console: it is shut off or its definition has no [graphics]")]
    NoConsole(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NoSession(String),
    /// A console ACL rule or SASL user that does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    ConsoleState(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CoreError {
    /// The guest stopped before the operation reached it: the caller's view was stale, the
    /// daemon is not broken.
    pub fn guest_gone(&self) -> bool {
        matches!(
            self,
            CoreError::Driver {
                error: DriverError::Gone,
                ..
            }
        )
    }
}
