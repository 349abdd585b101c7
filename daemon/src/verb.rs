//! The lifecycle verbs: the daemon's one list of what can be done to a domain. `core`
//! checks a verb against the state machine (`core::state`) and runs it, `driver` performs
//! the verbs of a running guest, and `rpc` names the verb of the methods that map one to
//! one (destroy, reboot, reset, suspend, resume). This module is a leaf, importing nothing
//! from the crate, so that both `core` and the `driver` below it may use it.
//!
//! The verbs a running guest performs are an enum of their own, [`GuestVerb`], nested in
//! [`Verb`]: `Guest::perform` takes a `GuestVerb`, so asking a driver to start, undefine or
//! rename does not compile, and each verb is still declared once. A new verb is a variant
//! here, its arms in the state machine and the drivers, and its gRPC method.

use std::fmt;

/// A lifecycle verb; it prints (`Display`) as error messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Start,
    Undefine,
    /// A definition giving a new name with the UUID of a domain whose old name `define`
    /// now refuses (all digits, or a UUID).
    Rename,
    /// A verb the running guest performs, through its driver.
    Guest(GuestVerb),
}

/// A verb a running guest performs. Its driver returns once the request is made; the
/// effect shows in the guest's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestVerb {
    /// Guest-cooperative power off (ACPI power button).
    Shutdown,
    /// Hard stop.
    Destroy,
    /// Guest-cooperative reboot.
    Reboot,
    /// Hard reset.
    Reset,
    Suspend,
    Resume,
}

impl From<GuestVerb> for Verb {
    fn from(verb: GuestVerb) -> Verb {
        Verb::Guest(verb)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verb::Start => f.write_str("start"),
            Verb::Undefine => f.write_str("undefine"),
            Verb::Rename => f.write_str("rename"),
            Verb::Guest(verb) => fmt::Display::fmt(verb, f),
        }
    }
}

impl fmt::Display for GuestVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestVerb::Shutdown => "shut down",
            GuestVerb::Destroy => "destroy",
            GuestVerb::Reboot => "reboot",
            GuestVerb::Reset => "reset",
            GuestVerb::Suspend => "suspend",
            GuestVerb::Resume => "resume",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_print_as_error_messages_name_them() {
        assert_eq!(Verb::Start.to_string(), "start");
        assert_eq!(Verb::Rename.to_string(), "rename");
        assert_eq!(Verb::from(GuestVerb::Shutdown).to_string(), "shut down");
        assert_eq!(Verb::Guest(GuestVerb::Resume).to_string(), "resume");
    }
}
