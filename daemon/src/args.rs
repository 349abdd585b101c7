//! vmgated's command-line arguments, in the library so that the man page generator
//! (`packaging/gen`) renders the same clap definition `main` parses. Nothing here acts on
//! them.

use std::path::PathBuf;

use clap::Parser;

/// vmgate's management daemon: runs guests and guards their consoles.
#[derive(Parser, Debug)]
#[command(name = "vmgated", version, about)]
pub struct Args {
    /// Configuration file.
    #[arg(
        long,
        short = 'f',
        value_name = "FILE",
        default_value = "/etc/vmgate/vmgated.toml"
    )]
    pub config: PathBuf,
    /// Check the configuration, print every problem, and exit (0 when it is usable).
    #[arg(long)]
    pub check_config: bool,
    /// Log at debug level (RUST_LOG overrides).
    #[arg(long, short)]
    pub verbose: bool,
}
