//! The names `pki` puts into certificates, as the user writes them: `--host` (a DNS name or an
//! IP address, which become subjectAltNames; webpki matches only those, never the CN) and
//! `--dn` (`C=GB,ST=London,L=London,O=Example`, the allowlist form without the CN, with `,`
//! and `\` in values escaped by a backslash as `query-dn` prints them).

use std::net::IpAddr;

use rcgen::{DistinguishedName, DnType, DnValue};

use super::PkiError;

/// A `--host`: what a client will connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Dns(String),
    Ip(IpAddr),
}

impl Host {
    pub fn parse(text: &str) -> Result<Host, PkiError> {
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let name = text.strip_prefix("*.").unwrap_or(text);
        check_dns_name(name).map_err(|reason| PkiError::BadHost {
            host: text.to_owned(),
            reason: reason.to_owned(),
        })?;
        Ok(Host::Dns(text.to_ascii_lowercase()))
    }

    /// The text for the CN and the report (`host.example.org`, `192.0.2.1`, `::1`).
    pub fn text(&self) -> String {
        match self {
            Host::Dns(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// As certtool and OpenSSL show a subjectAltName: `DNS:name` or `IP:address`.
    pub fn san_text(&self) -> String {
        match self {
            Host::Dns(name) => format!("DNS:{name}"),
            Host::Ip(ip) => format!("IP:{ip}"),
        }
    }
}

/// Whether `name` is a DNS name a certificate can carry (RFC 1123 host name syntax).
pub fn is_dns_name(name: &str) -> bool {
    check_dns_name(name).is_ok()
}

fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots, or a dot at an end)");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// The attribute types `--dn` accepts, by the names the allowlist form uses.
const DN_TYPES: [(&str, DnType); 5] = [
    ("C", DnType::CountryName),
    ("ST", DnType::StateOrProvinceName),
    ("L", DnType::LocalityName),
    ("O", DnType::OrganizationName),
    ("OU", DnType::OrganizationalUnitName),
];

/// The subject of a client certificate: the `--dn` attributes in the order given, then
/// `CN=cn` last, as libvirt's guides and certtool templates lay them out.
pub fn client_subject(dn: Option<&str>, cn: &str) -> Result<DistinguishedName, PkiError> {
    let mut name = DistinguishedName::new();
    if let Some(text) = dn {
        for (ty, value) in parse_dn(text)? {
            name.push(ty, value);
        }
    }
    name.push(DnType::CommonName, common_name(cn)?);
    Ok(name)
}

/// A one-attribute subject `CN=cn`.
pub fn cn_subject(cn: &str) -> Result<DistinguishedName, PkiError> {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name(cn)?);
    Ok(name)
}

fn common_name(cn: &str) -> Result<String, PkiError> {
    let cn = cn.trim();
    if cn.is_empty() {
        return Err(PkiError::EmptyCn);
    }
    Ok(cn.to_owned())
}

/// Parses `--dn` into attributes in their order. Each type may appear once (rcgen keeps one
/// value per type), and the CN comes from `--cn`.
pub fn parse_dn(text: &str) -> Result<Vec<(DnType, DnValue)>, PkiError> {
    let bad = |reason: String| PkiError::BadDn {
        dn: text.to_owned(),
        reason,
    };
    let mut out: Vec<(DnType, DnValue)> = Vec::new();
    for part in split_unescaped(text) {
        let part = part.map_err(|()| bad("it ends in a lone '\\'".to_owned()))?;
        let Some((ty, value)) = part.split_once('=') else {
            return Err(bad(format!("{:?} is not TYPE=VALUE", part.trim())));
        };
        let ty = ty.trim();
        let value = value.trim();
        if ty.eq_ignore_ascii_case("CN") {
            return Err(bad("give the CN with --cn, not in --dn".to_owned()));
        }
        let Some((name, dn_type)) = DN_TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(ty))
        else {
            return Err(bad(format!(
                "unknown attribute {ty:?} (use C, ST, L, O or OU)"
            )));
        };
        if value.is_empty() {
            return Err(bad(format!("{name} is empty")));
        }
        if out.iter().any(|(t, _)| t == dn_type) {
            return Err(bad(format!("{name} appears twice")));
        }
        let value = if *dn_type == DnType::CountryName {
            // RFC 5280: a two-letter ISO 3166 code, encoded as a PrintableString.
            if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(bad(format!("C={value} is not a two-letter country code")));
            }
            let code = value.to_ascii_uppercase();
            DnValue::PrintableString(
                code.as_str()
                    .try_into()
                    .map_err(|_| bad(format!("C={value} is not a two-letter country code")))?,
            )
        } else {
            DnValue::Utf8String(value.to_owned())
        };
        out.push((dn_type.clone(), value));
    }
    Ok(out)
}

/// Splits at commas not preceded by a backslash, removing the escapes.
fn split_unescaped(text: &str) -> Vec<Result<String, ()>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => current.push(next),
                None => {
                    parts.push(Err(()));
                    return parts;
                }
            },
            ',' => parts.push(Ok(std::mem::take(&mut current))),
            c => current.push(c),
        }
    }
    parts.push(Ok(current));
    parts
}
