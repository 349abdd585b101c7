//! Kerberos logins: the GSSAPI SASL mechanism (RFC 4752) as vmgate accepts it, on MIT
//! krb5 through libgssapi (cargo feature `gssapi`).
//!
//! [`GssapiService`] is one Kerberos service (`vnc` for consoles, `libvirt` for the API):
//! its keytab, its service name and the realm whose principals are named without it.
//! A [`GssExchange`] is one login, driven by the SASL code like the rsasl mechanisms. After
//! the Kerberos context is established it offers the security layers its caller allows
//! ([`LayerPolicy`]), reads the client's choice and, when a layer was chosen, hands over a
//! [`GssLayer`] that wraps and unwraps everything the connection carries afterwards.
//!
//! rsasl's own GSSAPI server is not used: it never reports who logged in, cannot be given
//! a keytab or a service, and advertises a fixed 16 MiB receive buffer.

mod acceptor;
mod exchange;
mod layer;

pub use acceptor::GssapiService;
pub use exchange::{GssExchange, GssStep};
pub use layer::GssLayer;

pub use crate::auth::sasl_layer::LayerPolicy;

/// The security layers of RFC 4752, as the bits of its one-byte mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers(u8);

impl Layers {
    pub const NONE: Layers = Layers(1);
    pub const INTEGRITY: Layers = Layers(2);
    pub const CONFIDENTIALITY: Layers = Layers(4);

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn union(self, other: Layers) -> Layers {
        Layers(self.0 | other.0)
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Layers) -> bool {
        self.0 & other.0 == other.0
    }

    /// The single layer a client's choice names; None when it names none or several.
    pub fn single(bits: u8) -> Option<Layers> {
        [Layers::NONE, Layers::INTEGRITY, Layers::CONFIDENTIALITY]
            .into_iter()
            .find(|l| l.0 == bits)
    }

    /// The layers a login under `policy` offers.
    pub fn allowed_by(policy: LayerPolicy) -> Layers {
        match policy {
            LayerPolicy::Confidentiality => Layers::CONFIDENTIALITY,
            LayerPolicy::Any => Layers::NONE
                .union(Layers::INTEGRITY)
                .union(Layers::CONFIDENTIALITY),
            LayerPolicy::NoneOnly => Layers::NONE,
        }
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "none",
            2 => "integrity",
            4 => "confidentiality",
            _ => "several",
        }
    }
}

/// The largest wrapped packet vmgate accepts from a client, advertised in its offer.
pub const MAX_INCOMING: usize = 64 * 1024;

/// The smallest receive buffer a client may ask for; a layer cannot work below it.
pub const MIN_PEER_BUFFER: usize = 1024;

/// A principal as vmgate names it: `alice@EXAMPLE.COM`, or `alice` when its realm is
/// `local_realm`.
pub fn principal_name(principal: &str, local_realm: Option<&str>) -> String {
    match (principal.rsplit_once('@'), local_realm) {
        (Some((name, realm)), Some(local)) if realm == local && !name.is_empty() => name.to_owned(),
        _ => principal.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_local_realm_is_stripped() {
        let local = Some("EXAMPLE.COM");
        assert_eq!(principal_name("alice@EXAMPLE.COM", local), "alice");
        assert_eq!(principal_name("alice@OTHER.ORG", local), "alice@OTHER.ORG");
        assert_eq!(
            principal_name("alice@example.com", local),
            "alice@example.com"
        );
        assert_eq!(
            principal_name("alice@EXAMPLE.COM", None),
            "alice@EXAMPLE.COM"
        );
        assert_eq!(principal_name("@EXAMPLE.COM", local), "@EXAMPLE.COM");
    }

    #[test]
    fn a_choice_names_exactly_one_offered_layer() {
        assert_eq!(Layers::single(4), Some(Layers::CONFIDENTIALITY));
        assert_eq!(Layers::single(6), None);
        assert_eq!(Layers::single(0), None);
        assert!(Layers::allowed_by(LayerPolicy::Any).contains(Layers::INTEGRITY));
        assert!(!Layers::allowed_by(LayerPolicy::Confidentiality).contains(Layers::NONE));
        assert_eq!(Layers::allowed_by(LayerPolicy::NoneOnly), Layers::NONE);
    }
}
