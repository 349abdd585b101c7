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

/// Which name rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Names {
    /// Every rule: a definition being defined, or checked on its own.
    All,
    /// All but the id- and UUID-shaped name rule, which came later: a definition already
    /// in the daemon's database must still load (the daemon warns about it instead).
    Stored,
}

/// Every rule `def` breaks, in field order.
pub(super) fn check(def: &DomainDef, names: Names) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut error = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
            position: None,
        });
    };
    let name = match names {
        Names::All => check_name(&def.name),
        Names::Stored => check_name_characters(&def.name),
    };
    if let Err(message) = name {
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

/// 1 to 64 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`, and not shaped
/// like a domain id or UUID.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    check_name_characters(name)?;
    match reserved_shape(name) {
        Some(shape) => Err(format!("{name:?} {shape}")),
        None => Ok(()),
    }
}

/// Why commands would take `name` for an id or a UUID, with the fix, if they would: every
/// command resolves its argument as an id first, then as a UUID, then as a name, as virsh
/// does.
pub(super) fn reserved_shape(name: &str) -> Option<String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        let example = if name.len() + 2 <= MAX_NAME_LEN {
            format!(", such as \"vm{name}\"")
        } else {
            String::new()
        };
        Some(format!(
            "is all digits, which commands read as the id of a running domain; choose a \
             name with a letter in it{example}"
        ))
    } else if uuid::Uuid::parse_str(name).is_ok() {
        Some(
            "has the form of a UUID, which commands read as a domain's UUID; choose a name \
             that is not a UUID"
                .to_string(),
        )
    } else {
        None
    }
}

/// The character and length rules alone.
fn check_name_characters(name: &str) -> Result<(), String> {
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
