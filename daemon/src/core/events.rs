//! Domain events: what happened to a domain, as `vmgate event` prints it (libvirt's
//! lifecycle and reboot events). The manager publishes one for every definition change
//! and every state change, whoever caused it (an operator, the guest itself, a crash, a
//! daemon restart), on a broadcast channel: a listener that falls behind loses the oldest
//! events and is told how many, and never slows the domain down.

use std::time::SystemTime;

use tokio::sync::broadcast;
use uuid::Uuid;

/// Events kept for a listener that falls behind.
pub const EVENT_BACKLOG: usize = 1024;

/// What happened, named as virsh names libvirt's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The definition was created or changed.
    Defined,
    Undefined,
    /// The guest started, or a restarted daemon found it running.
    Started,
    Suspended,
    Resumed,
    /// The guest is no longer running; the detail says why.
    Stopped,
    /// The guest rebooted (asked to, or on its own).
    Reboot,
    /// The guest was reset (`reset`).
    Reset,
}

impl EventKind {
    /// libvirt's event name: "lifecycle" for state changes, else the event's own.
    pub fn family(self) -> &'static str {
        match self {
            EventKind::Reboot => "reboot",
            EventKind::Reset => "reset",
            _ => "lifecycle",
        }
    }

    /// The lifecycle event's name as virsh prints it ("Started", "Stopped", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Defined => "Defined",
            EventKind::Undefined => "Undefined",
            EventKind::Started => "Started",
            EventKind::Suspended => "Suspended",
            EventKind::Resumed => "Resumed",
            EventKind::Stopped => "Stopped",
            EventKind::Reboot => "Reboot",
            EventKind::Reset => "Reset",
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainEvent {
    pub time: SystemTime,
    pub domain: String,
    pub uuid: Uuid,
    pub kind: EventKind,
    /// Why, as virsh's detail: "Booted", "Reattached", "Shutdown", "Destroyed", "Crashed",
    /// "Updated", "Added", "Paused", "Unpaused", ...
    pub detail: String,
}

/// The channel events go out on.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<DomainEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(EVENT_BACKLOG).0,
        }
    }
}

impl EventBus {
    /// Publishes an event; nobody listening is fine.
    pub fn publish(&self, domain: &str, uuid: Uuid, kind: EventKind, detail: &str) {
        tracing::debug!(domain, event = kind.as_str(), detail, "domain event");
        let _ = self.sender.send(DomainEvent {
            time: SystemTime::now(),
            domain: domain.to_owned(),
            uuid,
            kind,
            detail: detail.to_owned(),
        });
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_sees_events_in_order_and_a_late_one_only_later_ones() {
        let bus = EventBus::default();
        let uuid = Uuid::new_v4();
        let mut early = bus.subscribe();
        bus.publish("alpha", uuid, EventKind::Started, "Booted");
        let mut late = bus.subscribe();
        bus.publish("alpha", uuid, EventKind::Stopped, "Destroyed");
        let first = early.try_recv().expect("first");
        assert_eq!(
            (first.kind, first.detail.as_str()),
            (EventKind::Started, "Booted")
        );
        assert_eq!(early.try_recv().expect("second").kind, EventKind::Stopped);
        assert_eq!(
            late.try_recv().expect("only the later").kind,
            EventKind::Stopped
        );
        assert!(late.try_recv().is_err());
    }

    #[test]
    fn a_listener_that_falls_behind_is_told_how_much_it_lost() {
        let bus = EventBus::default();
        let mut slow = bus.subscribe();
        for _ in 0..EVENT_BACKLOG + 5 {
            bus.publish("alpha", Uuid::nil(), EventKind::Reset, "");
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(5))
        ));
    }
}
