//! vmgate's client library: what the `vmgate` CLI and the integration tests share.
//!
//! - [`uri`]: libvirt-style connection URIs (`qemu:///system`, `test+unix:///default?socket=..`),
//!   parsed into a typed [`ConnectUri`] and printed back in canonical form.
//! - [`connect`]: opening a checked [`Connection`] to vmgated (one submodule per transport);
//!   the version handshake happens at open, so failures surface there with their fix.
//! - [`console`]: what the console commands (`vncdisplay`, `vnc-passwd`, `audit`, ...) check
//!   and print, as pure functions.
//! - [`error`]: [`ClientError`] and how a `tonic::Status` reads (daemon refusal vs. lost
//!   connection).
//! - [`login`]: SASL logins when the daemon asks for one, and the credentials file.
//! - [`output`]: the text and JSON the commands print, as pure functions.
//! - [`pki`]: `vmgate pki`'s certificate authority: CA, server and client certificates, CRLs,
//!   written with safe modes; file work only, no daemon.
//! - [`script`]: splitting shell and stdin lines into arguments.
//!
//! Command-line parsing and the commands themselves live in the binary (`src/commands/`).

pub mod connect;
pub mod console;
pub mod error;
pub mod login;
pub mod output;
pub mod pki;
pub mod script;
pub mod uri;

pub use connect::{ConnectError, Connection};
pub use error::ClientError;
pub use uri::{ConnectUri, Driver, Transport, UriError};
