//! SASL rules shared by consoles (`[vnc]` `vnc_sasl_*`) and the API (`[daemon]` `sasl_*`):
//! mechanism names, and the Kerberos settings GSSAPI adds (service name, local realm,
//! keytab).
//!
//! Owns the checks on one value each; where a mechanism may be offered (TLS underneath,
//! plain TCP) and when a keytab is in use are decided by `vnc` and `daemon`, which call in.

use std::path::Path;

use crate::diag::Report;

use super::files::check_secret_file;
use super::not_available;

/// SASL mechanisms vmgate knows, on consoles and on the API.
pub(super) const KNOWN_MECHANISMS: [&str; 3] = ["SCRAM-SHA-256", "PLAIN", "GSSAPI"];

/// Kerberos: the one mechanism with a security layer.
pub(super) const GSSAPI: &str = "GSSAPI";

/// Whether `mechanisms` lists GSSAPI.
pub(super) fn lists_gssapi(mechanisms: &[String]) -> bool {
    mechanisms.iter().any(|m| m == GSSAPI)
}

/// The message for GSSAPI listed in a build without it.
pub(super) fn gssapi_not_available() -> String {
    not_available(
        "the GSSAPI mechanism is",
        "build vmgated with --features gssapi or remove \"GSSAPI\"",
    )
}

/// The SASL keys consoles and the API both have, with the prefix of their names
/// (`daemon.sasl_`, `vnc.vnc_sasl_`).
pub(super) struct SaslKeys<'a> {
    pub prefix: &'a str,
    pub mechanisms: &'a [String],
    pub service: &'a str,
    pub default_service: &'a str,
    pub local_realm: Option<&'a str>,
    pub keytab: Option<&'a Path>,
}

/// The checks on each of `keys` alone, whatever uses them.
pub(super) fn check_keys(report: &mut Report, keys: &SaslKeys<'_>) {
    let key = |name: &str| format!("{}{name}", keys.prefix);
    check_mechanism_names(report, &key("mechanisms"), keys.mechanisms);
    check_service(report, &key("service"), keys.service, keys.default_service);
    check_local_realm(report, &key("local_realm"), keys.local_realm);
    check_keytab_key(report, &key("keytab"), keys.keytab);
}

/// Unknown names are errors (with the right spelling when only the case is wrong);
/// repeated names are warnings.
fn check_mechanism_names(report: &mut Report, key: &str, mechanisms: &[String]) {
    for (i, mech) in mechanisms.iter().enumerate() {
        if !KNOWN_MECHANISMS.contains(&mech.as_str()) {
            let hint = match KNOWN_MECHANISMS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(mech))
            {
                Some(k) => format!("write \"{k}\" (mechanism names are upper case)"),
                None => format!(
                    "use {}",
                    KNOWN_MECHANISMS.map(|k| format!("\"{k}\"")).join(", ")
                ),
            };
            report.error(
                key,
                format!("\"{mech}\" is not a known SASL mechanism; {hint}"),
            );
        } else if mechanisms[..i].contains(mech) {
            report.warn(
                key,
                format!("lists \"{mech}\" more than once; list it once"),
            );
        }
    }
}

/// A Kerberos service name is the first component of `<service>/<host>@REALM`, so it can
/// hold neither separator; `default` is the key's default, shown as the example.
fn check_service(report: &mut Report, key: &str, service: &str, default: &str) {
    if service.trim().is_empty() {
        report.error(
            key,
            format!(
                "is empty; write a service name like \"{default}\" (the first part of the \
                 service principal {default}/<host>@REALM)"
            ),
        );
    } else if service.contains(['/', '@']) {
        report.error(
            key,
            format!(
                "\"{service}\" is not a service name like \"{default}\"; write only the first \
                 part of the service principal (\"{default}\" for {default}/<host>@REALM), \
                 without \"/\" or \"@\""
            ),
        );
    } else if !service
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        report.error(
            key,
            format!(
                "{service:?} is not a service name like \"{default}\"; use letters, digits, \
                 '-', '_' and '.' only"
            ),
        );
    }
}

/// A realm is written without `@`; realms are case-sensitive and by convention upper case,
/// so lower-case letters are most likely a mistake, but not certainly one.
fn check_local_realm(report: &mut Report, key: &str, realm: Option<&str>) {
    let Some(realm) = realm else {
        return;
    };
    if realm.trim().is_empty() {
        report.error(
            key,
            "is empty; write a realm such as \"EXAMPLE.COM\", or remove the key to keep every \
             principal's realm",
        );
    } else if realm.contains('@') {
        report.error(
            key,
            format!(
                "\"{realm}\" is not a realm name; write it without \"@\", e.g. \"{}\"",
                realm.trim_start_matches('@').to_ascii_uppercase()
            ),
        );
    } else if realm.chars().any(char::is_lowercase) {
        report.warn(
            key,
            format!(
                "\"{realm}\" has lower-case letters, but Kerberos realms are case-sensitive \
                 and conventionally upper case (principals of \"{upper}\" would keep their \
                 realm); write \"{upper}\" unless the KDC really names it \"{realm}\"",
                upper = realm.to_uppercase()
            ),
        );
    }
}

/// A keytab key that is set must name a file; called whether or not GSSAPI is in use.
fn check_keytab_key(report: &mut Report, key: &str, keytab: Option<&Path>) {
    if keytab.is_some_and(|p| p.as_os_str().is_empty()) {
        report.error(
            key,
            "is empty; name the keytab file, or remove the key to use the system default \
             keytab",
        );
    }
}

/// The keytab GSSAPI will read, when the key is set (unset means the system default,
/// which Kerberos finds at run time, so there is nothing to check here).
pub(super) fn check_keytab_file(report: &mut Report, key: &str, keytab: Option<&Path>) {
    let Some(path) = keytab.filter(|p| !p.as_os_str().is_empty()) else {
        return;
    };
    let name = key.split_once('.').map_or(key, |(_, name)| name);
    check_secret_file(
        report,
        key,
        path,
        &format!(
            "create it with kadmin's ktadd, or fix the path (remove {name} to use the system \
             default keytab)"
        ),
    );
}
