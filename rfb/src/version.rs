//! The ProtocolVersion handshake message (RFC 6143 §7.1.1).
//!
//! Owns parsing and encoding of the 12-byte `RFB xxx.yyy\n` string and the two
//! mapping rules from numbers to a version we speak: the server's rule for what a
//! client answered ([`ProtocolVersion::parse`], QEMU's behaviour) and the client's
//! rule for what a server offered ([`ProtocolVersion::negotiate_from_server`]).

use super::RfbError;

/// A protocol version both sides can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 3.3: the server picks the security type and sends it as one u32.
    V3_3,
    /// 3.7: the security type list; no SecurityResult after None; no failure reason.
    V3_7,
    /// 3.8: the security type list; SecurityResult always, with a reason on failure.
    V3_8,
}

impl ProtocolVersion {
    /// Length of the ProtocolVersion message.
    pub const LEN: usize = 12;

    /// The wire form, e.g. `b"RFB 003.008\n"`.
    pub const fn encode(self) -> [u8; Self::LEN] {
        match self {
            Self::V3_3 => *b"RFB 003.003\n",
            Self::V3_7 => *b"RFB 003.007\n",
            Self::V3_8 => *b"RFB 003.008\n",
        }
    }

    /// Server side: the version a client answered, mapped as QEMU does.
    ///
    /// 3.3, 3.7 and 3.8 are themselves; 3.4, 3.5 and 3.6 are treated as 3.3 (RFC 6143
    /// §7.1.1: such clients do not implement the 3.7/3.8 handshake); 3.889 (Apple's
    /// Remote Desktop) is treated as 3.8. Any other number is
    /// [`RfbError::UnsupportedVersion`]; bytes that are not `RFB xxx.yyy\n` are
    /// [`RfbError::MalformedVersion`].
    pub fn parse(bytes: &[u8; Self::LEN]) -> Result<Self, RfbError> {
        let (major, minor) = parse_numbers(bytes)?;
        match (major, minor) {
            (3, 3..=6) => Ok(Self::V3_3),
            (3, 7) => Ok(Self::V3_7),
            (3, 8) | (3, 889) => Ok(Self::V3_8),
            _ => Err(RfbError::UnsupportedVersion { major, minor }),
        }
    }

    /// Client side: the version to answer to a server that offered `bytes`.
    ///
    /// The client answers the highest version it speaks that is not above the
    /// server's: 3.8 for 3.8 and anything higher (4.x and 5.x servers accept 3.8),
    /// 3.8 for Apple's 3.889, 3.7 for 3.7, and 3.3 for 3.3 to 3.6.
    pub fn negotiate_from_server(bytes: &[u8; Self::LEN]) -> Result<Self, RfbError> {
        let (major, minor) = parse_numbers(bytes)?;
        match (major, minor) {
            (3, 3..=6) => Ok(Self::V3_3),
            (3, 7) => Ok(Self::V3_7),
            (3, 8..) | (4.., _) => Ok(Self::V3_8),
            _ => Err(RfbError::UnsupportedVersion { major, minor }),
        }
    }

    /// Whether the security handshake uses the list form (3.7 and later).
    pub const fn has_security_list(self) -> bool {
        !matches!(self, Self::V3_3)
    }

    /// Whether a failed SecurityResult carries a reason string (3.8 only).
    pub const fn has_failure_reason(self) -> bool {
        matches!(self, Self::V3_8)
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::V3_3 => "3.3",
            Self::V3_7 => "3.7",
            Self::V3_8 => "3.8",
        };
        f.write_str(s)
    }
}

/// Splits `RFB xxx.yyy\n` into its two numbers; exactly three ASCII digits each.
fn parse_numbers(bytes: &[u8; ProtocolVersion::LEN]) -> Result<(u32, u32), RfbError> {
    let malformed = || RfbError::malformed_version(bytes);
    let [b'R', b'F', b'B', b' ', a0, a1, a2, b'.', b0, b1, b2, b'\n'] = *bytes else {
        return Err(malformed());
    };
    let number = |digits: [u8; 3]| {
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    match (number([a0, a1, a2]), number([b0, b1, b2])) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_literal_strings() {
        assert_eq!(
            ProtocolVersion::V3_8.encode(),
            [
                0x52, 0x46, 0x42, 0x20, 0x30, 0x30, 0x33, 0x2e, 0x30, 0x30, 0x38, 0x0a
            ]
        );
        assert_eq!(&ProtocolVersion::V3_7.encode(), b"RFB 003.007\n");
        assert_eq!(&ProtocolVersion::V3_3.encode(), b"RFB 003.003\n");
    }

    #[test]
    fn server_side_mapping_follows_qemu() {
        let p = |s: &[u8; 12]| ProtocolVersion::parse(s);
        assert_eq!(p(b"RFB 003.003\n").ok(), Some(ProtocolVersion::V3_3));
        assert_eq!(p(b"RFB 003.004\n").ok(), Some(ProtocolVersion::V3_3));
        assert_eq!(p(b"RFB 003.005\n").ok(), Some(ProtocolVersion::V3_3));
        assert_eq!(p(b"RFB 003.006\n").ok(), Some(ProtocolVersion::V3_3));
        assert_eq!(p(b"RFB 003.007\n").ok(), Some(ProtocolVersion::V3_7));
        assert_eq!(p(b"RFB 003.008\n").ok(), Some(ProtocolVersion::V3_8));
        assert_eq!(p(b"RFB 003.889\n").ok(), Some(ProtocolVersion::V3_8));
        for bad in [b"RFB 003.009\n", b"RFB 004.001\n", b"RFB 003.002\n"] {
            assert!(matches!(p(bad), Err(RfbError::UnsupportedVersion { .. })));
        }
    }

    #[test]
    fn malformed_versions_are_errors() {
        for bad in [
            b"RFB 003.008\r",
            b"RFB 03.0008\n",
            b"rfb 003.008\n",
            b"RFB 003,008\n",
            b"RFB 0x3.008\n",
            b"RFB 003.00+\n",
            b"\0\0\0\0\0\0\0\0\0\0\0\0",
        ] {
            assert!(matches!(
                ProtocolVersion::parse(bad),
                Err(RfbError::MalformedVersion(_))
            ));
        }
    }

    #[test]
    fn client_side_negotiation() {
        let n = |s: &[u8; 12]| ProtocolVersion::negotiate_from_server(s).ok();
        assert_eq!(n(b"RFB 003.008\n"), Some(ProtocolVersion::V3_8));
        assert_eq!(n(b"RFB 005.000\n"), Some(ProtocolVersion::V3_8));
        assert_eq!(n(b"RFB 003.889\n"), Some(ProtocolVersion::V3_8));
        assert_eq!(n(b"RFB 003.007\n"), Some(ProtocolVersion::V3_7));
        assert_eq!(n(b"RFB 003.005\n"), Some(ProtocolVersion::V3_3));
        assert_eq!(n(b"RFB 002.000\n"), None);
    }
}
