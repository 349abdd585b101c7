//! The domain state machine: the states a guest can be in, which operations each state
//! allows, and the reasons recorded with a state. Every lifecycle guard lives here so that
//! "wrong state" is decided in one place and reported the same way for every driver.

use std::fmt;

/// A guest's state, as virsh prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    ShutOff,
    Running,
    Paused,
}

/// A lifecycle operation, named as the error message and the audit log name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Start,
    Shutdown,
    Destroy,
    Reboot,
    Reset,
    Suspend,
    Resume,
    Undefine,
    /// A definition giving a new name with the UUID of a domain whose old name `define`
    /// now refuses (all digits, or a UUID).
    Rename,
}

impl DomainState {
    pub fn is_active(self) -> bool {
        self != DomainState::ShutOff
    }

    /// Whether `op` is allowed in this state.
    pub fn allows(self, op: Operation) -> bool {
        use DomainState::*;
        use Operation::*;
        match op {
            Start | Undefine | Rename => self == ShutOff,
            Shutdown | Reboot | Suspend => self == Running,
            Resume => self == Paused,
            Destroy | Reset => self.is_active(),
        }
    }

    /// What the operator should do instead, for the error message.
    pub fn hint(self, op: Operation) -> &'static str {
        use DomainState::*;
        use Operation::*;
        match (self, op) {
            (ShutOff, _) => "start it first",
            (Paused, Shutdown | Reboot | Suspend) => "resume it first",
            (Running, Resume) => "it is not paused",
            (_, Start) => "it is already active",
            (_, Undefine | Rename) => "stop it first (vmgate destroy or shutdown)",
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

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Start => "start",
            Operation::Shutdown => "shut down",
            Operation::Destroy => "destroy",
            Operation::Reboot => "reboot",
            Operation::Reset => "reset",
            Operation::Suspend => "suspend",
            Operation::Resume => "resume",
            Operation::Undefine => "undefine",
            Operation::Rename => "rename",
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
    use super::{DomainState::*, Operation::*, *};

    #[test]
    fn guards_follow_the_libvirt_state_machine() {
        let allowed = |s: DomainState| {
            [
                Start, Shutdown, Destroy, Reboot, Reset, Suspend, Resume, Undefine, Rename,
            ]
            .into_iter()
            .filter(|op| s.allows(*op))
            .collect::<Vec<_>>()
        };
        assert_eq!(allowed(ShutOff), vec![Start, Undefine, Rename]);
        assert_eq!(
            allowed(Running),
            vec![Shutdown, Destroy, Reboot, Reset, Suspend]
        );
        assert_eq!(allowed(Paused), vec![Destroy, Reset, Resume]);
    }

    #[test]
    fn states_print_as_virsh_does() {
        assert_eq!(ShutOff.to_string(), "shut off");
        assert_eq!(Running.to_string(), "running");
        assert_eq!(Paused.to_string(), "paused");
    }
}
