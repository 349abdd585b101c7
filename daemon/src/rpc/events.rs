//! The relay behind `Domain.Events`: one task per call that takes the core's broadcast of
//! domain events, keeps those the caller asked for, and feeds them into the call's bounded
//! stream. It owns nothing but that task; resolving the domain and converting messages
//! happen in `domain` and `convert`.
//!
//! The task ends when the client hangs up (the stream is dropped) or when the daemon shuts
//! down: then the stream ends with UNAVAILABLE, so that a listener never holds up the
//! server's graceful drain. A client too slow to read leaves the relay waiting on the
//! bounded stream while the broadcast backlog fills; once that overflows, the client is sent
//! a "lost" note with the count and the relay goes on with what is left.

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use uuid::Uuid;
use vmgate_proto::v1 as pb;

use super::{authorize::may_see, convert::events_lost, status::shutting_down};
use crate::{auth::access::CallAccess, core::events::DomainEvent, shutdown::Shutdown};

/// Messages queued for one client before the relay waits for it to read.
const STREAM_BUFFER: usize = 64;

/// The stream `Domain.Events` answers with.
pub type EventStream = ReceiverStream<Result<pb::DomainEvent, Status>>;

type Sender = mpsc::Sender<Result<pb::DomainEvent, Status>>;

/// Which events a listener asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this domain's; None for all.
    pub uuid: Option<Uuid>,
    /// Only this family ("lifecycle", ...); None for all.
    pub family: Option<&'static str>,
}

impl EventFilter {
    fn admits(&self, event: &DomainEvent) -> bool {
        self.uuid.is_none_or(|uuid| uuid == event.uuid)
            && self
                .family
                .is_none_or(|family| family == event.kind.family())
    }
}

/// [`stream_checked`] without the access driver.
#[cfg(test)]
pub fn stream(
    events: broadcast::Receiver<DomainEvent>,
    filter: EventFilter,
    shutdown: &Shutdown,
) -> EventStream {
    stream_checked(events, filter, None, shutdown)
}

/// Starts relaying `events` that pass `filter` until the client hangs up or `shutdown`
/// triggers; the task is tracked, so the daemon waits for it to end. Under the polkit
/// access driver (`access`), only the events of domains the caller may `getattr` (asked
/// per event, so a rule change applies at once).
pub fn stream_checked(
    events: broadcast::Receiver<DomainEvent>,
    filter: EventFilter,
    access: Option<CallAccess>,
    shutdown: &Shutdown,
) -> EventStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    shutdown.spawn(relay(events, filter, access, tx, shutdown.child_token()));
    ReceiverStream::new(rx)
}

/// Whether the caller may see `event`'s domain; polkit failing counts as no.
async fn visible(access: Option<&CallAccess>, event: &DomainEvent) -> bool {
    match may_see(access, &event.domain, &event.uuid.to_string()).await {
        Ok(allowed) => allowed,
        Err(e) => {
            tracing::warn!("event of {} withheld: {e}", event.domain);
            false
        }
    }
}

