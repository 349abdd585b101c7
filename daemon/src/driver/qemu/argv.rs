//! The QEMU command line of a guest, built by one pure function ([`build`]) from the
//! definition, the guest's run directory, the `[qemu]` settings and whether KVM is usable.
//! It reads no files and spawns nothing, so it is tested against golden files
//! (`golden/*.txt`, one argument per line, the emulator first).
//!
//! Choices, and why:
//! - `-nodefaults -no-user-config`: the guest gets exactly the devices listed here, whatever
//!   the machine's defaults or a host's `/etc/qemu` say; `-vga std` then adds the one display
//!   device the VNC gateway needs.
//! - Disks are `-blockdev` (a protocol node, `driver=file`, under a format node) plus
//!   `-device`, not `-drive`: it is QEMU's current interface (libvirt's since QEMU 4.2),
//!   the format is always explicit (never probed) and read-only is set on both nodes. IDE
//!   devices are always given `bus=`/`unit=`, since QEMU will not place a third one itself.
//! - Values that go through QEMU's option parsers (`-blockdev`, `-qmp`, `-vnc`) have each
//!   comma doubled, as QEMU requires; `-kernel`, `-initrd`, `-append` and `-pidfile` take
//!   their argument verbatim, so it is passed as is.
//! - Without direct boot the disks get `bootindex` 1, 2, ... in definition order and the
//!   CD-ROM the next one: SeaBIOS skips disks without a boot sector, so an empty disk plus an
//!   installer ISO boots the installer, and once installed the disk boots first.
//! - `-no-shutdown`: a guest powering off stops instead of exiting, so a guest-cooperative
//!   reboot can reset and resume it (as libvirt); the supervisor sends `quit` otherwise.
//! - `-vnc` only for a guest with `[graphics]`: QEMU serves it on a UNIX socket in the
//!   private run directory, without auth (the gateway authenticates), shared by every
//!   gateway session.
//! - A NIC without a `mac` gets one derived from the guest's UUID (QEMU would give every
//!   guest `52:54:00:12:34:56`), stable across starts.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;
use vmgate_config::QemuConfig;
use vmgate_config::domain::{
    DefinitionError, DiskBus, DiskFormat, DomainDef, IdeSlot, check_socket_path, parse_mac,
};

/// `connections=` of QEMU's VNC server: every gateway session of a guest is one connection
/// to it, and QEMU's default (32) would cap them. QEMU needs a file descriptor per
/// connection, so the spawner must give it an fd limit above this.
pub const VNC_BACKEND_CONNECTIONS: u32 = 1024;

/// `-sandbox` when `[qemu] sandbox` is on: libvirt's `seccomp_sandbox = 1`.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The `[qemu]` settings [`build`] needs, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSettings {
    /// The binary: a name to look up in PATH, or an absolute path.
    pub emulator: PathBuf,
    /// Whether to pass [`SANDBOX`].
    pub sandbox: bool,
    /// Where `<guest>.log` goes.
    pub log_dir: PathBuf,
}

impl QemuSettings {
    /// The settings of `[qemu]`, with `log_dir` defaulting under `state_dir`.
    pub fn from_config(cfg: &QemuConfig, state_dir: &Path) -> Self {
        QemuSettings {
            emulator: PathBuf::from(&cfg.emulator),
            sandbox: cfg.sandbox,
            log_dir: cfg.effective_log_dir(state_dir),
        }
    }
}

/// The files in a guest's private run directory (`<unix_sock_dir>/qemu/<guest>/`, 0700).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// The directory itself.
    pub dir: PathBuf,
    /// QMP monitor socket.
    pub qmp: PathBuf,
    /// QEMU's own VNC server socket, the gateway's backend.
    pub vnc: PathBuf,
    /// QEMU's pidfile, which lets a restarted daemon find the guest again.
    pub pidfile: PathBuf,
}

