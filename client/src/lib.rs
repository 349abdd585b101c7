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
//! - [`input`]: files the user names (a definition), read within the daemon's size limit.
//! - [`login`]: SASL logins when the daemon asks for one, and the credentials file.
//! - [`output`]: the text and JSON the commands print, as pure functions.
//! - [`pki`]: `vmgate pki`'s certificate authority: CA, server and client certificates, CRLs,
//!   written with safe modes; file work only, no daemon.
//! - [`script`]: splitting shell and stdin lines into arguments.
//!
//! The `vmgate` command itself: [`cli`] (the global options), [`commands`] (one file per
//! command and the clap enum naming them), [`shell`] (one command, the interactive shell,
//! or stdin) and [`session`] (the lazy connection). They are here rather than in the binary
//! so that the man page and completion generator (`packaging/gen`) renders the very clap
//! definitions `vmgate` parses; `src/main.rs` only picks the mode. They are not an API for
//! other programs.

// The command modules name this crate `vmgate::`, as the binary they were written in does.
extern crate self as vmgate;

pub mod cli;
pub mod commands;
pub mod connect;
pub mod console;
pub mod error;
pub mod input;
pub mod login;
pub mod output;
pub mod pki;
pub mod script;
pub mod session;
pub mod shell;
pub mod uri;

pub use connect::{ConnectError, Connection};
pub use error::ClientError;
pub use uri::{ConnectUri, Driver, Transport, UriError};
