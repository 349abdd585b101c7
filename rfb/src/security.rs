//! The security handshake messages (RFC 6143 §7.1.2, §7.1.3, Appendix A).
//!
//! Owns [`SecurityType`], the server's offer in both wire forms (the 3.7/3.8 list
//! and 3.3's single u32), the client's choice, and [`SecurityResult`] with its
//! version-dependent shape. It does not run any authentication itself: the DES
//! challenge lives in `vncauth`, VeNCrypt's exchange in `vencrypt`, SASL in the gateway.

use super::RfbError;
use super::version::ProtocolVersion;
use super::wire::{Reader, check_len, need, put_u8, put_u32};

/// Longest reason string accepted from a server (refusal or failed SecurityResult).
pub const MAX_REASON_LEN: usize = 64 * 1024;

/// An RFB security type number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityType {
    /// 1: no authentication.
    None,
    /// 2: the DES challenge-response "VNC authentication".
    VncAuth,
    /// 19: VeNCrypt (TLS with sub-types).
    VeNCrypt,
    /// 20: SASL, as QEMU implements it.
    Sasl,
    /// Any other number (0 is "invalid"; construct through [`SecurityType::from_u8`]
    /// so that a known number never ends up here).
    Other(u8),
}

impl SecurityType {
    /// The type for a wire number.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::None,
            2 => Self::VncAuth,
            19 => Self::VeNCrypt,
            20 => Self::Sasl,
            n => Self::Other(n),
        }
    }

    /// The wire number.
    pub const fn code(self) -> u8 {
        match self {
            Self::None => 1,
            Self::VncAuth => 2,
            Self::VeNCrypt => 19,
            Self::Sasl => 20,
            Self::Other(n) => n,
        }
    }
}

impl From<u8> for SecurityType {
    fn from(v: u8) -> Self {
        Self::from_u8(v)
    }
}

/// What a server says after the version exchange, as a client decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOffer {
    /// The types to choose from (3.3: exactly the one the server chose).
    Types(Vec<SecurityType>),
    /// The server refused the connection, with its reason.
    Refused(String),
}

/// Server side, 3.7 and 3.8: the list of offered types (u8 count, then the types).
pub fn encode_security_types(types: &[SecurityType]) -> Result<Vec<u8>, RfbError> {
    let count = u8::try_from(types.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            RfbError::Unencodable(format!("a list of {} security types", types.len()))
        })?;
    let mut out = Vec::with_capacity(types.len() + 1);
    put_u8(&mut out, count);
    out.extend(types.iter().map(|t| t.code()));
    Ok(out)
}

/// Server side, 3.3: the single type the server chose, as a u32. Only None and
/// VncAuth exist in 3.3; a server with nothing else to offer must refuse with
/// [`encode_security_failure`].
pub fn encode_security_type_v3_3(t: SecurityType) -> Result<[u8; 4], RfbError> {
    match t {
        SecurityType::None | SecurityType::VncAuth => Ok(u32::from(t.code()).to_be_bytes()),
        other => Err(RfbError::Unencodable(format!(
            "security type {} for a 3.3 client",
            other.code()
        ))),
    }
}

/// Server side: refuse the connection instead of offering types. 3.7/3.8 send a
/// zero count, 3.3 the "invalid" type 0 as a u32; both follow with the reason string.
pub fn encode_security_failure(version: ProtocolVersion, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 8);
    if version.has_security_list() {
        put_u8(&mut out, 0);
    } else {
        put_u32(&mut out, 0);
    }
    put_reason(&mut out, reason);
    out
}

/// Server side: the client's one-byte choice (3.7/3.8), which must be one of the
/// offered types.
pub fn parse_security_choice(byte: u8, offered: &[SecurityType]) -> Result<SecurityType, RfbError> {
    let chosen = SecurityType::from_u8(byte);
    if offered.contains(&chosen) {
        Ok(chosen)
    } else {
        Err(RfbError::SecurityTypeNotOffered(byte))
    }
}

/// Client side, incremental: the server's offer in the form `version` uses.
pub fn decode_security_offer(
    version: ProtocolVersion,
    buf: &[u8],
) -> Result<Option<(SecurityOffer, usize)>, RfbError> {
    let mut r = Reader::new(buf);
    let first = if version.has_security_list() {
        u32::from(need!(r.u8()))
    } else {
        need!(r.u32())
    };
    let offer = if first == 0 {
        SecurityOffer::Refused(need!(read_reason(&mut r)?))
    } else if version.has_security_list() {
        let types = need!(r.bytes(first as usize));
        SecurityOffer::Types(types.iter().copied().map(SecurityType::from_u8).collect())
    } else {
        let byte = u8::try_from(first)
            .map_err(|_| RfbError::Unsupported(format!("3.3 security type {first}")))?;
        SecurityOffer::Types(vec![SecurityType::from_u8(byte)])
    };
    Ok(Some((offer, r.position())))
}

/// The outcome of authentication as sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityResult {
    /// u32 0.
    Ok,
    /// u32 1, then (3.8 only) the reason string. Any non-zero value decodes as failed.
    Failed(String),
}

impl SecurityResult {
    /// Whether a SecurityResult is sent at all after `security` under `version`:
    /// always in 3.8; before 3.8 the None type goes straight to ClientInit.
    pub fn follows(version: ProtocolVersion, security: SecurityType) -> bool {
        version == ProtocolVersion::V3_8 || security != SecurityType::None
    }

    /// The wire form for `version` (the reason is dropped before 3.8).
    pub fn encode(&self, version: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        match self {
            Self::Ok => put_u32(&mut out, 0),
            Self::Failed(reason) => {
                put_u32(&mut out, 1);
                if version.has_failure_reason() {
                    put_reason(&mut out, reason);
                }
            }
        }
        out
    }

