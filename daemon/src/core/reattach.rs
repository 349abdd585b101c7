//! Re-attaching at daemon start, as libvirtd does: every domain is looked for among the
//! guests an earlier daemon left running (QEMU guests outlive the daemon, whether it
//! stopped or was killed). One found running gets its id back, the definition it was
//! started with, a console gateway and a watcher; one that stopped meanwhile is shut off
//! with the reason the driver found. The run records say which id and definition each run
//! had; the driver is asked about every domain, so a guest is found even if its record
//! was never written.

use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering};

use uuid::Uuid;
use vmgate_config::domain::DomainDef;

use super::{
    CoreError, Manager,
    events::EventKind,
    inventory::Slot,
    lifecycle::{ConsoleNeed, stop_detail, stop_reason},
    state::{DomainState, StateReason},
};
use crate::{
    driver::Reattach,
    store::{RunRecord, Store},
};

impl Manager {
    /// Finds the guests left running; call once, after `load` and before serving.
    pub async fn reattach_guests(&self) -> Result<(), CoreError> {
        let mut runs: HashMap<Uuid, RunRecord> = self
            .store
            .runs()
            .await?
            .into_iter()
            .map(|run| (run.domain_uuid, run))
            .collect();
        if let Some(highest) = runs.values().map(|run| run.id).max() {
            self.next_id
                .fetch_max(highest.saturating_add(1), Ordering::Relaxed);
        }
        for slot in self.slots() {
            let record = runs.remove(&slot.uuid);
            self.reattach_one(&slot, record).await?;
        }
        Ok(())
    }

    async fn reattach_one(
        &self,
        slot: &Arc<Slot>,
        record: Option<RunRecord>,
    ) -> Result<(), CoreError> {
        let persistent = slot.data().def.clone();
        let name = persistent.name.clone();
        let def = record
            .as_ref()
            .and_then(|run| run_definition(run, &name))
            .unwrap_or(persistent);
        match self.driver.reattach(&def).await {
            Reattach::NotRunning => {
                if record.is_some() {
                    forget(&self.store, slot.uuid, &name).await;
                    slot.data().reason = StateReason::DaemonStopped;
                }
            }
            Reattach::Gone(cause, why) => {
                tracing::warn!(domain = %name, "{why}; it is shut off");
                forget(&self.store, slot.uuid, &name).await;
                {
                    let mut d = slot.data();
                    d.state = DomainState::ShutOff;
                    d.reason = stop_reason(cause);
                }
                self.events
                    .publish(&name, slot.uuid, EventKind::Stopped, stop_detail(cause));
            }
            Reattach::Running(guest) => {
                let id = record.as_ref().map_or_else(
                    || self.next_id.fetch_add(1, Ordering::Relaxed),
                    |run| run.id,
                );
                // A guest whose console cannot open again (its port taken meanwhile) runs
                // on, managed, without one.
                self.install_run(slot, id, guest, def, ConsoleNeed::BestEffort)
                    .await?;
                if record.is_none() {
                    self.remember_run(slot).await;
                }
                tracing::info!(domain = %name, id, "re-attached");
                self.events
                    .publish(&name, slot.uuid, EventKind::Started, "Reattached");
            }
        }
        Ok(())
    }
}

/// The definition a run was started with; None (and a warning) if it no longer parses.
fn run_definition(run: &RunRecord, name: &str) -> Option<DomainDef> {
    match DomainDef::parse_stored(&run.definition, &format!("run record of {name}")) {
        Ok(def) => Some(def),
        Err(e) => {
            tracing::warn!(domain = %name, "the run record's definition does not parse: {e}");
            None
        }
    }
}

async fn forget(store: &Store, uuid: Uuid, name: &str) {
    if let Err(e) = store.delete_run(uuid).await {
        tracing::warn!(domain = %name, "cannot delete the run record: {e}");
    }
}
