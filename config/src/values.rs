//! Small value types shared by the config sections and domain definitions.
//!
//! Owns the libvirt-style spellings of values: booleans written as `true`/`false` or `0`/`1`,
//! socket modes written as octal strings (`"0770"`), the enums of `auth_*`, `driver`,
//! `access_drivers` and `vnc_acl_default`, and [`Secret`], which keeps passwords out of logs.
//! It does not validate combinations of keys; that is `validate`'s job.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A password or other secret. `Debug` and `Display` print `<redacted>`, so a secret cannot
/// reach a log line by accident; [`Secret::expose`] is the one way to read it. It serializes
/// as the plain string, because `dumpconf --security-info` must show it.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call this only where the value is used or deliberately shown.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Permission bits of a UNIX socket, written in the config as an octal string such as
/// `"0770"` (as libvirtd.conf writes them). Only the rwx bits (at most `0777`) are allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    /// `0777`: every local user may connect (the default of `unix_sock_ro_perms`).
    pub const WORLD: SocketMode = SocketMode(0o777);
    /// `0700`: only the socket's owner may connect (the default of `unix_sock_rw_perms`).
    pub const OWNER: SocketMode = SocketMode(0o700);

    /// A mode from its bits; `None` above `0o777`.
    pub const fn new(bits: u32) -> Option<Self> {
        if bits <= 0o777 {
            Some(SocketMode(bits))
        } else {
            None
        }
    }

    /// The permission bits, ready for `chmod`.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketMode({:04o})", self.0)
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for SocketMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let digits_ok =
            (3..=4).contains(&text.len()) && text.bytes().all(|b| matches!(b, b'0'..=b'7'));
        let bits = u32::from_str_radix(text, 8).ok().filter(|_| digits_ok);
        bits.and_then(SocketMode::new).ok_or_else(|| {
            format!(
                "\"{text}\" is not a socket mode; write 3 or 4 octal digits no higher than \
                 \"0777\", e.g. \"0770\""
            )
        })
    }
}

impl Serialize for SocketMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = SocketMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode as a string, e.g. \"0770\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketMode, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(ModeVisitor)
    }
}

/// Which driver runs the guests (`driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// Real QEMU processes.
    #[default]
    Qemu,
    /// In-process guests with a synthetic framebuffer, for demos and tests.
    Test,
}

/// How clients on a socket authenticate (`auth_unix_ro`, `auth_unix_rw`, `auth_tcp`, `auth_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// No extra step: socket permissions (UNIX) or the client certificate (TLS) decide.
    #[default]
    None,
    /// Ask polkit about the peer process (UNIX sockets only).
    Polkit,
    /// A SASL exchange on the connection.
    Sasl,
}

/// Access control drivers (`access_drivers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessDriver {
    /// Each API permission check is the polkit action `org.vmgate.api.<object>.<perm>`.
    Polkit,
}

/// What a guest with no console ACL rules does with sessions that present an identity
/// (`vnc_acl_default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclDefault {
    /// Admit them, as QEMU does without an authz object.
    #[default]
    Allow,
    /// Refuse them until rules are added.
    Deny,
}

/// Gives an enum `as_str()` (its TOML spelling) and a `Display` that prints it.
macro_rules! toml_name {
    ($($ty:ident { $($variant:ident => $name:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The value as written in TOML.
            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}
pub(crate) use toml_name;

toml_name! {
    DriverKind { Qemu => "qemu", Test => "test" }
    AuthKind { None => "none", Polkit => "polkit", Sasl => "sasl" }
    AccessDriver { Polkit => "polkit" }
    AclDefault { Allow => "allow", Deny => "deny" }
}

/// The one deserializer for boolean keys: TOML `true`/`false`, or `0`/`1` as libvirt writes
/// them. Anything else is an error that `located` ties to the key.
pub(crate) mod boolean {
    use super::*;

    struct BoolVisitor;

    impl Visitor<'_> for BoolVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean (true or false, or 0 or 1)")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
    }

    /// For `bool` fields: `#[serde(deserialize_with = "boolean::de")]`.
    pub(crate) fn de<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        d.deserialize_any(BoolVisitor)
    }

    /// For `Option<bool>` fields (with `#[serde(default)]`): a present key is `Some`.
    pub(crate) fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        d.deserialize_any(BoolVisitor).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_but_serializes_plainly() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.to_string(), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
        #[derive(Serialize)]
        struct W {
            p: Secret,
        }
        let out = toml::to_string(&W { p: s.clone() }).expect("serialize");
        assert_eq!(out.trim(), "p = \"hunter2\"");
        assert!(!format!("{:?}", Some(s)).contains("hunter2"));
    }

    #[test]
    fn socket_modes_parse_from_octal_strings() {
        assert_eq!(
            "0777".parse::<SocketMode>().map(SocketMode::bits),
            Ok(0o777)
        );
        assert_eq!("700".parse::<SocketMode>().map(SocketMode::bits), Ok(0o700));
        assert_eq!("0000".parse::<SocketMode>().map(SocketMode::bits), Ok(0));
        for bad in [
            "1777", "4755", "0778", "77", "07777", "0o777", "", "rwx", "+777", " 777",
        ] {
            let err = bad.parse::<SocketMode>().expect_err(bad);
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
        let mode = SocketMode::new(0o70).expect("mode");
        assert_eq!(mode.to_string(), "0070");
        assert_eq!(SocketMode::new(0o1000), None);
    }
}
