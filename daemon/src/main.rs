//! vmgated's entry point: arguments, logging, configuration, then `vmgated::run`.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// vmgate's management daemon: runs guests and guards their consoles.
#[derive(Parser, Debug)]
#[command(name = "vmgated", version, about)]
struct Args {
    /// Configuration file.
    #[arg(
        long,
        short = 'f',
        value_name = "FILE",
        default_value = "/etc/vmgate/vmgated.toml"
    )]
    config: PathBuf,
    /// Check the configuration, print every problem, and exit (0 when it is usable).
    #[arg(long)]
    check_config: bool,
    /// Log at debug level (RUST_LOG overrides).
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let default_level = if args.verbose { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let loaded = match vmgate_config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
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
        vmgated::run_with(loaded.config, shutdown, reloader)
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
