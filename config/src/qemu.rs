//! The `[qemu]` section: how the qemu driver starts guests (qemu.conf's emulator, log
//! directory, account and seccomp sandbox).
//!
//! Owns the schema and defaults only; the daemon's driver decides what to do with them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::values::boolean;

/// `[qemu]`: settings of the qemu driver (qemu.conf).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QemuConfig {
    /// The QEMU binary: a name looked up in PATH, or an absolute path.
    pub emulator: String,
    /// Where guest logs go; unset means `<state_dir>/log`.
    pub log_dir: Option<PathBuf>,
    /// Account QEMU runs as when the daemon runs as root; unset means root.
    pub user: Option<String>,
    /// Group QEMU runs as when the daemon runs as root; unset means root.
    pub group: Option<String>,
    /// Start QEMU with `-sandbox on,...` (libvirt's `seccomp_sandbox`).
    #[serde(deserialize_with = "boolean::de")]
    pub sandbox: bool,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            emulator: "qemu-system-x86_64".to_string(),
            log_dir: None,
            user: None,
            group: None,
            sandbox: true,
        }
    }
}

impl QemuConfig {
    /// `log_dir`, or `<state_dir>/log`.
    pub fn effective_log_dir(&self, state_dir: &Path) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("log"))
    }
}