async fn relay(
    mut events: broadcast::Receiver<DomainEvent>,
    filter: EventFilter,
    access: Option<CallAccess>,
    tx: Sender,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            biased;
            () = stop.cancelled() => Err(shutting_down()),
            () = tx.closed() => return,
            received = events.recv() => match received {
                Ok(event) if filter.admits(&event) => {
                    if !visible(access.as_ref(), &event).await {
                        continue;
                    }
                    Ok(pb::DomainEvent::from(&event))
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(count)) => {
                    tracing::warn!(lost = count, "an event listener fell behind; events dropped");
                    Ok(events_lost(count))
                }
                // The manager is gone, which only happens as the daemon stops.
                Err(broadcast::error::RecvError::Closed) => Err(shutting_down()),
            },
        };
        let last = message.is_err();
        tokio::select! {
            biased;
            // A client that is not reading cannot take the status either: just end.
            () = stop.cancelled(), if !last => return,
            sent = tx.send(message) => {
                if sent.is_err() || last {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt;
    use tonic::Code;

    use super::*;
    use crate::core::events::{EVENT_BACKLOG, EventBus, EventKind};
    use crate::rpc::convert::{EVENT_FAMILIES, event_family};

    const WAIT: Duration = Duration::from_secs(5);

    async fn next(stream: &mut EventStream) -> Option<Result<pb::DomainEvent, Status>> {
        tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the relay answered in time")
    }

    async fn next_event(stream: &mut EventStream) -> pb::DomainEvent {
        next(stream).await.expect("an item").expect("an event")
    }

    #[tokio::test]
    async fn events_arrive_in_order_with_their_names() {
        let bus = EventBus::default();
        let shutdown = Shutdown::new();
        let uuid = Uuid::new_v4();
        let mut stream = super::stream(bus.subscribe(), EventFilter::default(), &shutdown);
        bus.publish("alpha", uuid, EventKind::Started, "Booted");
        bus.publish("alpha", uuid, EventKind::Reboot, "");
        let started = next_event(&mut stream).await;
        assert_eq!(
            (
                started.domain.as_str(),
                started.uuid,
                started.family.as_str(),
                started.event.as_str(),
                started.detail.as_str(),
                started.lost
            ),
            (
                "alpha",
                uuid.to_string(),
                "lifecycle",
                "Started",
                "Booted",
                0
            )
        );
        assert!(started.time_ms > 0);
        let reboot = next_event(&mut stream).await;
        assert_eq!(
            (reboot.family.as_str(), reboot.event.as_str()),
            ("reboot", "Reboot")
        );
    }

    #[tokio::test]
    async fn filters_keep_one_domain_and_one_family() {
        let bus = EventBus::default();
        let shutdown = Shutdown::new();
        let (alpha, beta) = (Uuid::new_v4(), Uuid::new_v4());
        let filter = EventFilter {
            uuid: Some(alpha),
            family: Some("lifecycle"),
        };
        let mut stream = super::stream(bus.subscribe(), filter, &shutdown);
        bus.publish("beta", beta, EventKind::Started, "Booted");
        bus.publish("alpha", alpha, EventKind::Reset, "");
        // Renamed: still the same domain, matched by UUID.
        bus.publish("alpha2", alpha, EventKind::Stopped, "Destroyed");
        let only = next_event(&mut stream).await;
        assert_eq!(
            (only.domain.as_str(), only.event.as_str()),
            ("alpha2", "Stopped")
        );
        shutdown.trigger();
        let end = next(&mut stream)
            .await
            .expect("a status")
            .expect_err("an error");
        assert_eq!(end.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream_and_the_task() {
        let bus = EventBus::default();
        let shutdown = Shutdown::new();
        let mut stream = super::stream(bus.subscribe(), EventFilter::default(), &shutdown);
        shutdown.trigger();
        let end = next(&mut stream)
            .await
            .expect("a status")
            .expect_err("an error");
        assert_eq!(end.code(), Code::Unavailable);
        assert!(
            next(&mut stream).await.is_none(),
            "nothing after the status"
        );
        tokio::time::timeout(WAIT, shutdown.wait())
            .await
            .expect("the relay task ended");
    }

    #[tokio::test]
    async fn shutdown_ends_a_relay_stuck_on_a_client_that_does_not_read() {
        let bus = EventBus::default();
        let shutdown = Shutdown::new();
        let _unread = super::stream(bus.subscribe(), EventFilter::default(), &shutdown);
        for _ in 0..STREAM_BUFFER * 2 {
            bus.publish("alpha", Uuid::nil(), EventKind::Reset, "");
        }
        shutdown.trigger();
        tokio::time::timeout(WAIT, shutdown.wait())
            .await
            .expect("the relay task ended");
    }

    #[tokio::test]
    async fn a_client_hanging_up_ends_the_task() {
        let bus = EventBus::default();
        let shutdown = Shutdown::new();
        drop(super::stream(
            bus.subscribe(),
            EventFilter::default(),
            &shutdown,
        ));
        tokio::time::timeout(WAIT, shutdown.wait())
            .await
            .expect("the relay task ended without a shutdown");
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_and_goes_on() {
        let bus = EventBus::default();
        let shutdown = Shutdown::new();
        let slow = bus.subscribe();
        for _ in 0..EVENT_BACKLOG + 7 {
            bus.publish("alpha", Uuid::nil(), EventKind::Reset, "");
        }
        let mut stream = super::stream(slow, EventFilter::default(), &shutdown);
        let note = next_event(&mut stream).await;
        assert_eq!((note.family.as_str(), note.lost), ("lost", 7));
        assert!(note.domain.is_empty() && note.event.is_empty());
        let kept = next_event(&mut stream).await;
        assert_eq!((kept.family.as_str(), kept.lost), ("reset", 0));
    }

    #[test]
    fn every_event_kind_has_a_family_a_listener_may_ask_for() {
        use EventKind::*;
        for kind in [
            Defined, Undefined, Started, Suspended, Resumed, Stopped, Reboot, Reset,
        ] {
            // No wildcard: a new kind must be added to the list above.
            match kind {
                Defined | Undefined | Started | Suspended | Resumed | Stopped | Reboot | Reset => {}
            }
            assert!(EVENT_FAMILIES.contains(&kind.family()), "{kind:?}");
        }
        assert_eq!(event_family("").ok(), Some(None));
        assert_eq!(event_family("reboot").ok(), Some(Some("reboot")));
        let err = event_family("lost").expect_err("not a family one can ask for");
        assert!(err.message().contains("\"lost\""), "{}", err.message());
    }
}
