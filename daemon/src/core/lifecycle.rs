//! Lifecycle operations on domains: start, the guest actions (shutdown, destroy, reboot,
//! reset, suspend, resume), waiting for a power-off, autostart and the daemon's own stop.
//! Each operation holds the domain's `op` lock, checks the state machine, asks the driver,
//! then applies the guest's reported status; a watcher task applies the changes the guest
//! makes on its own (powering off, crashing).

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    CoreError, DomainView, Manager,
    inventory::{Run, Slot},
    state::{DomainState, Operation, StateReason},
};
use crate::{
    driver::{Guest, GuestStatus, StopCause},
    store::StoredRule,
    vnc::gateway::Gateway,
};
use vmgate_config::domain::DomainDef;

/// An operation on a running guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestAction {
    Shutdown,
    Destroy,
    Reboot,
    Reset,
    Suspend,
    Resume,
}

impl GuestAction {
    fn operation(self) -> Operation {
        match self {
            GuestAction::Shutdown => Operation::Shutdown,
            GuestAction::Destroy => Operation::Destroy,
            GuestAction::Reboot => Operation::Reboot,
            GuestAction::Reset => Operation::Reset,
            GuestAction::Suspend => Operation::Suspend,
            GuestAction::Resume => Operation::Resume,
        }
    }
}

/// How `shutdown` waits for the guest to power off.
#[derive(Clone, Copy, Debug)]
pub struct ShutdownWait {
    pub timeout: Duration,
    /// Destroy the guest when the timeout passes.
    pub force: bool,
}

impl Slot {
    /// Applies a status the guest of run `run_id` reported. Stale reports (from a run that
    /// has since ended) are ignored, so the watcher and the operation can both apply one.
    fn apply(&self, run_id: u32, status: GuestStatus) {
        let mut d = self.data();
        if d.run.as_ref().map(|r| r.id) != Some(run_id) {
            return;
        }
        match status {
            GuestStatus::Running => d.state = DomainState::Running,
            GuestStatus::Paused => d.state = DomainState::Paused,
            GuestStatus::Stopped(cause) => {
                if let Some(run) = d.run.take() {
                    run.watcher.cancel();
                }
                d.state = DomainState::ShutOff;
                d.reason = match cause {
                    StopCause::Shutdown => StateReason::Shutdown,
                    StopCause::Destroyed => StateReason::Destroyed,
                    StopCause::Crashed => StateReason::Crashed,
                    StopCause::DaemonStopped => StateReason::DaemonStopped,
                };
                tracing::info!(domain = %d.def.name, reason = d.reason.as_str(), "domain stopped");
            }
        }
    }
}

impl Manager {
    pub async fn start(&self, key: &str) -> Result<DomainView, CoreError> {
        let slot = self.resolve(key)?;
        let _op = slot.op.lock().await;
        slot.check(Operation::Start)?;
        let def = slot.data().def.clone();
        let guest = self
            .driver
            .start(&def)
            .await
            .map_err(|error| CoreError::Driver {
                name: def.name.clone(),
                error,
            })?;
        let rules = slot.data().acl.clone();
        let gateway = match self.open_console(&def, &rules, guest.as_ref()).await {
            Ok(gateway) => gateway,
            Err(e) => {
                let _ = guest.destroy().await;
                return Err(e);
            }
        };
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let watcher = self.shutdown.child_token();
        let status = guest.status();
        {
            let mut d = slot.data();
            d.run = Some(Run {
                id,
                guest,
                def,
                gateway,
                watcher: watcher.clone(),
            });
            d.state = DomainState::Running;
            d.reason = StateReason::Booted;
        }
        self.follow(slot.clone(), id, status, watcher);
        tracing::info!(domain = %key, id, "domain started");
        Ok(slot.view())
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

    /// Runs `action` on the running guest and applies its outcome.
    pub async fn act(&self, key: &str, action: GuestAction) -> Result<DomainView, CoreError> {
        let slot = self.resolve(key)?;
        self.act_on(&slot, action).await?;
        Ok(slot.view())
    }

    /// Asks the guest to power off; with `wait`, returns once it has (or the timeout passed,
    /// destroying it then when `force`). The domain is not locked while waiting.
    pub async fn shutdown(
        &self,
        key: &str,
        wait: Option<ShutdownWait>,
    ) -> Result<DomainView, CoreError> {
        let slot = self.resolve(key)?;
        let mut status = self.act_on(&slot, GuestAction::Shutdown).await?;
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
                tracing::warn!(domain = %key, "shutdown timed out; destroying");
                match self.act_on(&slot, GuestAction::Destroy).await {
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
        action: GuestAction,
    ) -> Result<watch::Receiver<GuestStatus>, CoreError> {
        let _op = slot.op.lock().await;
        slot.check(action.operation())?;
        let (id, guest, name) = {
            let d = slot.data();
            let run = d.run.as_ref().ok_or_else(|| CoreError::WrongState {
                name: d.def.name.clone(),
                state: DomainState::ShutOff,
                op: action.operation(),
            })?;
            (run.id, run.guest.clone(), d.def.name.clone())
        };
        let result = match action {
            GuestAction::Shutdown => guest.shutdown().await,
            GuestAction::Destroy => guest.destroy().await,
            GuestAction::Reboot => guest.reboot().await,
            GuestAction::Reset => guest.reset().await,
            GuestAction::Suspend => guest.suspend().await,
            GuestAction::Resume => guest.resume().await,
        };
        let status = guest.status();
        slot.apply(id, *status.borrow());
        result.map_err(|error| CoreError::Driver { name, error })?;
        Ok(status)
    }

    /// Follows a run's status until it stops or the daemon shuts down.
    fn follow(
        &self,
        slot: Arc<Slot>,
        id: u32,
        mut status: watch::Receiver<GuestStatus>,
        watcher: CancellationToken,
    ) {
        self.shutdown.spawn(async move {
            loop {
                tokio::select! {
                    _ = watcher.cancelled() => return,
                    changed = status.changed() => {
                        let now = match changed {
                            Ok(()) => *status.borrow_and_update(),
                            Err(_) => GuestStatus::Stopped(StopCause::Crashed),
                        };
                        slot.apply(id, now);
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
            match self.start(&name).await {
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
                let _ = guest.destroy().await;
                slot.apply(id, GuestStatus::Stopped(StopCause::DaemonStopped));
            }
        }
    }
}
