//! Domain definitions: the TOML a user writes for `vmgate define FILE`, which also travels
//! over gRPC as text and is parsed by the daemon with the same [`DomainDef::parse`], so
//! there is exactly one validation path.
//!
//! This module owns the definition schema ([`DomainDef`], [`Graphics`]), its rules
//! ([`DomainDef::validate`]), its canonical text form ([`DomainDef::to_toml`]) and the UNIX
//! socket path limit ([`check_socket_path`]). It knows nothing about guests' runtime state.
//!
//! The top level holds scalar settings and each device kind gets its own table or array of
//! tables (`[graphics]` today; `machine`, `[[disk]]`, `[[interface]]`, `kernel`/`initrd`/
//! `cmdline` can be added as optional fields later without reshaping existing files).

mod error;
mod graphics;
mod rules;
mod write;

use std::path::Path;

use serde::Deserialize;
use uuid::Uuid;

use crate::located;

pub use error::{DefinitionError, FieldError, ParseProblem};
pub use graphics::{ConnectedPolicy, Graphics, GraphicsType, SharePolicy};

/// Longest guest name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Most memory a guest may have, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1_048_576;
/// Most vCPUs a guest may have.
pub const MAX_VCPUS: u32 = 255;
/// Longest UNIX socket path in bytes: `sun_path` holds 108 bytes including the final NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A guest definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainDef {
    /// The guest's name: 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
    pub name: String,
    /// The guest's UUID; the daemon assigns one at define time when unset.
    #[serde(default)]
    pub uuid: Option<Uuid>,
    /// Guest memory in MiB (1 to 1048576).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Number of virtual CPUs (1 to 255).
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// The guest's console; unset means none.
    #[serde(default)]
    pub graphics: Option<Graphics>,
}

fn default_memory_mib() -> u64 {
    128
}

fn default_vcpus() -> u32 {
    1
}

impl DomainDef {
    /// A guest with only a name, everything else at its default (for tests and tools).
    pub fn new_minimal(name: impl Into<String>) -> Self {
        DomainDef {
            name: name.into(),
            uuid: None,
            memory_mib: default_memory_mib(),
            vcpus: default_vcpus(),
            graphics: None,
        }
    }

    /// The same definition with `uuid` set.
    pub fn with_uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = Some(uuid);
        self
    }

    /// Parses and validates a definition. `source` names where the text came from (a file
    /// name, or e.g. `<request>`) and starts every error line.
    pub fn parse(text: &str, source: &str) -> Result<DomainDef, DefinitionError> {
        let def: DomainDef = located::parse(text).map_err(|errors| DefinitionError::Parse {
            origin: source.to_string(),
            problems: errors
                .into_iter()
                .map(|e| ParseProblem {
                    position: e.position,
                    key: e.key,
                    message: e.message,
                })
                .collect(),
        })?;
        let mut errors = rules::check(&def);
        if errors.is_empty() {
            return Ok(def);
        }
        for error in &mut errors {
            error.position = located::key_position(text, &error.field);
        }
        Err(DefinitionError::Invalid {
            origin: Some(source.to_string()),
            errors,
        })
    }

    /// Checks every rule and reports all violations, each naming its field.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let errors = rules::check(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DefinitionError::Invalid {
                origin: None,
                errors,
            })
        }
    }

    /// Checks a guest name alone (e.g. a name given on the command line), with the
    /// message `validate` would give.
    pub fn check_name(name: &str) -> Result<(), DefinitionError> {
        rules::check_name(name).map_err(|message| DefinitionError::Invalid {
            origin: None,
            errors: vec![FieldError {
                field: "name".to_string(),
                message,
                position: None,
            }],
        })
    }

    /// Stable, readable TOML that [`DomainDef::parse`] reads back into an equal definition.
    /// Without `include_secrets` the `passwd` line is left out.
    pub fn to_toml(&self, include_secrets: bool) -> String {
        write::to_toml(self, include_secrets)
    }
}

/// Checks that `path` fits in a UNIX socket address: at most 107 bytes, since `sun_path`
/// holds 108 including the terminating NUL.
pub fn check_socket_path(path: &Path) -> Result<(), DefinitionError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(DefinitionError::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
