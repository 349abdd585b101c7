//! Domain definitions: the TOML a user writes for `vmgate define FILE`, which also travels
//! over gRPC as text and is parsed by the daemon with the same [`DomainDef::parse`], so
//! there is exactly one validation path.
//!
//! This module owns the definition schema ([`DomainDef`], [`Graphics`]), its rules
//! ([`DomainDef::validate`]), its canonical text form ([`DomainDef::to_toml`]) and the UNIX
//! socket path limit ([`check_socket_path`]). It knows nothing about guests' runtime state.
//!
//! The top level holds scalar settings (`machine`, memory, vCPUs, `cdrom`, direct boot's
//! `kernel`/`initrd`/`cmdline`) and each device kind gets its own table or array of tables
//! (`[graphics]`, `[[disk]]`, `[[interface]]`), so new kinds are added as optional fields
//! without reshaping existing files. Errors about one entry of an array name it by its
//! 0-based index (`disk[1].path`).

mod device_rules;
mod devices;
mod error;
mod graphics;
mod position;
mod rules;
mod write;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use uuid::Uuid;

use crate::located;

pub use device_rules::{MAX_PCI_DEVICES, parse_mac};
pub use devices::{
    CDROM_SLOT_INDEX, DEFAULT_MACHINE, DEFAULT_NIC_MODEL, Disk, DiskBus, DiskFormat, IdePlacement,
    IdeSlot, Interface, InterfaceType, ide_slots, place_ide,
};
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
    /// The guest's name: 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`,
    /// neither all digits (an id) nor a UUID.
    pub name: String,
    /// The guest's UUID; the daemon assigns one at define time when unset.
    #[serde(default)]
    pub uuid: Option<Uuid>,
    /// QEMU machine type (`-machine`), e.g. `"pc"` or `"q35"`.
    #[serde(default = "default_machine")]
    pub machine: String,
    /// Guest memory in MiB (1 to 1048576).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Number of virtual CPUs (1 to 255).
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// The guest's console; unset means none.
    #[serde(default)]
    pub graphics: Option<Graphics>,
    /// Disks (`[[disk]]`), in the order the guest's firmware tries to boot them.
    #[serde(default, rename = "disk")]
    pub disks: Vec<Disk>,
    /// An ISO image shown as an IDE CD-ROM, always read-only; booted after the disks.
    #[serde(default)]
    pub cdrom: Option<PathBuf>,
    /// A kernel to boot directly (`-kernel`), instead of the firmware booting a disk.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initial ramdisk for `kernel` (`-initrd`).
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line for `kernel` (`-append`).
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Network interfaces (`[[interface]]`).
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<Interface>,
}

fn default_machine() -> String {
    DEFAULT_MACHINE.to_string()
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
            machine: default_machine(),
            memory_mib: default_memory_mib(),
            vcpus: default_vcpus(),
            graphics: None,
            disks: Vec::new(),
            cdrom: None,
            kernel: None,
            initrd: None,
            cmdline: None,
            interfaces: Vec::new(),
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
        Self::parse_with(text, source, rules::Names::All)
    }

    /// Parses a definition the daemon stored earlier: as [`DomainDef::parse`], except that
    /// a name only [`DomainDef::reserved_name`] objects to is kept, so that a domain defined
    /// before that rule existed still loads. The daemon warns about it instead.
    pub fn parse_stored(text: &str, source: &str) -> Result<DomainDef, DefinitionError> {
        Self::parse_with(text, source, rules::Names::Stored)
    }

    /// Why `name` is refused as a new domain's name because commands would read it as an id
    /// or a UUID, with the fix; `None` if they would not.
    pub fn reserved_name(name: &str) -> Option<String> {
        rules::reserved_shape(name)
    }

    fn parse_with(
        text: &str,
        source: &str,
        names: rules::Names,
    ) -> Result<DomainDef, DefinitionError> {
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
        let mut errors = rules::check(&def, names);
        if errors.is_empty() {
            return Ok(def);
        }
        for error in &mut errors {
            error.position = position::field_position(text, &error.field);
        }
        Err(DefinitionError::Invalid {
            origin: Some(source.to_string()),
            errors,
        })
    }

    /// Checks every rule and reports all violations, each naming its field.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        self.validate_with(rules::Names::All)
    }

    /// [`DomainDef::validate`] for a definition the daemon already holds (to start it, or
    /// to change its console password): a name only [`DomainDef::reserved_name`] objects to
    /// is accepted, as [`DomainDef::parse_stored`] accepts it.
    pub fn validate_stored(&self) -> Result<(), DefinitionError> {
        self.validate_with(rules::Names::Stored)
    }

    fn validate_with(&self, names: rules::Names) -> Result<(), DefinitionError> {
        let errors = rules::check(self, names);
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

    /// Where this definition's IDE devices go (see [`place_ide`]).
    pub fn ide_placement(&self) -> IdePlacement {
        place_ide(&self.machine, &self.disks, self.cdrom.is_some())
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
mod device_tests;
#[cfg(test)]
mod tests;
