//! The rules a domain definition must follow, whether it came from a file given to
//! `vmgate define` or from a gRPC request: the one validation path for definitions.
//!
//! Owns the name rules, the memory and vCPU ranges, and the console rules (port range,
//! port versus autoport, password length, listen address); the machine, disk, boot and
//! network rules are in `device_rules`. It collects every violation instead of stopping at
//! the first, so a user fixes a file in one round.

use std::net::IpAddr;

use super::error::FieldError;
use super::graphics::{Graphics, format_rfc3339};
use super::{DomainDef, MAX_MEMORY_MIB, MAX_NAME_LEN, MAX_VCPUS};

/// The lowest console port: display 0.
const VNC_BASE_PORT: u16 = 5900;

/// Every rule `def` breaks, in field order.
pub(super) fn check(def: &DomainDef) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
            position: None,
        });
    };
    if let Err(message) = check_name(&def.name) {
        error("name", message);
    }
    if !(1..=MAX_MEMORY_MIB).contains(&def.memory_mib) {
        error(
            "memory_mib",
            format!(
                "{} is out of range; give 1 to {MAX_MEMORY_MIB} MiB (1 TiB)",
                def.memory_mib
            ),
        );
    }
    if !(1..=MAX_VCPUS).contains(&def.vcpus) {
        error(
            "vcpus",
            format!("{} is out of range; give 1 to {MAX_VCPUS}", def.vcpus),
        );
    }
    if let Some(graphics) = &def.graphics {
        check_graphics(graphics, &mut error);
    }
    super::device_rules::check(def, &mut error);
    errors
}

/// 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    const ALLOWED: &str = "use only A-Z, a-z, 0-9, '_', '.' and '-'";
    if name.is_empty() {
        return Err(format!(
            "is empty; give the guest a name of 1 to {MAX_NAME_LEN} characters"
        ));
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "{name:?} is {len} characters long; the limit is {MAX_NAME_LEN}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{name:?} contains {bad:?}, which is not allowed; {ALLOWED}"
        ));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!(
            "{name:?} starts with '.' or '-', which is not allowed; start with a letter, digit \
             or '_'"
        ));
    }
    Ok(())
}

fn check_graphics(g: &Graphics, error: &mut impl FnMut(&str, String)) {
    if let Some(port) = g.port {
        if port < VNC_BASE_PORT {
            error(
                "graphics.port",
                format!(
                    "{port} is below {VNC_BASE_PORT} (VNC display 0); give a port from \
                     {VNC_BASE_PORT} to 65535, or remove it to use autoport"
                ),
            );
        }
        if g.autoport == Some(true) {
            error(
                "graphics.port",
                format!("{port} conflicts with autoport = true; remove port or autoport"),
            );
        }
    } else if g.autoport == Some(false) {
        error(
            "graphics.autoport",
            "is false but no port is set; set port (5900-65535) or autoport = true".to_string(),
        );
    }
    if let Some(passwd) = &g.passwd {
        let len = passwd.expose().len();
        if len == 0 {
            error(
                "graphics.passwd",
                "is empty; set 1 to 8 bytes, or remove passwd to use [vnc] vnc_password"
                    .to_string(),
            );
        } else if len > 8 {
            error(
                "graphics.passwd",
                format!(
                    "is {len} bytes long but VNC passwords are at most 8 bytes (libvirt would \
                     silently cut it to 8; vmgate refuses); choose 8 bytes or fewer"
                ),
            );
        }
    }
    if let Some(when) = &g.passwd_valid_to
        && format_rfc3339(when).is_none()
    {
        error(
            "graphics.passwd_valid_to",
            format!("{when} cannot be written as RFC 3339; use a year from 0 to 9999"),
        );
    }
    if let Some(listen) = &g.listen
        && listen.parse::<IpAddr>().is_err()
    {
        error(
            "graphics.listen",
            format!(
                "{listen:?} is not an IP address (hostnames are not accepted); write one such \
                 as \"127.0.0.1\" or \"::1\", or remove listen to use [vnc] vnc_listen"
            ),
        );
    }
}
