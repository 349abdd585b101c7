//! The `vmgate` command: `vmgate [-c URI] [-r] [COMMAND ...]`, a virsh look-alike for vmgated.
//! This file only parses the top-level options and picks the mode: one command from the
//! command line, an interactive shell when stdin is a TTY, or commands read from stdin. The
//! commands are in `commands/`, the modes in `shell.rs`, the lazy connection in `session.rs`.

mod commands;
mod session;
mod shell;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use vmgate::ConnectUri;

use crate::commands::Command;
use crate::session::Session;

/// Manage vmgated's guests, as virsh manages libvirtd's. With no command, read commands from
/// an interactive shell (stdin is a terminal) or one per line from stdin.
#[derive(Debug, Parser)]
#[command(name = "vmgate", version)]
struct Cli {
    /// Connection URI, e.g. qemu:///system, test+unix:///default?socket=PATH,
    /// qemu+tls://HOST/system [default: $VMGATE_DEFAULT_URI, else qemu:///system]
    #[arg(short = 'c', long = "connect", value_name = "URI")]
    connect: Option<String>,
    /// Use the daemon's read-only socket (query commands only)
    #[arg(short = 'r', long)]
    readonly: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

fn main() -> ExitCode {
    // The CLI logs nothing, but its dependencies' tracing spans (h2's, per call) still cost
    // work while no subscriber says so; this one turns every callsite off once.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return shell::clap_exit(&e),
    };
    let uri = match ConnectUri::resolve(cli.connect.as_deref()) {
        Ok(uri) => uri,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread: the CLI makes one call at a time, and hopping between threads for each
    // reply costs more than the call itself. Nothing needs to run while the shell waits at
    // its prompt (no keepalive is configured); a connection that died meanwhile is redialled.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut session = Session::new(uri, cli.readonly);
    let ok = match cli.command {
        Some(command) => shell::run_one(&rt, &mut session, command),
        None if std::io::stdin().is_terminal() => shell::interactive(&rt, &mut session),
        None => shell::from_reader(&rt, &mut session, std::io::stdin().lock()),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