impl RunPaths {
    /// `<unix_sock_dir>/qemu/<guest>/`.
    pub fn run_dir(unix_sock_dir: &Path, guest: &str) -> PathBuf {
        unix_sock_dir.join("qemu").join(guest)
    }

    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        RunPaths {
            dir: dir.to_path_buf(),
            qmp: dir.join("qmp.sock"),
            vnc: dir.join("vnc.sock"),
            pidfile: dir.join("qemu.pid"),
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// The emulator, as configured (not yet looked up in PATH).
    pub program: PathBuf,
    /// Its arguments, without argv\[0\].
    pub args: Vec<OsString>,
    /// The run directory's files the command names.
    pub paths: RunPaths,
    /// Where the spawner sends QEMU's stdout and stderr (`<log_dir>/<guest>.log`).
    pub log_file: PathBuf,
}

/// Why no command line could be built.
#[derive(Debug, thiserror::Error)]
pub enum ArgvError {
    /// The definition breaks a rule (it should have been refused at define time).
    #[error("{0}")]
    Invalid(DefinitionError),
    /// The daemon assigns a UUID at define time; a definition without one was never stored.
    #[error("Guest {0} has no UUID; define it before starting it")]
    NoUuid(String),
    /// A socket in the run directory does not fit in `sun_path`.
    #[error("{0}")]
    SocketPath(DefinitionError),
}

/// The command line that runs `def` with its sockets in `run_dir`.
pub fn build(
    def: &DomainDef,
    run_dir: &Path,
    settings: &QemuSettings,
    kvm: bool,
) -> Result<QemuCommand, ArgvError> {
    def.validate_stored().map_err(ArgvError::Invalid)?;
    let uuid = def
        .uuid
        .ok_or_else(|| ArgvError::NoUuid(def.name.clone()))?;
    let paths = RunPaths::new(run_dir);
    check_socket_path(&paths.qmp).map_err(ArgvError::SocketPath)?;
    if def.graphics.is_some() {
        check_socket_path(&paths.vnc).map_err(ArgvError::SocketPath)?;
    }

    let mut a = Args::default();
    a.opt("-name", format!("guest={}", def.name));
    a.opt("-uuid", uuid.to_string());
    a.opt("-machine", &def.machine);
    a.opt("-accel", if kvm { "kvm" } else { "tcg" });
    a.opt("-m", format!("{}M", def.memory_mib));
    a.opt("-smp", def.vcpus.to_string());
    a.flag("-nodefaults");
    a.flag("-no-user-config");
    a.opt("-display", "none");
    a.opt("-vga", "std");
    a.opt(
        "-qmp",
        join([
            "unix:".as_ref(),
            &escape(&paths.qmp),
            ",server=on,wait=off".as_ref(),
        ]),
    );
    if def.graphics.is_some() {
        let tail = format!(",share=force-shared,connections={VNC_BACKEND_CONNECTIONS}");
        a.opt(
            "-vnc",
            join(["unix:".as_ref(), &escape(&paths.vnc), tail.as_ref()]),
        );
    }
    a.opt("-pidfile", &paths.pidfile);
    a.flag("-no-shutdown");
    if settings.sandbox {
        a.opt("-sandbox", SANDBOX);
    }

    let direct_boot = def.kernel.is_some();
    let placement = def.ide_placement();
    let mut boot_index = 0;
    let mut next_boot = || {
        boot_index += 1;
        (!direct_boot).then_some(boot_index)
    };
    for (i, (disk, slot)) in def.disks.iter().zip(&placement.disks).enumerate() {
        let node = format!("disk{i}");
        blockdev(&mut a, &node, &disk.path, disk.format, disk.readonly);
        let device = match (disk.bus, slot) {
            (DiskBus::Ide, Some(slot)) => format!("ide-hd,{}", ide_props(*slot)),
            _ => "virtio-blk-pci".to_string(),
        };
        a.opt("-device", device_opt(&device, &node, next_boot()));
    }
    if let (Some(cdrom), Some(slot)) = (&def.cdrom, placement.cdrom) {
        blockdev(&mut a, "cdrom", cdrom, DiskFormat::Raw, true);
        let device = format!("ide-cd,{}", ide_props(slot));
        a.opt("-device", device_opt(&device, "cdrom", next_boot()));
    }
    if let Some(kernel) = &def.kernel {
        a.opt("-kernel", kernel);
    }
    if let Some(initrd) = &def.initrd {
        a.opt("-initrd", initrd);
    }
    if let Some(cmdline) = &def.cmdline {
        a.opt("-append", cmdline);
    }
    for (i, (nic, mac)) in def.interfaces.iter().zip(macs(def, uuid)).enumerate() {
        a.opt("-netdev", format!("user,id=net{i}"));
        a.opt(
            "-device",
            format!("{},netdev=net{i},id=net{i}-dev,mac={mac}", nic.model),
        );
    }

    Ok(QemuCommand {
        program: settings.emulator.clone(),
        args: a.0,
        log_file: settings.log_dir.join(format!("{}.log", def.name)),
        paths,
    })
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.into());
    }

    fn opt(&mut self, flag: &str, value: impl AsRef<OsStr>) {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_os_string());
    }
}

