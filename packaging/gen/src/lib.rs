//! The man pages and shell completions the package installs, rendered from the clap
//! definitions the binaries parse (`vmgated::args::Args`, `vmgate::cli::Cli`), so that they
//! cannot drift from `--help`. [`generate`] writes, under one directory:
//!
//! - `man/vmgated.8`, `man/vmgate.1` and one `man/vmgate-COMMAND.1` per command and
//!   subcommand (as git's pages), each with the sections clap does not know (files,
//!   environment, signals, exit status) appended;
//! - `completions/vmgate.bash`, `completions/_vmgate` (zsh), `completions/vmgate.fish`.
//!
//! `packaging/build-deb` runs it through the `vmgate-gen-docs OUTDIR` binary; the packaging
//! test calls it directly. The date on the pages comes from `SOURCE_DATE_EPOCH` when set
//! ([`source_date`]), so that a rebuild of the same commit gives the same pages.

use std::{fs, io, path::Path};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

/// What a man page says beyond the clap definition: paragraphs added to DESCRIPTION, and
/// sections appended after clap's (heading, paragraphs). A paragraph with a tab is a tagged
/// paragraph (`TAG\tTEXT`, the tag in bold).
struct Extra {
    description: &'static [&'static str],
    sections: &'static [(&'static str, &'static [&'static str])],
}

const VMGATED: Extra = Extra {
    description: &[
        "vmgated runs QEMU guests and serves vmgate's gRPC API on UNIX sockets, and \
         optionally over TLS and TCP, to vmgate(1) and other clients. Every running guest \
         with a VNC display gets a console gateway in the daemon that authenticates clients \
         (VNC password, VeNCrypt with x509 certificates, SASL) and checks a per-guest access \
         list that can change while sessions are open.",
        "Guests are separate processes: they keep running when the daemon stops or \
         restarts, and the daemon attaches to them again when it starts.",
    ],
    sections: &[
        (
            "FILES",
            &[
                "/etc/vmgate/vmgated.toml\tThe configuration (--config). Keys keep the names \
                 of libvirtd.conf and qemu.conf; /usr/share/doc/vmgate/examples/vmgated.toml \
                 lists them all with their defaults.",
                "/run/vmgate/vmgate-sock, /run/vmgate/vmgate-sock-ro\tThe read-write and \
                 read-only API sockets (unix_sock_dir).",
                "/var/lib/vmgate\tThe database (SASL users, console ACLs, VNC passwords, \
                 audit records) and per-guest state (state_dir).",
                "/var/log/vmgate/qemu\tOne log per guest (log_dir in [qemu]).",
                "/usr/share/polkit-1/actions/org.vmgate.policy\tThe polkit actions \
                 org.vmgate.unix.manage, org.vmgate.unix.monitor and \
                 org.vmgate.api.OBJECT.PERMISSION.",
            ],
        ),
        (
            "SIGNALS",
            &[
                "SIGHUP\tRe-read the TLS certificates, keys and CRLs of the API and of the \
                 consoles (systemctl reload vmgated).",
                "SIGTERM, SIGINT\tStop: close the listeners and console sessions, and exit. \
                 Guests keep running.",
            ],
        ),
        (
            "SYSTEMD",
            &[
                "vmgated.service runs the daemon (Type=notify). systemd can pass it its \
                 sockets, each known by its FileDescriptorName: vmgated.socket (vmgate), \
                 vmgated-ro.socket (vmgate-ro), vmgated-tls.socket (vmgate-tls) and \
                 vmgated-tcp.socket (vmgate-tcp). A passed TLS or TCP socket turns its \
                 listener on; the configured address, ports and socket permissions then do \
                 not apply to it.",
            ],
        ),
        (
            "EXIT STATUS",
            &[
                "0 after a clean stop, or for a usable configuration with --check-config \
                 (warnings are printed but pass); 1 for a configuration error or a failure \
                 to start.",
            ],
        ),
        ("SEE ALSO", &["vmgate(1), polkit(8), systemd.socket(5)"]),
    ],
};

const VMGATE: Extra = Extra {
    description: &[
        "vmgate manages the guests of vmgated(8) as virsh manages libvirtd's. It runs the \
         command given on its command line; with none, it reads commands from an \
         interactive shell when stdin is a terminal (help lists them), or else one per line \
         from stdin, over one connection and one login.",
        "Connection URIs are libvirt's: qemu:///system (the local daemon's socket), \
         qemu+unix:///system?socket=PATH, qemu+tls://HOST[:PORT]/system (mutual TLS, port \
         16514 by default) and qemu+tcp://HOST[:PORT]/system (SASL, port 16509); the test \
         driver's path is /default, as in test:///default. A user@ in the URI is the \
         default SASL user name. Parameters: socket=PATH, pkipath=DIR, no_verify=1.",
        "Each command has its own page, vmgate-COMMAND(1), and its own --help.",
    ],
    sections: &[
        (
            "ENVIRONMENT",
            &[
                "VMGATE_DEFAULT_URI\tThe connection URI when -c is not given; without it, \
                 qemu:///system.",
            ],
        ),
        (
            "FILES",
            &[
                "~/.pki/vmgate/\tcacert.pem, clientcert.pem, clientkey.pem and cacrl.pem: \
                 a user's certificates for qemu+tls:// connections. The system-wide ones \
                 are /etc/pki/CA/cacert.pem, /etc/pki/vmgate/clientcert.pem and \
                 /etc/pki/vmgate/private/clientkey.pem; the URI parameter ?pkipath=DIR \
                 uses DIR instead.",
                "/run/vmgate/vmgate-sock, /run/vmgate/vmgate-sock-ro\tThe daemon's sockets \
                 for qemu:///system (-r uses the read-only one).",
            ],
        ),
        (
            "EXIT STATUS",
            &["0 when every command succeeded, 1 otherwise, as virsh."],
        ),
        ("SEE ALSO", &["vmgated(8), virsh(1)"]),
    ],
};

