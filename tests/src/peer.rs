//! QEMU as the benchmarks' peer: a disk-less TCG guest (SeaBIOS "No bootable device",
//! 720x400) with QEMU's own VNC server on a TCP port, killed when dropped; free ports in a
//! benchmark's own range, and waiting for a port to listen.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, anyhow};

use crate::{command_line, on_path, wait_until};

/// The emulator the peers run.
pub const EMULATOR: &str = "qemu-system-x86_64";

/// The emulator's version (`10.0.2`), or an error when it is not on PATH.
pub fn qemu_version() -> anyhow::Result<String> {
    if !on_path(EMULATOR) {
        return Err(anyhow!("{EMULATOR} is not on PATH"));
    }
    Ok(command_line(EMULATOR, &["--version"])
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .unwrap_or_default())
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a disk-less TCG guest with `extra` arguments (objects) and `-vnc VNC`, its
/// output in `dir/NAME.log`, with `envs` added to its environment.
pub fn spawn_guest(
    dir: &Path,
    name: &str,
    extra: &[&str],
    vnc: &str,
    envs: &[(&str, &Path)],
) -> anyhow::Result<Killed> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(EMULATOR)
        .args([
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-nodefaults",
            "-vga",
            "std",
        ])
        .args(["-display", "none", "-m", "64"])
        .args(extra)
        .args(["-vnc", vnc])
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {EMULATOR}"))?;
    Ok(Killed(child))
}

/// A free TCP port on 127.0.0.1 within `range`, other than those in `skip`.
pub fn free_port(range: (u16, u16), skip: &[u16]) -> anyhow::Result<u16> {
    (range.0..=range.1)
        .filter(|p| !skip.contains(p))
        .find(|&p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok())
        .ok_or_else(|| anyhow!("no free port in {range:?}"))
}

/// Whether something listens on 127.0.0.1:`port` within 30 s.
pub fn wait_listening(port: u16) -> bool {
    wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
    })
}
