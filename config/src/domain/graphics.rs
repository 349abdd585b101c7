//! The `[graphics]` table of a domain definition: the guest's console as the VNC gateway
//! serves it (listen address, port or autoport, per-guest password and its expiry, the
//! `connected` policy on password changes and revocations, and the share policy).
//!
//! Owns the schema and how `passwd_valid_to` is read (an RFC 3339 string or a TOML
//! datetime with an offset); the rules live in `rules`.

use std::fmt;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::values::{Secret, boolean, toml_name};

/// A guest's console (`[graphics]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graphics {
    /// The console protocol; only `"vnc"`.
    pub r#type: GraphicsType,
    /// IP address this guest's console listens on; unset means `[vnc] vnc_listen`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Pick a free port from `remote_display_port_min` upwards; unset means true when no
    /// `port` is given.
    #[serde(default, deserialize_with = "boolean::de_opt")]
    pub autoport: Option<bool>,
    /// A fixed TCP port (5900-65535; display = port - 5900).
    #[serde(default)]
    pub port: Option<u16>,
    /// This guest's VNC password (1 to 8 bytes); unset means `[vnc] vnc_password`.
    #[serde(default)]
    pub passwd: Option<Secret>,
    /// When `passwd` expires, with a UTC offset (RFC 3339).
    #[serde(default, deserialize_with = "deserialize_valid_to")]
    pub passwd_valid_to: Option<OffsetDateTime>,
    /// What happens to connected clients when the password changes or expires, or their
    /// access is revoked.
    #[serde(default)]
    pub connected: ConnectedPolicy,
    /// How the gateway treats a client that asks for exclusive access.
    #[serde(default)]
    pub share_policy: SharePolicy,
}

impl Graphics {
    /// A VNC console with every optional setting left to its default.
    pub fn vnc() -> Self {
        Graphics {
            r#type: GraphicsType::Vnc,
            listen: None,
            autoport: None,
            port: None,
            passwd: None,
            passwd_valid_to: None,
            connected: ConnectedPolicy::default(),
            share_policy: SharePolicy::default(),
        }
    }

    /// Whether the port is picked automatically: `autoport`, else true when no `port` is set.
    pub fn effective_autoport(&self) -> bool {
        self.autoport.unwrap_or(self.port.is_none())
    }
}

/// Console protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphicsType {
    /// RFB, served by the per-guest VNC gateway.
    Vnc,
}

/// libvirt's `connected` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectedPolicy {
    /// Leave connected clients alone (libvirt's default).
    Keep,
    /// Disconnect clients whose password or access is gone (vmgate's default).
    #[default]
    Disconnect,
    /// Refuse a password change while clients are connected.
    Fail,
}

/// What the gateway does with RFB's shared flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SharePolicy {
    /// As QEMU: an exclusive client disconnects the others, and while it is connected new
    /// clients are refused.
    #[default]
    AllowExclusive,
    /// A client asking for exclusive access is refused.
    ForceShared,
    /// The flag is ignored; everybody connects.
    Ignore,
}

toml_name! {
    GraphicsType { Vnc => "vnc" }
    ConnectedPolicy { Keep => "keep", Disconnect => "disconnect", Fail => "fail" }
    SharePolicy {
        AllowExclusive => "allow-exclusive",
        ForceShared => "force-shared",
        Ignore => "ignore",
    }
}

const VALID_TO_EXAMPLE: &str = "2030-01-31T18:00:00Z";

fn deserialize_valid_to<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    let text = match toml::Value::deserialize(d)? {
        toml::Value::String(text) => text,
        toml::Value::Datetime(dt)
            if dt.date.is_some() && dt.time.is_some() && dt.offset.is_some() =>
        {
            dt.to_string()
        }
        toml::Value::Datetime(dt) => {
            return Err(D::Error::custom(format!(
                "{dt} has no date, time or UTC offset; write a full date and time with an \
                 offset, e.g. {VALID_TO_EXAMPLE}"
            )));
        }
        other => {
            return Err(D::Error::custom(format!(
                "expected an RFC 3339 date and time such as {VALID_TO_EXAMPLE}, found {}",
                other.type_str()
            )));
        }
    };
    parse_rfc3339(&text).map(Some).map_err(D::Error::custom)
}

/// Parses RFC 3339, also accepting a space between date and time as RFC 3339 allows.
pub(crate) fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    let normalized: String = text
        .char_indices()
        .map(|(i, c)| if i == 10 && c == ' ' { 'T' } else { c })
        .collect();
    OffsetDateTime::parse(&normalized, &Rfc3339).map_err(|_| {
        format!(
            "\"{text}\" is not an RFC 3339 date and time with a UTC offset; write e.g. \
             {VALID_TO_EXAMPLE}"
        )
    })
}

/// Formats as RFC 3339, keeping the offset.
pub(crate) fn format_rfc3339(when: &OffsetDateTime) -> Option<String> {
    when.format(&Rfc3339).ok()
}
