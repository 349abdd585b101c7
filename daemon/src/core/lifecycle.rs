//! Lifecycle operations on domains: start, the verbs a running guest performs (a
//! `GuestVerb`: shutdown, destroy, reboot, reset, suspend, resume), waiting for a
//! power-off, autostart and the daemon's own stop. Each operation holds the domain's `op`
//! lock, checks its verb against the state machine, asks the driver (`Guest::perform` for
//! a guest's verb), then applies the guest's reported status; a watcher task applies the
//! changes the guest makes on its own (powering off, crashing, rebooting). Every change is
//! published as a domain event, and a run is recorded in the store while it lasts (its id,
//! its definition with the console's port) for a restarted daemon to re-attach to
//! (`reattach`).

use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{
    CoreError, DomainView, Manager,
    events::{EventBus, EventKind},
    inventory::{Run, Slot, Target},
    state::{DomainState, StateReason},
};
use crate::{
    driver::{Guest, GuestNotice, GuestStatus, StopCause},
    store::{RunRecord, Store, StoredRule},
    verb::{GuestVerb, Verb},
    vnc::gateway::{ConsoleAddress, Gateway},
};
use vmgate_config::domain::DomainDef;

/// How `shutdown` waits for the guest to power off.
#[derive(Clone, Copy, Debug)]
pub struct ShutdownWait {
    pub timeout: Duration,
    /// Destroy the guest when the timeout passes.
    pub force: bool,
}

/// Whether a run may go on without its console (a re-attached guest, already running) or
/// not (a guest being started, which is stopped again instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConsoleNeed {
    Required,
    BestEffort,
}

/// Tells the world what happened to a domain: events, and the run record's end.
struct Reporter {
    store: Store,
    events: EventBus,
}

impl Reporter {
    /// Publishes what `apply` changed, and forgets the run when it ended.
    async fn applied(&self, slot: &Slot, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        let name = slot.data().def.name.clone();
        self.events.publish(&name, slot.uuid, t.kind, t.detail);
        if t.ended
            && let Err(e) = self.store.delete_run(slot.uuid).await
        {
            tracing::warn!(domain = %name, "cannot delete the run record: {e}");
        }
    }

    fn noticed(&self, slot: &Slot, notice: GuestNotice) {
        let (kind, detail) = match notice {
            GuestNotice::Rebooted => (EventKind::Reboot, ""),
            GuestNotice::Reset => (EventKind::Reset, ""),
        };
        let name = slot.data().def.name.clone();
        self.events.publish(&name, slot.uuid, kind, detail);
    }
}

/// A state change [`Slot::apply`] made, as the event it is.
pub(super) struct Transition {
    pub(super) kind: EventKind,
    pub(super) detail: &'static str,
    /// The run ended: its record goes.
    pub(super) ended: bool,
}

impl Slot {
    /// Applies a status the guest of run `run_id` reported, and returns the change it made.
    /// Stale reports (from a run that has since ended) and repeats change nothing, so the
    /// watcher and the operation can both apply one.
    pub(super) fn apply(&self, run_id: u32, status: GuestStatus) -> Option<Transition> {
        let mut d = self.data();
        if d.run.as_ref().map(|r| r.id) != Some(run_id) {
            return None;
        }
        let (state, reason, kind, detail) = match status {
            GuestStatus::Running => (
                DomainState::Running,
                StateReason::Unpaused,
                EventKind::Resumed,
                "Unpaused",
            ),
            GuestStatus::Paused => (
                DomainState::Paused,
                StateReason::User,
                EventKind::Suspended,
                "Paused",
            ),
            GuestStatus::Stopped(cause) => {
                if let Some(run) = d.run.take() {
                    run.watcher.cancel();
                }
                d.state = DomainState::ShutOff;
                d.reason = stop_reason(cause);
                tracing::info!(domain = %d.def.name, reason = d.reason.as_str(), "domain stopped");
                return Some(Transition {
                    kind: EventKind::Stopped,
                    detail: stop_detail(cause),
                    ended: true,
                });
            }
        };
        if d.state == state {
            return None;
        }
        d.state = state;
        d.reason = reason;
        Some(Transition {
            kind,
            detail,
            ended: false,
        })
    }
}

pub(super) fn stop_reason(cause: StopCause) -> StateReason {
    match cause {
        StopCause::Shutdown => StateReason::Shutdown,
        StopCause::Destroyed => StateReason::Destroyed,
        StopCause::Crashed => StateReason::Crashed,
        StopCause::DaemonStopped => StateReason::DaemonStopped,
    }
}

