//! Rules for `[vnc]`, `[storage]` and `[qemu]`: console listen address, TLS certificate
//! directory, passwords (length, FIPS), SASL (its mechanisms, Kerberos settings, and which
//! mechanisms may go without TLS), port range, throttling limits, the database URL and the
//! emulator.

use std::net::IpAddr;
use std::path::Path;

use crate::Config;
use crate::diag::Report;
use crate::values::DriverKind;

use super::files::{check_private_key, check_readable};
use super::{Supported, check_nonzero, not_available, sasl};

/// The lowest console port: display 0.
const VNC_BASE_PORT: u16 = 5900;

pub(super) fn check(cfg: &Config, supported: &Supported, report: &mut Report) {
    let v = &cfg.vnc;
    if v.vnc_listen.parse::<IpAddr>().is_err() {
        report.error(
            "vnc.vnc_listen",
            format!(
                "\"{}\" is not an IP address (hostnames are not accepted); write one such as \
                 \"127.0.0.1\", \"0.0.0.0\" or \"::1\"",
                v.vnc_listen
            ),
        );
    }
    if v.vnc_auto_unix_socket && !supported.vnc_unix_socket {
        report.error(
            "vnc.vnc_auto_unix_socket",
            not_available(
                "console UNIX sockets are",
                "set vnc_auto_unix_socket = false",
            ),
        );
    }
    if v.vnc_tls {
        if supported.vnc_tls {
            check_cert_dir(&v.vnc_tls_x509_cert_dir, report);
        } else {
            report.error(
                "vnc.vnc_tls",
                not_available("TLS on consoles is", "set vnc_tls = false"),
            );
        }
    } else if v.vnc_tls_x509_verify {
        report.warn(
            "vnc.vnc_tls_x509_verify",
            "has no effect without vnc_tls; set vnc_tls = true or remove it",
        );
    }
    check_password(cfg, supported, report);
    check_sasl(cfg, supported, report);
    check_ports_and_limits(cfg, report);
}

fn check_cert_dir(dir: &Path, report: &mut Report) {
    let key = "vnc.vnc_tls_x509_cert_dir";
    if !dir.is_dir() {
        report.error(
            key,
            format!(
                "{} is not a directory; create it with ca-cert.pem, server-cert.pem and \
                 server-key.pem, point vnc_tls_x509_cert_dir at one, or set vnc_tls = false",
                dir.display()
            ),
        );
        return;
    }
    let fix = "put it there, point vnc_tls_x509_cert_dir elsewhere, or set vnc_tls = false";
    check_readable(report, key, &dir.join("ca-cert.pem"), fix);
    check_readable(report, key, &dir.join("server-cert.pem"), fix);
    check_private_key(report, key, &dir.join("server-key.pem"), fix);
    let crl = dir.join("ca-crl.pem");
    if crl.exists() {
        check_readable(report, key, &crl, "make it readable or remove it");
    }
}

fn check_password(cfg: &Config, supported: &Supported, report: &mut Report) {
    let v = &cfg.vnc;
    let Some(password) = &v.vnc_password else {
        return;
    };
    let key = "vnc.vnc_password";
    let len = password.expose().len();
    if len == 0 {
        report.error(
            key,
            "is empty; set a password of 1 to 8 bytes, or remove the key",
        );
    } else if len > 8 {
        report.error(
            key,
            format!(
                "is {len} bytes long but VNC passwords are at most 8 bytes (libvirt would \
                 silently cut it to 8; vmgate refuses); choose a password of 8 bytes or fewer"
            ),
        );
    }
    if !supported.vnc_password {
        report.error(
            key,
            not_available("VNC password authentication is", "remove vnc_password"),
        );
    }
    if v.fips_enabled() {
        report.error(
            key,
            "is set but the host is in FIPS mode, where the DES cipher of VNC password \
             authentication is not allowed; remove vnc_password and use vnc_tls with vnc_sasl",
        );
    }
    if v.vnc_sasl {
        report.warn(
            key,
            "is ignored while vnc_sasl is on (consoles offer only SASL and x509 logins); \
             remove it",
        );
    }
}

fn check_sasl(cfg: &Config, supported: &Supported, report: &mut Report) {
    let v = &cfg.vnc;
    let key = "vnc.vnc_sasl_mechanisms";
    let keytab = v.vnc_sasl_keytab.as_deref();
    sasl::check_keys(
        report,
        &sasl::SaslKeys {
            prefix: "vnc.vnc_sasl_",
            mechanisms: &v.vnc_sasl_mechanisms,
            service: &v.vnc_sasl_service,
            default_service: "vnc",
            local_realm: v.vnc_sasl_local_realm.as_deref(),
            keytab,
        },
    );
    if !v.vnc_sasl {
        return;
    }
    if !supported.vnc_sasl {
        report.error(
            "vnc.vnc_sasl",
            not_available("SASL on consoles is", "set vnc_sasl = false"),
        );
    }
    let has_gssapi = sasl::lists_gssapi(&v.vnc_sasl_mechanisms);
    if has_gssapi && !supported.gssapi {
        report.error(key, sasl::gssapi_not_available());
    }
    if v.vnc_sasl_mechanisms.is_empty() {
        report.error(
            key,
            "is empty while vnc_sasl is on, so nobody could log in; list \"SCRAM-SHA-256\" \
             and/or \"PLAIN\"",
        );
    }
    let gssapi = has_gssapi && supported.gssapi;
    if gssapi {
        sasl::check_keytab_file(report, "vnc.vnc_sasl_keytab", keytab);
    }
    if v.vnc_tls {
        return;
    }
    // Without TLS only GSSAPI, whose security layer wraps the session, may be offered.
    if !gssapi {
        report.error(
            "vnc.vnc_sasl",
            format!(
                "is on without vnc_tls, but SCRAM-SHA-256 and PLAIN need TLS underneath; set \
                 vnc_tls = true, {}or vnc_sasl = false",
                if supported.gssapi {
                    "list only \"GSSAPI\" (Kerberos), "
                } else {
                    ""
                }
            ),
        );
        return;
    }
    let mut without_tls: Vec<&str> = Vec::new();
    for mech in &v.vnc_sasl_mechanisms {
        if mech != sasl::GSSAPI
            && sasl::KNOWN_MECHANISMS.contains(&mech.as_str())
            && !without_tls.contains(&mech.as_str())
        {
            without_tls.push(mech);
        }
    }
    if !without_tls.is_empty() {
        let listed = without_tls
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(" and ");
        let (verb, them) = match without_tls.len() {
            1 => ("is", "it"),
            _ => ("are", "them"),
        };
        report.warn(
            key,
            format!(
                "{listed} {verb} not offered without vnc_tls (only GSSAPI, which has a \
                 security layer, is); set vnc_tls = true, or remove {them}"
            ),
        );
    }
}

