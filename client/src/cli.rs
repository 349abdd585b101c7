//! `vmgate`'s top-level command line: the global options and the command. In the library so
//! that the man page and completion generator (`packaging/gen`) renders the same clap
//! definition the binary parses.

use clap::Parser;

use crate::commands::Command;

/// Manage vmgated's guests, as virsh manages libvirtd's. With no command, read commands from
/// an interactive shell (stdin is a terminal) or one per line from stdin.
#[derive(Debug, Parser)]
#[command(name = "vmgate", version)]
pub struct Cli {
    /// Connection URI, e.g. qemu:///system, test+unix:///default?socket=PATH,
    /// qemu+tls://HOST/system [default: $VMGATE_DEFAULT_URI, else qemu:///system]
    #[arg(short = 'c', long = "connect", value_name = "URI")]
    pub connect: Option<String>,
    /// Use the daemon's read-only socket (query commands only)
    #[arg(short = 'r', long)]
    pub readonly: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}