/// virsh's detail of a Stopped event.
pub(super) fn stop_detail(cause: StopCause) -> &'static str {
    match cause {
        StopCause::Shutdown => "Shutdown",
        StopCause::Destroyed => "Destroyed",
        StopCause::Crashed => "Crashed",
        StopCause::DaemonStopped => "Daemon stopped",
    }
}

impl Manager {
    pub async fn start(&self, target: &Target) -> Result<DomainView, CoreError> {
        let slot = self.slot_of(target)?;
        let _op = slot.op.lock().await;
        slot.check(Verb::Start)?;
        let def = slot.data().def.clone();
        let guest = self
            .driver
            .start(&def)
            .await
            .map_err(|error| CoreError::Driver {
                name: def.name.clone(),
                error,
            })?;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let installed = self
            .install_run(&slot, id, guest.clone(), def, ConsoleNeed::Required)
            .await;
        if let Err(e) = installed {
            let _ = guest.perform(GuestVerb::Destroy).await;
            return Err(e);
        }
        self.remember_run(&slot).await;
        tracing::info!(domain = %target.name(), id, "domain started");
        self.events.publish(
            &slot.data().def.name,
            slot.uuid,
            EventKind::Started,
            "Booted",
        );
        Ok(slot.view())
    }

    /// Opens the console of a running guest and makes it the slot's run, with the status
    /// the guest reports, followed from then on.
    pub(super) async fn install_run(
        &self,
        slot: &Arc<Slot>,
        id: u32,
        guest: Arc<dyn Guest>,
        def: DomainDef,
        console: ConsoleNeed,
    ) -> Result<(), CoreError> {
        let rules = slot.data().acl.clone();
        let gateway = match self.open_console(&def, &rules, guest.as_ref()).await {
            Ok(gateway) => gateway,
            Err(e) if console == ConsoleNeed::BestEffort => {
                tracing::error!(domain = %def.name, "running without a console: {e}");
                None
            }
            Err(e) => return Err(e),
        };
        let watcher = self.shutdown.child_token();
        let status = guest.status();
        let notices = guest.notices();
        let (state, reason) = match *status.borrow() {
            GuestStatus::Paused => (DomainState::Paused, StateReason::User),
            _ => (DomainState::Running, StateReason::Booted),
        };
        {
            let mut d = slot.data();
            d.run = Some(Run {
                id,
                guest,
                def,
                gateway,
                watcher: watcher.clone(),
            });
            d.state = state;
            d.reason = reason;
        }
        self.follow(slot.clone(), id, status, notices, watcher);
        Ok(())
    }