/// A command's own page (`vmgate-list.1`).
const VMGATE_COMMAND: Extra = Extra {
    description: &[],
    sections: &[("SEE ALSO", &["vmgate(1)"])],
};

/// Writes `out/man/` and `out/completions/` (creating them), the pages dated `date`
/// (`YYYY-MM-DD`).
pub fn generate(out: &Path, date: &str) -> io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        fs::create_dir_all(dir).map_err(|e| naming(dir, e))?;
    }
    write_man_pages(&man, date)?;
    write_completions(&completions)
}

/// `err` with the path it is about, for a message that says which file failed.
fn naming(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// vmgated.8, vmgate.1 and vmgate-COMMAND.1 for every command and subcommand.
fn write_man_pages(dir: &Path, date: &str) -> io::Result<()> {
    let daemon = vmgated::args::Args::command();
    write_page(dir, daemon, "8", "System Administration", date, &VMGATED)?;

    // Built so that subcommands know their full names (`vmgate-list`), without `help`.
    let mut cli = vmgate::cli::Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut pending = vec![(cli, &VMGATE)];
    while let Some((cmd, extra)) = pending.pop() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pending.push((sub.clone(), &VMGATE_COMMAND));
        }
        write_page(dir, cmd, "1", "User Commands", date, extra)?;
    }
    Ok(())
}

fn write_page(
    dir: &Path,
    cmd: clap::Command,
    section: &str,
    manual: &str,
    date: &str,
    extra: &Extra,
) -> io::Result<()> {
    // DESCRIPTION is clap's long help, which a page with its own description replaces (the
    // one-line `about` stays in NAME).
    let cmd = if extra.description.is_empty() {
        cmd
    } else {
        cmd.long_about(extra.description.join("\n\n"))
    };
    let page = Man::new(cmd)
        .section(section)
        .manual(manual)
        .date(date)
        .source(concat!("vmgate ", env!("CARGO_PKG_VERSION")));
    let path = dir.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text)?;
    extra_sections(extra.sections).to_writer(&mut text)?;
    fs::write(&path, text).map_err(|e| naming(&path, e))
}

fn extra_sections(sections: &[(&str, &[&str])]) -> Roff {
    let mut roff = Roff::new();
    for (heading, paragraphs) in sections {
        roff.control("SH", [*heading]);
        for paragraph in *paragraphs {
            match paragraph.split_once('\t') {
                Some((tag, text)) => {
                    roff.control("TP", []).text([bold(tag)]).text([roman(text)]);
                }
                None => {
                    roff.control("PP", []).text([roman(*paragraph)]);
                }
            }
        }
    }
    roff
}

/// The completions of `vmgate` for bash, zsh and fish, under the names each shell's
/// generator gives them (`vmgate.bash`, `_vmgate`, `vmgate.fish`).
fn write_completions(dir: &Path) -> io::Result<()> {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cli = vmgate::cli::Cli::command();
        clap_complete::generate_to(shell, &mut cli, "vmgate", dir).map_err(|e| naming(dir, e))?;
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` (reproducible builds), else today, as `YYYY-MM-DD`. Never empty:
/// an empty date shifts the later `.TH` arguments.
pub fn source_date() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|epoch| time::OffsetDateTime::from_unix_timestamp(epoch).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc)
        .date()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_iso() {
        let date = source_date();
        let parts: Vec<&str> = date.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [4, 2, 2],
            "{date}"
        );
    }

    #[test]
    fn writes_every_page_and_completion() {
        let dir = std::env::temp_dir().join(format!("vmgate-gen-docs-{}", std::process::id()));
        generate(&dir, "2026-01-01").expect("generate");
        let (man, completions) = (dir.join("man"), dir.join("completions"));
        let daemon = fs::read_to_string(man.join("vmgated.8")).expect("vmgated.8");
        assert!(
            daemon.contains(".TH vmgated 8 2026-01-01 \"vmgate "),
            "{daemon}"
        );
        assert!(daemon.contains("check\\-config") && daemon.contains("SIGHUP"));
        let client = fs::read_to_string(man.join("vmgate.1")).expect("vmgate.1");
        assert!(client.contains("VMGATE_DEFAULT_URI") && client.contains("vmgate\\-list(1)"));
        assert!(man.join("vmgate-console-acl-set.1").is_file());
        let bash = fs::read_to_string(completions.join("vmgate.bash")).expect("bash");
        assert!(bash.contains("console-acl") && bash.contains("--connect"));
        assert!(completions.join("_vmgate").is_file());
        assert!(completions.join("vmgate.fish").is_file());
        let _ = fs::remove_dir_all(&dir);
    }
}
