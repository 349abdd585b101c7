//! The domain state machine: the states a guest can be in, which lifecycle verbs
//! (`crate::verb`) each state allows and what to do instead of a refused one, and the
//! reasons recorded with a state. Every lifecycle guard lives here so that "wrong state" is
//! decided in one place and reported the same way for every driver.

use std::fmt;

use crate::verb::{GuestVerb, Verb};

/// A guest's state, as virsh prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    ShutOff,
    Running,
    Paused,
}

impl DomainState {
    pub fn is_active(self) -> bool {
        self != DomainState::ShutOff
    }

    /// Whether `verb` is allowed in this state.
    pub fn allows(self, verb: Verb) -> bool {
        use DomainState::*;
        use GuestVerb::*;
        match verb {
            Verb::Start | Verb::Undefine | Verb::Rename => self == ShutOff,
            Verb::Guest(Shutdown | Reboot | Suspend) => self == Running,
            Verb::Guest(Resume) => self == Paused,
            Verb::Guest(Destroy | Reset) => self.is_active(),
        }
    }

    /// What the operator should do instead, for the error message.
    pub fn hint(self, verb: Verb) -> &'static str {
        use DomainState::*;
        use GuestVerb::*;
        match (self, verb) {
            (ShutOff, _) => "start it first",
            (Paused, Verb::Guest(Shutdown | Reboot | Suspend)) => "resume it first",
            (Running, Verb::Guest(Resume)) => "it is not paused",
            (_, Verb::Start) => "it is already active",
            (_, Verb::Undefine | Verb::Rename) => "stop it first (vmgate destroy or shutdown)",
            _ => "check its state with vmgate domstate",
        }
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DomainState::ShutOff => "shut off",
            DomainState::Running => "running",
            DomainState::Paused => "paused",
        })
    }
}

/// Why a guest is in its state (libvirt's state reasons, spelled for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateReason {
    /// Never started in this daemon's life, or defined while off.
    Unknown,
    Booted,
    /// Paused on request.
    User,
    /// Resumed on request.
    Unpaused,
    Shutdown,
    Destroyed,
    Crashed,
    /// The daemon stopped and took its in-process guests with it.
    DaemonStopped,
}

impl StateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StateReason::Unknown => "unknown",
            StateReason::Booted => "booted",
            StateReason::User => "user",
            StateReason::Unpaused => "unpaused",
            StateReason::Shutdown => "shutdown",
            StateReason::Destroyed => "destroyed",
            StateReason::Crashed => "crashed",
            StateReason::DaemonStopped => "daemon stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DomainState::*, *};
    use crate::verb::GuestVerb::*;

    #[test]
    fn guards_follow_the_libvirt_state_machine() {
        let allowed = |s: DomainState| {
            [
                Verb::Start,
                Verb::Guest(Shutdown),
                Verb::Guest(Destroy),
                Verb::Guest(Reboot),
                Verb::Guest(Reset),
                Verb::Guest(Suspend),
                Verb::Guest(Resume),
                Verb::Undefine,
                Verb::Rename,
            ]
            .into_iter()
            .filter(|verb| s.allows(*verb))
            .collect::<Vec<_>>()
        };
        assert_eq!(
            allowed(ShutOff),
            vec![Verb::Start, Verb::Undefine, Verb::Rename]
        );
        assert_eq!(
            allowed(Running),
            [Shutdown, Destroy, Reboot, Reset, Suspend].map(Verb::Guest)
        );
        assert_eq!(allowed(Paused), [Destroy, Reset, Resume].map(Verb::Guest));
    }

    #[test]
    fn refused_verbs_say_what_to_do_instead() {
        assert_eq!(ShutOff.hint(Verb::Guest(Reboot)), "start it first");
        assert_eq!(Paused.hint(Verb::Guest(Suspend)), "resume it first");
        assert_eq!(Running.hint(Verb::Guest(Resume)), "it is not paused");
        assert_eq!(Paused.hint(Verb::Start), "it is already active");
        assert_eq!(
            Running.hint(Verb::Rename),
            "stop it first (vmgate destroy or shutdown)"
        );
    }

    #[test]
    fn states_print_as_virsh_does() {
        assert_eq!(ShutOff.to_string(), "shut off");
        assert_eq!(Running.to_string(), "running");
        assert_eq!(Paused.to_string(), "paused");
    }
}