/// A protocol node (`<node>-file`) and a format node (`<node>`) over it.
fn blockdev(a: &mut Args, node: &str, path: &Path, format: DiskFormat, readonly: bool) {
    let ro = if readonly { ",read-only=on" } else { "" };
    let head = "driver=file,filename=";
    let tail = format!(",node-name={node}-file{ro}");
    a.opt(
        "-blockdev",
        join([head.as_ref(), &escape(path), tail.as_ref()]),
    );
    a.opt(
        "-blockdev",
        format!("driver={format},file={node}-file,node-name={node}{ro}"),
    );
}

fn ide_props(slot: IdeSlot) -> String {
    format!("bus=ide.{},unit={}", slot.bus, slot.unit)
}

fn device_opt(device: &str, node: &str, boot: Option<u32>) -> String {
    let boot = boot.map(|n| format!(",bootindex={n}")).unwrap_or_default();
    format!("{device},drive={node},id={node}-dev{boot}")
}

/// Doubles every comma, as QEMU's option parsers (QemuOpts and keyval) read `,,`.
pub fn escape(value: &Path) -> OsString {
    let mut out = Vec::with_capacity(value.as_os_str().len());
    for &b in value.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn join<const N: usize>(parts: [&OsStr; N]) -> OsString {
    let mut out = OsString::new();
    for part in parts {
        out.push(part);
    }
    out
}

/// The MAC of each interface: its own, or one derived from the guest UUID that no other
/// interface of the guest uses.
fn macs(def: &DomainDef, uuid: Uuid) -> Vec<String> {
    let mut taken: Vec<[u8; 6]> = def
        .interfaces
        .iter()
        .filter_map(|n| n.mac.as_deref().and_then(|m| parse_mac(m).ok()))
        .collect();
    let mut candidate = derived_mac_base(uuid);
    def.interfaces
        .iter()
        .map(|nic| {
            if let Some(mac) = nic.mac.as_deref().and_then(|m| parse_mac(m).ok()) {
                return format_mac(mac);
            }
            loop {
                let mac = mac_from(candidate);
                candidate = candidate.wrapping_add(1) & 0x00ff_ffff;
                if !taken.contains(&mac) {
                    taken.push(mac);
                    return format_mac(mac);
                }
            }
        })
        .collect()
}

/// The low 24 bits of a MAC under QEMU's `52:54:00` prefix, from the UUID's last bytes.
fn derived_mac_base(uuid: Uuid) -> u32 {
    let b = uuid.as_bytes();
    u32::from_be_bytes([0, b[13], b[14], b[15]])
}

fn mac_from(low: u32) -> [u8; 6] {
    let [_, x, y, z] = low.to_be_bytes();
    [0x52, 0x54, 0x00, x, y, z]
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

#[cfg(test)]
#[path = "argv_tests.rs"]
mod tests;