fn check_ports_and_limits(cfg: &Config, report: &mut Report) {
    let v = &cfg.vnc;
    if v.remote_display_port_min < VNC_BASE_PORT {
        report.error(
            "vnc.remote_display_port_min",
            format!(
                "{} is below {VNC_BASE_PORT}, the port of VNC display 0; set it to \
                 {VNC_BASE_PORT} or more",
                v.remote_display_port_min
            ),
        );
    }
    if v.remote_display_port_min > v.remote_display_port_max {
        report.error(
            "vnc.remote_display_port_min",
            format!(
                "{} is above remote_display_port_max ({}); make the range non-empty",
                v.remote_display_port_min, v.remote_display_port_max
            ),
        );
    }
    check_nonzero(
        report,
        "vnc.vnc_max_pending",
        v.vnc_max_pending.into(),
        "would refuse every console connection",
    );
    check_nonzero(
        report,
        "vnc.vnc_max_pending_per_source",
        v.vnc_max_pending_per_source.into(),
        "would refuse every console connection",
    );
    if let Some(max) = v.vnc_max_sessions {
        check_nonzero(
            report,
            "vnc.vnc_max_sessions",
            max.into(),
            "would refuse every console connection; leave it unset for the default",
        );
    }
    check_nonzero(
        report,
        "vnc.vnc_handshake_timeout_secs",
        v.vnc_handshake_timeout_secs,
        "would give clients no time to log in",
    );
    check_nonzero(
        report,
        "vnc.vnc_auth_max_failures",
        v.vnc_auth_max_failures.into(),
        "would lock out every source before its first try",
    );
    check_nonzero(
        report,
        "vnc.vnc_auth_failure_window_secs",
        v.vnc_auth_failure_window_secs,
        "would never count a failure",
    );
    check_nonzero(
        report,
        "vnc.vnc_auth_lockout_secs",
        v.vnc_auth_lockout_secs,
        "would make the brute-force lockout end at once",
    );
    check_nonzero(
        report,
        "vnc.audit_max_age_days",
        v.audit_max_age_days.into(),
        "would delete audit records as soon as they are written",
    );
    check_nonzero(
        report,
        "vnc.audit_max_rows",
        v.audit_max_rows,
        "would delete audit records as soon as they are written",
    );
}

pub(super) fn check_storage_and_qemu(cfg: &Config, supported: &Supported, report: &mut Report) {
    if let Some(url) = &cfg.storage.database_url {
        let key = "storage.database_url";
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if !supported.postgres {
                report.error(
                    key,
                    not_available(
                        "PostgreSQL is",
                        "remove database_url to use SQLite in state_dir",
                    ),
                );
            }
        } else if !url.starts_with("sqlite:") {
            report.error(
                key,
                format!(
                    // only the scheme: the rest of a URL may hold a password
                    "scheme \"{}\" is not supported, only sqlite: and postgres://; write e.g. \
                     \"sqlite:///var/lib/vmgate/vmgate.db?mode=rwc\", or remove the key",
                    url.split(':').next().unwrap_or_default()
                ),
            );
        }
    }
    let q = &cfg.qemu;
    if q.emulator.trim().is_empty() {
        report.error(
            "qemu.emulator",
            "is empty; name the QEMU binary, e.g. \"qemu-system-x86_64\"",
        );
    } else if cfg.daemon.driver == DriverKind::Qemu
        && supported.qemu_driver
        && !emulator_found(&q.emulator)
    {
        report.warn(
            "qemu.emulator",
            format!(
                "\"{}\" was not found{}, so guests will fail to start; install QEMU or set \
                 emulator to its path",
                q.emulator,
                if q.emulator.contains('/') {
                    ""
                } else {
                    " in PATH"
                }
            ),
        );
    }
    if q.log_dir.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        report.error(
            "qemu.log_dir",
            "is empty; name a directory, or remove the key",
        );
    }
    for (key, value) in [("qemu.user", &q.user), ("qemu.group", &q.group)] {
        let name = key.trim_start_matches("qemu.");
        match value.as_deref() {
            Some("") => report.error(key, format!("is empty; name an account, or remove {name}")),
            Some(_) if !supported.qemu_run_as => report.error(
                key,
                not_available(
                    "running QEMU as another account is",
                    &format!("remove {name}"),
                ),
            ),
            _ => {}
        }
    }
}

fn emulator_found(emulator: &str) -> bool {
    if emulator.contains('/') {
        return Path::new(emulator).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(emulator).is_file()))
}
