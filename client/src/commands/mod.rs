//! The commands, one file each (the near-identical lifecycle verbs share `lifecycle.rs`), and
//! the clap `Command` enum that names them. Each command takes its parsed arguments and the
//! session, and returns the text to print; it never prints itself, so the shell decides where
//! output and errors go. A command that prints as it goes (`event`) writes through the
//! shell's [`Live`] instead.

mod admin;
mod audit;
mod autostart;
mod console_acl;
mod console_disconnect;
mod console_sessions;
mod define;
mod domdisplay;
mod dominfo;
mod domstate;
mod dumpconf;
mod event;
mod lifecycle;
mod list;
mod lookup;
mod pki;
mod sasl_user;
mod undefine;
mod uri;
mod version;
mod vnc_passwd;
mod vncdisplay;

use clap::{Args, Subcommand};
use vmgate::ClientError;
use vmgate_proto::v1::{DomainInfo, DomainRef, DomainSummary};

use crate::session::Session;
use lifecycle::Verb;

/// The commands, as `vmgate COMMAND`, shell lines and stdin lines spell them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List domains (running and paused ones unless --all or --inactive)
    List(list::ListArgs),
    /// Define (create or update) a domain from a TOML file
    Define(define::DefineArgs),
    /// Remove a domain's definition
    Undefine(DomainArg),
    /// Start a defined domain
    Start(DomainArg),
    /// Ask a domain to power off (ACPI), and return at once unless --wait
    Shutdown(lifecycle::ShutdownArgs),
    /// Stop a domain at once, as pulling the plug
    Destroy(DomainArg),
    /// Ask a domain to reboot (guest-cooperative)
    Reboot(DomainArg),
    /// Reset a domain at once, as pressing the reset button
    Reset(DomainArg),
    /// Pause a running domain
    Suspend(DomainArg),
    /// Continue a paused domain
    Resume(DomainArg),
    /// Show a domain's information
    Dominfo(dominfo::DominfoArgs),
    /// Show a domain's state
    Domstate(domstate::DomstateArgs),
    /// Show a domain's UUID
    Domuuid(DomainArg),
    /// Show the name of the domain with this UUID
    Domname(lookup::DomnameArgs),
    /// Show a domain's definition as TOML
    Dumpconf(dumpconf::DumpconfArgs),
    /// Set whether a domain starts when vmgated starts
    Autostart(autostart::AutostartArgs),
    /// Print domain events as they happen (the first one, or all with --loop)
    Event(event::EventArgs),
    /// Show a running domain's VNC display (HOST:DISPLAY, or the socket path)
    Vncdisplay(DomainArg),
    /// Show a running domain's console as a URI (vnc://HOST:DISPLAY)
    Domdisplay(DomainArg),
    /// List the open sessions of a domain's console
    ConsoleSessions(console_sessions::ConsoleSessionsArgs),
    /// Cut one session of a domain's console
    ConsoleDisconnect(console_disconnect::ConsoleDisconnectArgs),
    /// Change a domain's VNC password (prompted for, or read with --password-stdin)
    VncPasswd(vnc_passwd::VncPasswdArgs),
    /// Show or change who may use a domain's console (users and certificate DNs)
    ConsoleAcl(console_acl::ConsoleAclArgs),
    /// Manage the SASL users who log in to consoles (add, passwd, del, list)
    SaslUser(sasl_user::SaslUserArgs),
    /// Show the console audit trail (connections, logins, disconnects, changes)
    Audit(audit::AuditArgs),
    /// Make a CA, server and client certificates, and CRLs for TLS (no daemon needed)
    Pki(pki::PkiArgs),
    /// Show the client's, the daemon's and the hypervisor's versions
    Version,
    /// Administer the daemon (reload-tls)
    Admin(admin::AdminArgs),
    /// Show the connection URI in canonical form
    Uri,
    /// Leave the shell
    #[command(alias = "exit")]
    Quit,
}

/// A command's one positional argument: a domain's name or UUID.
#[derive(Debug, Args)]
pub struct DomainArg {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
}

/// Where a command that prints as it goes (`event`) writes, provided by the shell.
pub trait Live {
    /// Writes `text` to the output and flushes it, so a pipe sees it at once.
    fn line(&mut self, text: &str) -> std::io::Result<()>;
    /// Shows a warning that is not part of the output.
    fn note(&mut self, text: &str);
}

/// Runs one command and returns what it prints at its end; `live` takes what it prints as
/// it goes.
pub async fn run(
    command: Command,
    session: &mut Session,
    live: &mut dyn Live,
) -> Result<String, ClientError> {
    let (verb, target) = match command {
        Command::List(a) => return list::run(session, &a).await,
        Command::Define(a) => return define::run(session, &a).await,
        Command::Undefine(a) => return undefine::run(session, &a.domain).await,
        Command::Shutdown(a) => return lifecycle::shutdown(session, &a).await,
        Command::Dominfo(a) => return dominfo::run(session, &a).await,
        Command::Domstate(a) => return domstate::run(session, &a).await,
        Command::Domuuid(a) => return lookup::domuuid(session, &a.domain).await,
        Command::Domname(a) => return lookup::domname(session, &a).await,
        Command::Dumpconf(a) => return dumpconf::run(session, &a).await,
        Command::Autostart(a) => return autostart::run(session, &a).await,
        Command::Event(a) => return event::run(session, &a, live).await,
        Command::Vncdisplay(a) => return vncdisplay::run(session, &a.domain).await,
        Command::Domdisplay(a) => return domdisplay::run(session, &a.domain).await,
        Command::ConsoleSessions(a) => return console_sessions::run(session, &a).await,
        Command::ConsoleDisconnect(a) => return console_disconnect::run(session, &a).await,
        Command::VncPasswd(a) => return vnc_passwd::run(session, &a).await,
        Command::Audit(a) => return audit::run(session, &a).await,
        Command::ConsoleAcl(a) => return console_acl::run(session, &a).await,
        Command::SaslUser(a) => return sasl_user::run(session, &a).await,
        Command::Pki(a) => return pki::run(&a),
        Command::Version => return version::run(session).await,
        Command::Admin(a) => return admin::run(session, &a).await,
        Command::Uri => return Ok(uri::run(session)),
        Command::Quit => return Ok(String::new()),
        Command::Start(a) => (Verb::Start, a),
        Command::Destroy(a) => (Verb::Destroy, a),
        Command::Reboot(a) => (Verb::Reboot, a),
        Command::Reset(a) => (Verb::Reset, a),
        Command::Suspend(a) => (Verb::Suspend, a),
        Command::Resume(a) => (Verb::Resume, a),
    };
    lifecycle::run(session, verb, &target.domain).await
}

fn domain_ref(key: &str) -> DomainRef {
    DomainRef {
        key: key.to_owned(),
    }
}

/// The summary inside an info reply; the daemon always sends one.
fn summary(info: &DomainInfo) -> Result<&DomainSummary, ClientError> {
    info.summary
        .as_ref()
        .ok_or(ClientError::Incomplete("domain summary"))
}