    /// Client side, incremental.
    pub fn decode(version: ProtocolVersion, buf: &[u8]) -> Result<Option<(Self, usize)>, RfbError> {
        let mut r = Reader::new(buf);
        let result = match need!(r.u32()) {
            0 => Self::Ok,
            _ if version.has_failure_reason() => Self::Failed(need!(read_reason(&mut r)?)),
            _ => Self::Failed(String::new()),
        };
        Ok(Some((result, r.position())))
    }
}

fn put_reason(out: &mut Vec<u8>, reason: &str) {
    // A reason is ours and short; clamp rather than fail so that refusing can't error.
    let bytes = reason.as_bytes();
    let bytes = bytes.get(..MAX_REASON_LEN).unwrap_or(bytes);
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// A u32-length-prefixed reason string; `Ok(None)` when incomplete.
fn read_reason(r: &mut Reader<'_>) -> Result<Option<String>, RfbError> {
    let len = need!(r.u32());
    let len = check_len("reason string", u64::from(len), MAX_REASON_LEN)?;
    let bytes = need!(r.bytes(len));
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::*;

    #[test]
    fn type_numbers() {
        for (n, t) in [
            (1, SecurityType::None),
            (2, SecurityType::VncAuth),
            (19, SecurityType::VeNCrypt),
            (20, SecurityType::Sasl),
            (0, SecurityType::Other(0)),
            (16, SecurityType::Other(16)),
        ] {
            assert_eq!(SecurityType::from_u8(n), t);
            assert_eq!(t.code(), n);
        }
    }

    #[test]
    fn offer_list_bytes() {
        let types = [
            SecurityType::VeNCrypt,
            SecurityType::Sasl,
            SecurityType::VncAuth,
        ];
        let bytes = encode_security_types(&types).ok();
        assert_eq!(bytes.as_deref(), Some(&[3u8, 19, 20, 2][..]));
        let (offer, used) = decode_security_offer(V3_8, &[3, 19, 20, 2])
            .ok()
            .flatten()
            .unzip();
        assert_eq!(offer, Some(SecurityOffer::Types(types.to_vec())));
        assert_eq!(used, Some(4));
        assert!(encode_security_types(&[]).is_err());
        assert!(encode_security_types(&[SecurityType::None; 256]).is_err());
    }

    #[test]
    fn offer_v3_3_bytes() {
        assert_eq!(
            encode_security_type_v3_3(SecurityType::VncAuth).ok(),
            Some([0, 0, 0, 2])
        );
        assert!(encode_security_type_v3_3(SecurityType::VeNCrypt).is_err());
        let got = decode_security_offer(V3_3, &[0, 0, 0, 1]).ok().flatten();
        assert_eq!(
            got,
            Some((SecurityOffer::Types(vec![SecurityType::None]), 4))
        );
        assert!(decode_security_offer(V3_3, &[0, 0, 1, 0]).is_err());
    }

    #[test]
    fn refusal_bytes() {
        let v38 = [0, 0, 0, 0, 4, b'b', b'u', b's', b'y'];
        assert_eq!(encode_security_failure(V3_8, "busy"), v38);
        let v33 = [0, 0, 0, 0, 0, 0, 0, 4, b'b', b'u', b's', b'y'];
        assert_eq!(encode_security_failure(V3_3, "busy"), v33);
        let refused = Some((SecurityOffer::Refused("busy".into()), 9));
        assert_eq!(decode_security_offer(V3_7, &v38).ok().flatten(), refused);
        assert_eq!(decode_security_offer(V3_7, &v38[..8]).ok().flatten(), None);
        let huge = [0, 0, 0x10, 0, 0];
        assert!(matches!(
            decode_security_offer(V3_8, &huge),
            Err(RfbError::TooLong { .. })
        ));
    }

    #[test]
    fn choice_must_be_offered() {
        let offered = [SecurityType::VncAuth];
        assert_eq!(
            parse_security_choice(2, &offered).ok(),
            Some(SecurityType::VncAuth)
        );
        assert!(matches!(
            parse_security_choice(1, &offered),
            Err(RfbError::SecurityTypeNotOffered(1))
        ));
    }

    #[test]
    fn security_result_shapes() {
        assert_eq!(SecurityResult::Ok.encode(V3_3), [0, 0, 0, 0]);
        let failed = SecurityResult::Failed("no".into());
        assert_eq!(failed.encode(V3_8), [0, 0, 0, 1, 0, 0, 0, 2, b'n', b'o']);
        assert_eq!(failed.encode(V3_7), [0, 0, 0, 1]);
        assert_eq!(failed.encode(V3_3), [0, 0, 0, 1]);
        let decoded = SecurityResult::decode(V3_8, &failed.encode(V3_8))
            .ok()
            .flatten();
        assert_eq!(decoded, Some((failed, 10)));
        let decoded = SecurityResult::decode(V3_7, &[0, 0, 0, 1, 9])
            .ok()
            .flatten();
        assert_eq!(decoded, Some((SecurityResult::Failed(String::new()), 4)));
        assert_eq!(
            SecurityResult::decode(V3_8, &[0, 0, 0, 1, 0]).ok(),
            Some(None)
        );
    }

    #[test]
    fn result_follows_rules() {
        assert!(SecurityResult::follows(V3_8, SecurityType::None));
        assert!(!SecurityResult::follows(V3_7, SecurityType::None));
        assert!(!SecurityResult::follows(V3_3, SecurityType::None));
        assert!(SecurityResult::follows(V3_3, SecurityType::VncAuth));
    }
}
