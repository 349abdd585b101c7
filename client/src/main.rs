//! The `vmgate` command: `vmgate [-c URI] [-r] [COMMAND ...]`, a virsh look-alike for vmgated.
//! This file only parses the top-level options and picks the mode: one command from the
//! command line, an interactive shell when stdin is a TTY, or commands read from stdin. The
//! options (`cli.rs`), commands (`commands/`), modes (`shell.rs`) and the lazy connection
//! (`session.rs`) are in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use vmgate::ConnectUri;
use vmgate::cli::Cli;
use vmgate::session::Session;
use vmgate::shell;

/// mimalloc: the API's small calls are allocation-heavy (HTTP/2 frames, headers, messages),
/// and glibc's allocator took a tenth of each call's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
