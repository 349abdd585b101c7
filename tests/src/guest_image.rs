//! The real-guest tests' bootable guest: a Debian kernel and a tiny busybox initramfs that
//! `scripts/build-test-guest` builds once under the target directory (`test-guest/`), run
//! here first so that a missing or outdated guest is rebuilt. The guest boots under TCG in
//! about 4 s, idles without a disk or devices of its own, and powers off (a guest shutdown
//! to QEMU) when the ACPI power button is pressed (QMP `system_powerdown`); a press made
//! while it boots is lost, so tests press until it is honoured, or wait for
//! [`READY_EVENT`] first.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::bins::workspace_root;

/// The kernel command line the guest needs: no boot messages, and an immediate reboot
/// rather than a hang should the kernel panic.
pub const KERNEL_CMDLINE: &str = "quiet panic=-1";

/// The QMP event the guest causes once it is ready to honour the power button: it writes
/// the RTC once, after its ACPI event daemon has opened the button.
pub const READY_EVENT: &str = "RTC_CHANGE";

/// What QEMU boots the guest from (`-kernel`, `-initrd`, `-append`).
#[derive(Clone, Debug)]
pub struct BootableGuest {
    /// The uncompressed ELF kernel, which QEMU boots through its PVH entry.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: &'static str,
}

/// The guest, built first when missing or made by another version of the build script
/// (once per test process; concurrent builds wait for each other). The error names what
/// failed, with the script's output.
pub fn bootable_guest() -> Result<BootableGuest, String> {
    static GUEST: OnceLock<Result<BootableGuest, String>> = OnceLock::new();
    GUEST.get_or_init(build).clone()
}

fn build() -> Result<BootableGuest, String> {
    let target = target_dir();
    let script = workspace_root().join("scripts/build-test-guest");
    let output = Command::new(&script)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let dir = target.join("test-guest");
    let guest = BootableGuest {
        kernel: dir.join("vmlinux"),
        initrd: dir.join("initrd.img"),
        cmdline: KERNEL_CMDLINE,
    };
    for file in [&guest.kernel, &guest.initrd] {
        if !file.is_file() {
            return Err(format!(
                "{} succeeded but left no {}",
                script.display(),
                file.display()
            ));
        }
    }
    Ok(guest)
}

/// The target directory this test binary was built in: the nearest ancestor of the
/// executable holding cargo's `CACHEDIR.TAG`, which also honours `CARGO_TARGET_DIR` and a
/// configured `target-dir`; `<workspace>/target` when there is none.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}
