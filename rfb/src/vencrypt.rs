//! VeNCrypt (RFB security type 19) on the wire, as QEMU and gtk-vnc speak it: the 0.2
//! version exchange, the subtype list, the client's choice and its acknowledgement.
//!
//! Owns only these bytes. Only the X509 subtypes exist here (rustls has no anonymous
//! suites), numbered as QEMU and gtk-vnc number them. The TLS that follows the
//! acknowledgement, and the inner authentication, belong to the daemon's gateway.

/// The VeNCrypt version this server speaks.
pub const VERSION: [u8; 2] = [0, 2];

/// VeNCrypt subtypes with X509 certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subtype {
    X509None,
    X509Vnc,
    X509Plain,
    X509Sasl,
}

impl Subtype {
    pub fn code(self) -> u32 {
        match self {
            Subtype::X509None => 260,
            Subtype::X509Vnc => 261,
            Subtype::X509Plain => 262,
            Subtype::X509Sasl => 263,
        }
    }

    /// The security type name sessions and audit records show.
    pub fn name(self) -> &'static str {
        match self {
            Subtype::X509None => "vencrypt-x509none",
            Subtype::X509Vnc => "vencrypt-x509vnc",
            Subtype::X509Plain => "vencrypt-x509plain",
            Subtype::X509Sasl => "vencrypt-x509sasl",
        }
    }
}

/// The server's answer to the client's version: accepted (0) and the subtype list, or
/// rejected (1).
pub fn version_reply(client: [u8; 2], offered: &[Subtype]) -> Result<Vec<u8>, Vec<u8>> {
    if client != VERSION {
        return Err(vec![1]);
    }
    let mut out = vec![0, u8::try_from(offered.len()).unwrap_or(u8::MAX)];
    for subtype in offered.iter().take(usize::from(u8::MAX)) {
        out.extend_from_slice(&subtype.code().to_be_bytes());
    }
    Ok(out)
}

/// The client's chosen subtype, if it is one we offered.
pub fn parse_choice(choice: [u8; 4], offered: &[Subtype]) -> Option<Subtype> {
    let code = u32::from_be_bytes(choice);
    offered.iter().copied().find(|s| s.code() == code)
}

/// The acknowledgement of the choice: 1 accepts and starts TLS, 0 refuses.
pub fn choice_ack(accepted: bool) -> [u8; 1] {
    [u8::from(accepted)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_exchange_offers_the_subtypes_as_qemu_does() {
        assert_eq!(
            version_reply([0, 2], &[Subtype::X509Vnc]),
            Ok(vec![0, 1, 0, 0, 1, 5])
        );
        assert_eq!(version_reply([0, 1], &[Subtype::X509None]), Err(vec![1]));
    }

    #[test]
    fn only_an_offered_subtype_is_accepted() {
        let offered = [Subtype::X509None];
        assert_eq!(
            parse_choice(260u32.to_be_bytes(), &offered),
            Some(Subtype::X509None)
        );
        assert_eq!(parse_choice(261u32.to_be_bytes(), &offered), None);
        assert_eq!(
            parse_choice(257u32.to_be_bytes(), &offered),
            None,
            "no anonymous TLS"
        );
        assert_eq!(choice_ack(true), [1]);
        assert_eq!(choice_ack(false), [0]);
    }

    #[test]
    fn subtype_numbers_are_the_ones_qemu_and_gtk_vnc_use() {
        let codes: Vec<u32> = [
            Subtype::X509None,
            Subtype::X509Vnc,
            Subtype::X509Plain,
            Subtype::X509Sasl,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, vec![260, 261, 262, 263]);
    }
}
