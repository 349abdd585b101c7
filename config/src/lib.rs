//! vmgate's configuration schemas, shared by the daemon (`vmgated`) and the CLI (`vmgate`):
//! the daemon config file and domain definitions, each parsed first and validated second.
//!
//! This crate owns what the files mean: key names (libvirt's, so settings carry over by
//! name), defaults, one-line parse errors that name file, line, column and key, and every
//! validation rule, so the daemon's `--check-config`, its start-up and its API all judge a
//! config or a definition the same way. It performs no I/O beyond reading the files a config
//! names, creates nothing, and knows nothing of gRPC, SQL or processes.
//!
//! # Layout
//!
//! - `load`: [`Config`], [`load`] and [`parse_str`]; relative paths become relative to the
//!   config file's directory.
//! - `daemon`, `storage`, `vnc`, `qemu`: one section each, schema and defaults.
//! - `values`: [`Secret`], [`SocketMode`], the enums, and the one boolean deserializer that
//!   also takes libvirt's `0`/`1`.
//! - `validate`: [`validate`] and [`Supported`] (which features this build can honour).
//! - `diag`: [`Diagnostic`], [`Report`], [`ConfigError`], [`ConfigErrors`].
//! - `located`: toml error spans turned into `line:column` and key names.
//! - [`acl`]: per-guest console ACL rules and the decision over them.
//! - [`domain`]: guest definitions ([`domain::DomainDef`]), one parse-and-validate path for
//!   files and API requests.
//! - [`limits`]: request sizes the daemon accepts, which the CLI checks first.
//!
//! # Example configs
//!
//! `config/vmgated.toml` documents every key with its default; `config/local.toml` runs the
//! daemon without root using the test driver. Both are checked by this crate's tests.

pub mod acl;
mod daemon;
mod diag;
pub mod domain;
pub mod limits;
mod load;
mod located;
mod qemu;
mod storage;
mod validate;
mod values;
mod vnc;
pub mod x509;

pub use daemon::{DEFAULT_CRL_FILE, DaemonConfig};
pub use diag::{ConfigError, ConfigErrors, Diagnostic, Report};
pub use load::{Config, Loaded, load, parse_str};
pub use qemu::QemuConfig;
pub use storage::StorageConfig;
pub use validate::{Supported, validate};
pub use values::{AccessDriver, AclDefault, AuthKind, DriverKind, Secret, SocketMode};
pub use vnc::{FIPS_ENABLED_FILE, VncConfig};

/// Default path of the daemon config file (`--config PATH` overrides it).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vmgate/vmgated.toml";

#[cfg(test)]
mod examples_tests;
