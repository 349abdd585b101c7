//! Client-side handshake decisions, as pure functions.
//!
//! Owns what an RFB client decides between reading and writing during the
//! handshake: which version to answer, which offered security type to pick, what
//! to send for it, and how to read the outcome. The gateway's backend connection,
//! the tests and the benchmarks all drive these through
//! [`client_handshake`](super::io::client_handshake) or their own I/O.

use super::RfbError;
use super::security::{SecurityOffer, SecurityResult, SecurityType};
use super::version::ProtocolVersion;

/// What a client is willing to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// The VNC password, if VNC authentication may be used.
    pub password: Option<Vec<u8>>,
    /// The ClientInit shared flag.
    pub shared: bool,
}

/// Step 1: the version to answer to the server's ProtocolVersion, and its bytes.
pub fn version_reply(
    server_version: &[u8; ProtocolVersion::LEN],
) -> Result<(ProtocolVersion, [u8; ProtocolVersion::LEN]), RfbError> {
    let version = ProtocolVersion::negotiate_from_server(server_version)?;
    Ok((version, version.encode()))
}

/// Step 2: the type to use from the server's offer. VNC authentication is preferred
/// when a password is configured (a server offering it alongside None wants it),
/// then None. A refusal becomes [`RfbError::ConnectionRefused`].
pub fn choose_security(
    offer: SecurityOffer,
    config: &ClientConfig,
) -> Result<SecurityType, RfbError> {
    let types = match offer {
        SecurityOffer::Types(types) => types,
        SecurityOffer::Refused(reason) => return Err(RfbError::ConnectionRefused(reason)),
    };
    let mut preference = Vec::with_capacity(2);
    if config.password.is_some() {
        preference.push(SecurityType::VncAuth);
    }
    preference.push(SecurityType::None);
    preference
        .into_iter()
        .find(|t| types.contains(t))
        .ok_or(RfbError::NoCommonSecurityType(types))
}

/// Step 3: the bytes announcing the choice: one byte from 3.7 on, nothing in 3.3
/// (where the server chose).
pub fn security_choice_bytes(version: ProtocolVersion, chosen: SecurityType) -> Vec<u8> {
    if version.has_security_list() {
        vec![chosen.code()]
    } else {
        Vec::new()
    }
}

/// Step 5: a decoded SecurityResult as success or [`RfbError::AuthenticationFailed`].
pub fn check_security_result(result: SecurityResult) -> Result<(), RfbError> {
    match result {
        SecurityResult::Ok => Ok(()),
        SecurityResult::Failed(reason) => Err(RfbError::AuthenticationFailed(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecurityType::*;

    #[test]
    fn version_reply_bytes() {
        let got = version_reply(b"RFB 003.008\n").ok();
        assert_eq!(got, Some((ProtocolVersion::V3_8, *b"RFB 003.008\n")));
        let got = version_reply(b"RFB 003.889\n").ok();
        assert_eq!(got, Some((ProtocolVersion::V3_8, *b"RFB 003.008\n")));
    }

    #[test]
    fn security_choice() {
        let with_pw = ClientConfig {
            password: Some(b"pw".to_vec()),
            shared: true,
        };
        let without = ClientConfig::default();
        let offer = |t: &[SecurityType]| SecurityOffer::Types(t.to_vec());
        assert_eq!(
            choose_security(offer(&[None, VncAuth]), &with_pw).ok(),
            Some(VncAuth)
        );
        assert_eq!(
            choose_security(offer(&[None, VncAuth]), &without).ok(),
            Some(None)
        );
        assert!(matches!(
            choose_security(offer(&[VncAuth]), &without),
            Err(RfbError::NoCommonSecurityType(_))
        ));
        assert!(matches!(
            choose_security(offer(&[VeNCrypt, Sasl]), &with_pw),
            Err(RfbError::NoCommonSecurityType(_))
        ));
        assert!(matches!(
            choose_security(SecurityOffer::Refused("full".into()), &with_pw),
            Err(RfbError::ConnectionRefused(r)) if r == "full"
        ));
    }

    #[test]
    fn choice_bytes_depend_on_version() {
        assert_eq!(security_choice_bytes(ProtocolVersion::V3_8, VncAuth), [2]);
        assert!(security_choice_bytes(ProtocolVersion::V3_3, VncAuth).is_empty());
    }
}
