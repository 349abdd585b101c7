//! Writes a [`DomainDef`] as canonical TOML: fixed key order, defaults written out so the
//! file documents itself, optional keys only when set, and `passwd` only on request.
//!
//! Written by hand rather than through serde so the order and layout stay stable as the
//! schema grows, and so a password can only reach the output through the one explicit flag.

use std::fmt::Write as _;
use std::path::Path;

use super::DomainDef;
use super::graphics::format_rfc3339;

pub(super) fn to_toml(def: &DomainDef, include_secrets: bool) -> String {
    let mut out = String::new();
    line(&mut out, "name", &quote(&def.name));
    if let Some(uuid) = &def.uuid {
        line(&mut out, "uuid", &quote(&uuid.to_string()));
    }
    line(&mut out, "machine", &quote(&def.machine));
    line(&mut out, "memory_mib", &def.memory_mib.to_string());
    line(&mut out, "vcpus", &def.vcpus.to_string());
    for (key, path) in [
        ("cdrom", &def.cdrom),
        ("kernel", &def.kernel),
        ("initrd", &def.initrd),
    ] {
        if let Some(path) = path {
            line(&mut out, key, &quote_path(path));
        }
    }
    if let Some(cmdline) = &def.cmdline {
        line(&mut out, "cmdline", &quote(cmdline));
    }
    if let Some(g) = &def.graphics {
        out.push_str("\n[graphics]\n");
        line(&mut out, "type", &quote(g.r#type.as_str()));
        if let Some(listen) = &g.listen {
            line(&mut out, "listen", &quote(listen));
        }
        if let Some(autoport) = g.autoport {
            line(&mut out, "autoport", &autoport.to_string());
        }
        if let Some(port) = g.port {
            line(&mut out, "port", &port.to_string());
        }
        if let (Some(passwd), true) = (&g.passwd, include_secrets) {
            line(&mut out, "passwd", &quote(passwd.expose()));
        }
        if let Some(when) = &g.passwd_valid_to {
            // validate() rejects dates RFC 3339 cannot express; fall back to a quoted
            // string that parse() will then refuse with a clear message
            let text = format_rfc3339(when).unwrap_or_else(|| quote(&when.to_string()));
            line(&mut out, "passwd_valid_to", &text);
        }
        line(&mut out, "connected", &quote(g.connected.as_str()));
        line(&mut out, "share_policy", &quote(g.share_policy.as_str()));
    }
    for disk in &def.disks {
        out.push_str("\n[[disk]]\n");
        line(&mut out, "path", &quote_path(&disk.path));
        line(&mut out, "format", &quote(disk.format.as_str()));
        line(&mut out, "bus", &quote(disk.bus.as_str()));
        line(&mut out, "readonly", &disk.readonly.to_string());
    }
    for nic in &def.interfaces {
        out.push_str("\n[[interface]]\n");
        line(&mut out, "type", &quote(nic.r#type.as_str()));
        line(&mut out, "model", &quote(&nic.model));
        if let Some(mac) = &nic.mac {
            line(&mut out, "mac", &quote(mac));
        }
    }
    out
}

/// Paths read from TOML are always UTF-8; validate() refuses others, which would be
/// written lossily here.
fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

fn line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
