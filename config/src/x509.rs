//! Certificate identities as libvirt and QEMU print and match them: a subject DN written
//! `C=GB,ST=London,L=London,O=Example,CN=host` in certificate order (with `,` and `\` in
//! values escaped by a backslash), and the simple `*`/`?` glob of `tls_allowed_dn_list`
//! and `sasl_allowed_username_list`. Shared by the daemon (allowlists, console identities)
//! and the CLI (`vmgate pki query-dn`).

use x509_parser::{
    objects::{oid_registry, oid2abbrev},
    prelude::{FromDer, X509Certificate},
};

#[derive(Debug, thiserror::Error)]
pub enum DnError {
    #[error("not an X.509 certificate: {0}")]
    Parse(String),
}

/// The subject DN of a DER certificate, in the allowlist form.
pub fn subject_dn(cert_der: &[u8]) -> Result<String, DnError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| DnError::Parse(e.to_string()))?;
    let registry = oid_registry();
    let mut parts = Vec::new();
    for rdn in cert.subject().iter() {
        for atv in rdn.iter() {
            let name = oid2abbrev(atv.attr_type(), registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| atv.attr_type().to_id_string());
            let value = match atv.as_str() {
                Ok(v) => v.to_owned(),
                Err(_) => String::from_utf8_lossy(atv.attr_value().data).into_owned(),
            };
            parts.push(format!("{name}={}", escape(&value)));
        }
    }
    Ok(parts.join(","))
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == ',' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and `?` any
/// one character (GLib's g_pattern_match_simple, which libvirt uses).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`: linear in practice and
    // never recursive, so hostile patterns cannot blow the stack.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether an allowlist admits `name`: an absent list admits everyone, an empty one nobody.
pub fn allowed(list: Option<&[String]>, name: &str) -> bool {
    list.is_none_or(|patterns| patterns.iter().any(|p| glob_match(p, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_glib_does() {
        assert!(glob_match(
            "C=GB,*,CN=client1",
            "C=GB,ST=London,O=Example,CN=client1"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match(
            "C=GB,*,CN=client1",
            "C=GB,ST=London,CN=client12"
        ));
        assert!(glob_match("*CN=client1*", "O=x,CN=client12"));
        assert!(!glob_match("", "x"));
        assert!(glob_match(&"*a".repeat(50), &"a".repeat(200)));
    }

    #[test]
    fn absent_lists_admit_everyone_and_empty_ones_nobody() {
        assert!(allowed(None, "anything"));
        assert!(!allowed(Some(&[]), "anything"));
        assert!(allowed(Some(&["CN=a*".to_owned()]), "CN=alice"));
    }

    #[test]
    fn values_with_commas_are_escaped() {
        assert_eq!(escape(r"Example, Inc\x"), r"Example\, Inc\\x");
    }
}
