//! vmgated's entry point: what systemd passed, arguments, logging, configuration, then
//! `vmgated::run_with`.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vmgated::args::Args;

/// mimalloc: the API's small calls are allocation-heavy (HTTP/2 frames, headers, messages),
/// and glibc's allocator took a tenth of each call's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, while this is the only thread: the sockets and notification socket systemd
    // passed, whose variables are removed from the environment.
    #[allow(unsafe_code)]
    // SAFETY: no thread has been started and nothing owns any descriptor from 3 on yet.
    let handoff = unsafe { vmgated::systemd::Handoff::take_from_env() };
    let args = Args::parse();
    let default_level = if args.verbose { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let handoff = match handoff {
        Ok(handoff) => handoff,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vmgated: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut loaded = match vmgate_config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // A passed TLS or TCP socket turns its listener on: validate the config for it.
    handoff.sockets.apply_to(&mut loaded.config.daemon);
    let report = vmgate_config::validate(&loaded.config, &vmgated::supported());
    for warning in loaded.warnings.iter().chain(&report.warnings) {
        eprintln!("{}: warning: {warning}", args.config.display());
    }
    for error in &report.errors {
        eprintln!("{}: error: {error}", args.config.display());
    }
    if !report.errors.is_empty() {
        return ExitCode::FAILURE;
    }
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vmgated: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = vmgated::Shutdown::new();
        // SIGHUP re-reads the TLS certificates, keys and CRLs, as virt-admin
        // server-update-tls and QEMU's display-reload do.
        let reloader = vmgated::Reloader::new();
        let on_hangup = reloader.clone();
        vmgated::shutdown::watch_signals(shutdown.clone(), move || on_hangup.on_hangup())
            .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
        vmgated::run_with(loaded.config, shutdown, reloader, handoff)
            .await
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("vmgated: {e:#}");
            ExitCode::FAILURE
        }
    }
}