    /// Records the slot's run for a daemon that restarts under it: its id, and the
    /// definition it runs with, the console's port pinned so that the console comes back
    /// where clients know it. Without the record a restarted daemon still finds the guest
    /// (it asks the driver about every domain), but gives it a new id and port.
    pub(super) async fn remember_run(&self, slot: &Slot) {
        let record = {
            let d = slot.data();
            let Some(run) = d.run.as_ref() else { return };
            let mut def = run.def.clone();
            let address = run.gateway.as_ref().map(|g| g.address());
            if let (Some(graphics), Some(ConsoleAddress::Tcp(addr))) =
                (def.graphics.as_mut(), address)
            {
                graphics.port = Some(addr.port());
                graphics.autoport = Some(false);
            }
            RunRecord {
                domain_uuid: slot.uuid,
                id: run.id,
                definition: def.to_toml(true),
            }
        };
        if let Err(e) = self.store.record_run(&record).await {
            tracing::warn!(uuid = %slot.uuid, "cannot record the run; a restarted daemon gives it a new id: {e}");
        }
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            store: self.store.clone(),
            events: self.events.clone(),
        }
    }

    /// Opens the console gateway of a guest with `[graphics]`.
    async fn open_console(
        &self,
        def: &DomainDef,
        slot_rules: &[StoredRule],
        guest: &dyn Guest,
    ) -> Result<Option<Gateway>, CoreError> {
        let Some(graphics) = &def.graphics else {
            return Ok(None);
        };
        let console_error = |message: String| CoreError::Console {
            name: def.name.clone(),
            message,
        };
        let backend = guest
            .console()
            .ok_or_else(|| console_error("the driver gave the guest no framebuffer".into()))?;
        let token = self.shutdown.child_token();
        let rules = slot_rules.iter().map(|r| r.rule.clone()).collect();
        Gateway::open(
            &def.name,
            graphics,
            rules,
            backend,
            self.options.vnc.clone(),
            &token,
        )
        .await
        .map(Some)
        .map_err(|e| console_error(e.to_string()))
    }

    /// Has the running guest perform `verb`, and applies its outcome.
    pub async fn act(&self, target: &Target, verb: GuestVerb) -> Result<DomainView, CoreError> {
        let slot = self.slot_of(target)?;
        self.act_on(&slot, verb).await?;
        Ok(slot.view())
    }

    /// Asks the guest to power off; with `wait`, returns once it has (or the timeout passed,
    /// destroying it then when `force`). The domain is not locked while waiting.
    pub async fn shutdown(
        &self,
        target: &Target,
        wait: Option<ShutdownWait>,
    ) -> Result<DomainView, CoreError> {
        let slot = self.slot_of(target)?;
        let mut status = self.act_on(&slot, GuestVerb::Shutdown).await?;
        let Some(wait) = wait else {
            return Ok(slot.view());
        };
        let stopped = async {
            // An error means the guest is gone, which is stopped too.
            let _ = status
                .wait_for(|s| matches!(s, GuestStatus::Stopped(_)))
                .await;
        };
        match tokio::time::timeout(wait.timeout, stopped).await {
            Ok(()) => {}
            Err(_) if wait.force => {
                tracing::warn!(domain = %target.name(), "shutdown timed out; destroying");
                match self.act_on(&slot, GuestVerb::Destroy).await {
                    Ok(_) | Err(CoreError::WrongState { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(_) => {
                return Err(CoreError::ShutdownTimeout {
                    name: slot.data().def.name.clone(),
                    secs: wait.timeout.as_secs(),
                });
            }
        }
        Ok(slot.view())
    }

    async fn act_on(
        &self,
        slot: &Arc<Slot>,
        verb: GuestVerb,
    ) -> Result<watch::Receiver<GuestStatus>, CoreError> {
        let _op = slot.op.lock().await;
        slot.check(verb.into())?;
        let (id, guest, name) = {
            let d = slot.data();
            let run = d.run.as_ref().ok_or_else(|| CoreError::WrongState {
                name: d.def.name.clone(),
                state: DomainState::ShutOff,
                verb: verb.into(),
            })?;
            (run.id, run.guest.clone(), d.def.name.clone())
        };
        let result = guest.perform(verb).await;
        let status = guest.status();
        let now = *status.borrow();
        self.reporter().applied(slot, slot.apply(id, now)).await;
        result.map_err(|error| CoreError::Driver { name, error })?;
        Ok(status)
    }

    /// Follows a run's status and notices until it stops or the daemon shuts down.
    fn follow(
        &self,
        slot: Arc<Slot>,
        id: u32,
        mut status: watch::Receiver<GuestStatus>,
        mut notices: broadcast::Receiver<GuestNotice>,
        watcher: CancellationToken,
    ) {
        let reporter = self.reporter();
        self.shutdown.spawn(async move {
            let mut notices_open = true;
            loop {
                tokio::select! {
                    _ = watcher.cancelled() => return,
                    notice = notices.recv(), if notices_open => match notice {
                        Ok(notice) => reporter.noticed(&slot, notice),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        // The guest is going; its status says how.
                        Err(broadcast::error::RecvError::Closed) => notices_open = false,
                    },
                    changed = status.changed() => {
                        let now = match changed {
                            Ok(()) => *status.borrow_and_update(),
                            Err(_) => GuestStatus::Stopped(StopCause::Crashed),
                        };
                        reporter.applied(&slot, slot.apply(id, now)).await;
                        if matches!(now, GuestStatus::Stopped(_)) {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// Starts every shut-off domain marked autostart; a failure is logged, not fatal.
    pub async fn autostart(&self) {
        for name in self.autostart_candidates() {
            let started = match self.find_target(&name) {
                Ok(target) => self.start(&target).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(view) => tracing::info!(domain = %name, id = ?view.id, "autostarted"),
                Err(e) => tracing::error!(domain = %name, "autostart failed: {e}"),
            }
        }
    }

    /// At daemon stop: guests that cannot outlive the daemon are stopped; others are left
    /// running for the next daemon to find.
    pub async fn stop_guests(&self) {
        if self.driver.guests_outlive_daemon() {
            return;
        }
        for slot in self.slots() {
            let run = slot.data().run.as_ref().map(|r| (r.id, r.guest.clone()));
            if let Some((id, guest)) = run {
                let _ = guest.perform(GuestVerb::Destroy).await;
                let stopped = slot.apply(id, GuestStatus::Stopped(StopCause::DaemonStopped));
                self.reporter().applied(&slot, stopped).await;
            }
        }
    }
}
