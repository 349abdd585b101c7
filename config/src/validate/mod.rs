//! Judging a parsed [`Config`]: [`validate`] and [`Supported`].
//!
//! This module owns every rule DESIGN.md sets on the daemon config: values that make no
//! sense (zero limits, port ranges), combinations that are unsafe or useless (SASL on
//! consoles without TLS, DES under FIPS, an empty DN allowlist), files that must exist when
//! the feature using them is on, and keys the running build cannot honour yet (from
//! [`Supported`], which the daemon fills in). Every message names the value and the fix.
//! It reads the files the config names but never creates or changes anything, and never
//! requires `state_dir` or `unix_sock_dir` to exist, so `--check-config` can run anywhere.

mod daemon;
mod files;
mod sasl;
mod vnc;

use crate::Config;
use crate::diag::Report;

/// Which features this build of vmgated can honour; the daemon fills this in. A key that
/// asks for a missing feature is an error, so a config never silently does less than it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supported {
    /// `driver = "qemu"`.
    pub qemu_driver: bool,
    /// `driver = "test"`.
    pub test_driver: bool,
    /// `listen_tls = true`: the TLS API listener.
    pub listen_tls: bool,
    /// `listen_tcp = true`: the plain TCP API listener.
    pub listen_tcp: bool,
    /// `auth_unix_ro`/`auth_unix_rw = "polkit"`.
    pub polkit: bool,
    /// `access_drivers = ["polkit"]`.
    pub polkit_access: bool,
    /// `auth_* = "sasl"` on the API sockets and listeners.
    pub sasl: bool,
    /// The GSSAPI SASL mechanism (the only one with a security layer).
    pub gssapi: bool,
    /// `vnc_tls = true`: VeNCrypt with x509 on consoles.
    pub vnc_tls: bool,
    /// `vnc_sasl = true`: SASL on consoles.
    pub vnc_sasl: bool,
    /// VNC password authentication (`vnc_password`, and guests' `passwd`).
    pub vnc_password: bool,
    /// `vnc_auto_unix_socket = true`: consoles on UNIX sockets.
    pub vnc_unix_socket: bool,
    /// A `postgres://` `database_url`.
    pub postgres: bool,
    /// `[qemu] user`/`group`: running QEMU as another account.
    pub qemu_run_as: bool,
}

impl Supported {
    /// Every feature; for tests and for checking a config against the full design.
    pub const fn all() -> Self {
        Supported {
            qemu_driver: true,
            test_driver: true,
            listen_tls: true,
            listen_tcp: true,
            polkit: true,
            polkit_access: true,
            sasl: true,
            gssapi: true,
            vnc_tls: true,
            vnc_sasl: true,
            vnc_password: true,
            vnc_unix_socket: true,
            postgres: true,
            qemu_run_as: true,
        }
    }

    /// No optional feature at all.
    pub const fn none() -> Self {
        Supported {
            qemu_driver: false,
            test_driver: false,
            listen_tls: false,
            listen_tcp: false,
            polkit: false,
            polkit_access: false,
            sasl: false,
            gssapi: false,
            vnc_tls: false,
            vnc_sasl: false,
            vnc_password: false,
            vnc_unix_socket: false,
            postgres: false,
            qemu_run_as: false,
        }
    }
}

/// Checks `cfg` against DESIGN.md's rules and what this build `supported`.
pub fn validate(cfg: &Config, supported: &Supported) -> Report {
    let mut report = Report::default();
    daemon::check(cfg, supported, &mut report);
    vnc::check(cfg, supported, &mut report);
    vnc::check_storage_and_qemu(cfg, supported, &mut report);
    report
}

/// The standard message for a feature this build lacks.
pub(crate) fn not_available(what: &str, fix: &str) -> String {
    format!("{what} not available in this build of vmgated yet; {fix}")
}

/// The standard message for a limit of zero.
pub(crate) fn check_nonzero(report: &mut Report, key: &str, value: u64, why: &str) {
    if value == 0 {
        report.error(key, format!("0 {why}; set it to a positive number"));
    }
}

#[cfg(test)]
mod gssapi_tests;
#[cfg(test)]
mod tests;
