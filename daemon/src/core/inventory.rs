//! The inventory of defined domains and the definition operations: define (create or
//! update), undefine, lookup by id, UUID or name (in that order, as virsh), list, autostart.
//! Definitions are written to the store before memory changes, so a failed write leaves
//! everything as it was.
//!
//! A call on one domain finds it once ([`Manager::find_target`], for `rpc::authorize`) and
//! every operation takes that [`Target`], which holds the domain's slot: `slot_of` hands
//! it out unless undefine has marked it gone, so a domain undefined in between is NOT_FOUND
//! rather than replaced by a namesake.
//!
//! Locking: `domains` (a std RwLock, never held across an await) maps names and UUIDs to
//! slots; `define_lock` serializes changes to that map; each slot's `op` lock serializes the
//! lifecycle operations of one domain, and its `data` mutex guards its fields briefly.

use std::{
    collections::HashMap,
    fmt,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vmgate_config::domain::{DomainDef, check_socket_path};

use super::{
    CoreError,
    events::{DomainEvent, EventBus, EventKind},
    state::{DomainState, StateReason},
    views::DisplayAddress,
};
use crate::{
    audit_log::AuditLog,
    auth::users::UserDb,
    driver::{Driver, Guest},
    shutdown::Shutdown,
    store::{DomainRecord, Store, StoredRule},
    verb::Verb,
    vnc::{gateway::Gateway, settings::VncServices},
};

/// What the manager needs to know about the host, and the services it hands guests.
#[derive(Clone)]
pub struct ManagerOptions {
    /// Where per-guest sockets are derived from; their length is checked at define time.
    pub unix_sock_dir: PathBuf,
    /// What every console gateway shares (settings, lockout, audit sink).
    pub vnc: Arc<VncServices>,
    pub audit: AuditLog,
    /// The SASL user database the consoles check logins against.
    pub users: Arc<UserDb>,
}

/// Which domains `list` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFilter {
    Active,
    Inactive,
    All,
}

/// A domain as callers see it at one moment.
#[derive(Clone, Debug)]
pub struct DomainView {
    pub id: Option<u32>,
    pub name: String,
    pub uuid: Uuid,
    pub state: DomainState,
    pub reason: StateReason,
    pub autostart: bool,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// Zero in `list`'s views, which do not show it.
    pub cpu_time: Duration,
    /// Where the console listens, while the guest runs with one.
    pub display: Option<DisplayAddress>,
}

/// A domain one API call names, found once (by id, then UUID, then name, as virsh does):
/// what a permission check needs to know of it, and the host it runs on. Every operation
/// on one domain takes a `Target`, so the key the caller gave is not looked up again and
/// a rename in between cannot swap the domain. Only [`Manager::find_target`] makes one
/// (the fields are private), and in the API only `rpc::authorize` calls it.
pub struct Target {
    uuid: Uuid,
    name: String,
    host: GuestHost,
    /// The domain's slot on this host, as found: operations use it without a second
    /// look-up in the inventory, and learn from it that the domain was undefined since.
    slot: Arc<Slot>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("host", &self.host)
            .finish()
    }
}

impl Target {
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn host(&self) -> &GuestHost {
        &self.host
    }
}

/// Where a domain runs: on this host, or (room for a fleet of hosts sharing one database,
/// whose console calls may name a guest of another host) on another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestHost {
    Local,
    Peer(String),
}

/// Owns every domain.
pub struct Manager {
    domains: RwLock<Inventory>,
    define_lock: tokio::sync::Mutex<()>,
    pub(super) store: Store,
    pub(super) driver: Arc<dyn Driver>,
    pub(super) options: ManagerOptions,
    pub(super) next_id: AtomicU32,
    pub(super) shutdown: Shutdown,
    pub(super) events: EventBus,
}

#[derive(Default)]
struct Inventory {
    by_uuid: HashMap<Uuid, Arc<Slot>>,
    by_name: HashMap<String, Uuid>,
}

/// One domain: its definition, state and, while active, its run.
pub(super) struct Slot {
    pub(super) uuid: Uuid,
    pub(super) op: tokio::sync::Mutex<()>,
    data: Mutex<SlotData>,
    /// Set by undefine (under `op`) before the slot leaves the inventory.
    gone: AtomicBool,
}

pub(super) struct SlotData {
    /// The persistent definition; a running guest keeps the one it started with in `run`.
    pub(super) def: DomainDef,
    pub(super) autostart: bool,
    pub(super) state: DomainState,
    pub(super) reason: StateReason,
    pub(super) run: Option<Run>,
    /// The console ACL rules, in order (as stored).
    pub(super) acl: Vec<StoredRule>,
}

/// A running (or paused) guest.
pub(super) struct Run {
    pub(super) id: u32,
    pub(super) guest: Arc<dyn Guest>,
    pub(super) def: DomainDef,
    /// Stops the task that follows the guest's status.
    pub(super) watcher: CancellationToken,
    /// The console gateway; dropping it closes the console and cuts its sessions.
    pub(super) gateway: Option<Gateway>,
}

impl Slot {
    fn new(uuid: Uuid, def: DomainDef, autostart: bool, acl: Vec<StoredRule>) -> Slot {
        Slot {
            uuid,
            gone: AtomicBool::new(false),
            op: tokio::sync::Mutex::new(()),
            data: Mutex::new(SlotData {
                def,
                autostart,
                state: DomainState::ShutOff,
                reason: StateReason::Unknown,
                run: None,
                acl,
            }),
        }
    }

    pub(super) fn data(&self) -> MutexGuard<'_, SlotData> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn view(&self) -> DomainView {
        self.view_with(true)
    }

    /// The view without the CPU time, which costs a read of `/proc` per running QEMU
    /// guest and which `list` does not show.
    fn summary(&self) -> DomainView {
        self.view_with(false)
    }

    fn view_with(&self, cpu_time: bool) -> DomainView {
        let d = self.data();
        let def = d.run.as_ref().map_or(&d.def, |run| &run.def);
        DomainView {
            id: d.run.as_ref().map(|run| run.id),
            name: d.def.name.clone(),
            uuid: self.uuid,
            state: d.state,
            reason: d.reason,
            autostart: d.autostart,
            memory_mib: d
                .run
                .as_ref()
                .map_or(def.memory_mib, |run| run.guest.memory_mib()),
            vcpus: def.vcpus,
            cpu_time: d
                .run
                .as_ref()
                .filter(|_| cpu_time)
                .map(|run| run.guest.cpu_time())
                .unwrap_or_default(),
            display: d
                .run
                .as_ref()
                .and_then(|run| run.gateway.as_ref())
                .map(|g| DisplayAddress::from(g.address())),
        }
    }

    /// Fails with the state's own hint unless the domain's state allows `verb`.
    pub(super) fn check(&self, verb: Verb) -> Result<(), CoreError> {
        let d = self.data();
        if d.state.allows(verb) {
            Ok(())
        } else {
            Err(CoreError::WrongState {
                name: d.def.name.clone(),
                state: d.state,
                verb,
            })
        }
    }
}

impl Manager {
    /// Loads every stored definition; all domains start shut off.
    pub async fn load(
        store: Store,
        driver: Arc<dyn Driver>,
        options: ManagerOptions,
        shutdown: Shutdown,
    ) -> Result<Manager, CoreError> {
        let mut inventory = Inventory::default();
        let mut acls = store.all_acl_rules().await?;
        for rec in store.domains().await? {
            let source = format!("stored domain {}", rec.name);
            let def = DomainDef::parse_stored(&rec.definition, &source).map_err(|e| {
                CoreError::InvalidDefinition(format!(
                    "The stored definition of '{}' no longer parses: {e}",
                    rec.name
                ))
            })?;
            warn_reserved_name(&def.name, rec.uuid);
            inventory.by_name.insert(rec.name.clone(), rec.uuid);
            let acl = acls.remove(&rec.uuid).unwrap_or_default();
            inventory.by_uuid.insert(
                rec.uuid,
                Arc::new(Slot::new(rec.uuid, def, rec.autostart, acl)),
            );
        }
        Ok(Manager {
            domains: RwLock::new(inventory),
            define_lock: tokio::sync::Mutex::new(()),
            store,
            driver,
            options,
            next_id: AtomicU32::new(1),
            shutdown,
            events: EventBus::default(),
        })
    }

    /// Every domain event from now on (`vmgate event`).
    pub fn subscribe_events(&self) -> broadcast::Receiver<DomainEvent> {
        self.events.subscribe()
    }

    pub fn driver_name(&self) -> &'static str {
        self.driver.name()
    }

    pub fn hypervisor_version(&self) -> String {
        self.driver.hypervisor_version()
    }

    fn inventory(&self) -> std::sync::RwLockReadGuard<'_, Inventory> {
        self.domains.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn inventory_mut(&self) -> std::sync::RwLockWriteGuard<'_, Inventory> {
        self.domains.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds a domain by the id of its current run, then by UUID, then by name, in virsh's
    /// order: a domain whose name looks like another's id or UUID (allowed before define
    /// refused such names) cannot take over commands meant for that other domain.
    pub(super) fn resolve(&self, key: &str) -> Result<Arc<Slot>, CoreError> {
        self.resolve_named(key).map(|(slot, _)| slot)
    }

    /// [`Manager::resolve`], and the domain's name when the key was its name, which spares
    /// a lock of the slot on the path every call on a domain takes.
    fn resolve_named(&self, key: &str) -> Result<(Arc<Slot>, Option<String>), CoreError> {
        let inv = self.inventory();
        let by_uuid = |uuid: &Uuid| inv.by_uuid.get(uuid).cloned();
        if key.bytes().all(|b| b.is_ascii_digit())
            && let Ok(id) = key.parse::<u32>()
            && let Some(slot) = inv
                .by_uuid
                .values()
                .find(|s| s.data().run.as_ref().is_some_and(|r| r.id == id))
        {
            return Ok((slot.clone(), None));
        }
        if let Some(slot) = Uuid::parse_str(key).ok().as_ref().and_then(by_uuid) {
            return Ok((slot, None));
        }
        if let Some(slot) = inv.by_name.get(key).and_then(by_uuid) {
            return Ok((slot, Some(key.to_owned())));
        }
        Err(CoreError::NoDomain(key.to_owned()))
    }

    pub fn lookup(&self, key: &str) -> Result<DomainView, CoreError> {
        Ok(self.resolve(key)?.view())
    }

    /// The domain `key` names, found once for a call on it (see [`Target`]).
    pub fn find_target(&self, key: &str) -> Result<Target, CoreError> {
        let (slot, name) = self.resolve_named(key)?;
        let name = name.unwrap_or_else(|| slot.data().def.name.clone());
        Ok(Target {
            uuid: slot.uuid,
            name,
            host: GuestHost::Local,
            slot,
        })
    }

    /// The slot of a target on this host. A domain undefined since it was found is gone,
    /// even if another has taken its name meanwhile.
    pub(super) fn slot_of(&self, target: &Target) -> Result<Arc<Slot>, CoreError> {
        if let GuestHost::Peer(host) = &target.host {
            return Err(CoreError::OnAnotherHost {
                name: target.name.clone(),
                host: host.clone(),
            });
        }
        if target.slot.gone.load(Ordering::Acquire) {
            return Err(CoreError::NoDomain(target.name.clone()));
        }
        Ok(target.slot.clone())
    }

    pub fn view(&self, target: &Target) -> Result<DomainView, CoreError> {
        Ok(self.slot_of(target)?.view())
    }

    /// Running guests first by id, then the others by name, as `virsh list --all` orders them.
    pub fn list(&self, filter: ListFilter) -> Vec<DomainView> {
        let mut views: Vec<DomainView> = self
            .inventory()
            .by_uuid
            .values()
            .map(|slot| slot.summary())
            .filter(|v| match filter {
                ListFilter::All => true,
                ListFilter::Active => v.state.is_active(),
                ListFilter::Inactive => !v.state.is_active(),
            })
            .collect();
        views.sort_by(|a, b| (a.id.is_none(), a.id, &a.name).cmp(&(b.id.is_none(), b.id, &b.name)));
        views
    }

    /// The persistent definition as TOML, with or without secrets.
    pub fn definition(&self, target: &Target, include_secrets: bool) -> Result<String, CoreError> {
        let slot = self.slot_of(target)?;
        let mut def = slot.data().def.clone();
        def.uuid = Some(slot.uuid);
        Ok(def.to_toml(include_secrets))
    }

    /// Creates a domain, or updates the one with the same name and UUID (a running guest
    /// picks the change up at its next start). A definition never renames a domain, except
    /// one whose name define now refuses (all digits, or a UUID): given its UUID and a new
    /// name, that shut-off domain takes the new name and keeps its UUID, ACL and autostart.
    /// Returns the domain and whether it is new. `def` is a definition as
    /// `DomainDef::parse` returns it (`rpc::authorize::definition` parses each one once),
    /// so every rule of a new definition, reserved names included, has been applied.
    pub async fn define(&self, mut def: DomainDef) -> Result<(DomainView, bool), CoreError> {
        self.check_derived_paths(&def)?;
        self.check_console(&def)?;
        let _define = self.define_lock.lock().await;
        let (named, owner_of_uuid) = {
            let inv = self.inventory();
            let named = inv.by_name.get(&def.name).copied();
            let owner = def
                .uuid
                .and_then(|u| inv.by_uuid.get(&u).map(|s| s.data().def.name.clone()));
            (named, owner)
        };
        match (named, def.uuid) {
            (Some(existing), Some(given)) if existing == given => {
                self.store
                    .upsert_domain(&record(existing, &def, false))
                    .await?;
                let slot = self.slot(existing)?;
                slot.data().def = def;
                let view = slot.view();
                self.events
                    .publish(&view.name, view.uuid, EventKind::Defined, "Updated");
                Ok((view, false))
            }
            (Some(existing), _) => Err(CoreError::NameTaken {
                name: def.name,
                uuid: existing,
            }),
            (None, Some(given))
                if owner_of_uuid
                    .as_deref()
                    .is_some_and(|old| DomainDef::reserved_name(old).is_some()) =>
            {
                self.rename_reserved(given, def).await
            }
            (None, Some(given)) if owner_of_uuid.is_some() => Err(CoreError::UuidTaken {
                uuid: given,
                name: owner_of_uuid.unwrap_or_default(),
            }),
            (None, given) => {
                let uuid = given.unwrap_or_else(Uuid::new_v4);
                def.uuid = Some(uuid);
                self.store.upsert_domain(&record(uuid, &def, false)).await?;
                let slot = Arc::new(Slot::new(uuid, def.clone(), false, Vec::new()));
                let mut inv = self.inventory_mut();
                inv.by_name.insert(def.name.clone(), uuid);
                inv.by_uuid.insert(uuid, slot.clone());
                drop(inv);
                self.events
                    .publish(&def.name, uuid, EventKind::Defined, "Added");
                Ok((slot.view(), true))
            }
        }
    }

    /// Gives the shut-off domain `uuid`, whose name define now refuses, the name `def`
    /// gives it (`define` holds the define lock).
    async fn rename_reserved(
        &self,
        uuid: Uuid,
        def: DomainDef,
    ) -> Result<(DomainView, bool), CoreError> {
        let slot = self.slot(uuid)?;
        slot.check(Verb::Rename)?;
        let (old, autostart) = {
            let d = slot.data();
            (d.def.name.clone(), d.autostart)
        };
        self.store
            .upsert_domain(&record(uuid, &def, autostart))
            .await?;
        let new = def.name.clone();
        slot.data().def = def;
        let mut inv = self.inventory_mut();
        inv.by_name.remove(&old);
        inv.by_name.insert(new.clone(), uuid);
        drop(inv);
        tracing::info!(domain = %new, %uuid, "renamed from '{old}'");
        self.events
            .publish(&new, uuid, EventKind::Defined, "Renamed");
        Ok((slot.view(), false))
    }

    fn slot(&self, uuid: Uuid) -> Result<Arc<Slot>, CoreError> {
        self.inventory()
            .by_uuid
            .get(&uuid)
            .cloned()
            .ok_or_else(|| CoreError::NoDomain(uuid.to_string()))
    }

    /// Removes a shut-off domain's definition.
    pub async fn undefine(&self, target: &Target) -> Result<DomainView, CoreError> {
        let slot = self.slot_of(target)?;
        let _op = slot.op.lock().await;
        slot.check(Verb::Undefine)?;
        let _define = self.define_lock.lock().await;
        self.store.delete_domain(slot.uuid).await?;
        let view = slot.view();
        slot.gone.store(true, Ordering::Release);
        let mut inv = self.inventory_mut();
        inv.by_name.remove(&view.name);
        inv.by_uuid.remove(&slot.uuid);
        drop(inv);
        self.events
            .publish(&view.name, view.uuid, EventKind::Undefined, "Removed");
        Ok(view)
    }

    pub async fn set_autostart(
        &self,
        target: &Target,
        enable: bool,
    ) -> Result<DomainView, CoreError> {
        let slot = self.slot_of(target)?;
        let _op = slot.op.lock().await;
        self.store.set_autostart(slot.uuid, enable).await?;
        slot.data().autostart = enable;
        Ok(slot.view())
    }

    /// Names of the shut-off domains marked autostart.
    pub(super) fn autostart_candidates(&self) -> Vec<String> {
        self.list(ListFilter::Inactive)
            .into_iter()
            .filter(|v| v.autostart)
            .map(|v| v.name)
            .collect()
    }

    pub(super) fn slots(&self) -> Vec<Arc<Slot>> {
        self.inventory().by_uuid.values().cloned().collect()
    }

    /// A console password needs DES, which FIPS mode forbids: refuse it at define time.
    fn check_console(&self, def: &DomainDef) -> Result<(), CoreError> {
        let has_password = def.graphics.as_ref().is_some_and(|g| g.passwd.is_some());
        if has_password && self.options.vnc.settings.fips {
            return Err(CoreError::InvalidDefinition(format!(
                "{}: graphics.passwd: VNC password authentication uses DES, which FIPS mode forbids; remove passwd",
                def.name
            )));
        }
        Ok(())
    }

    /// Every socket path the daemon may derive from a domain name must fit `sun_path`.
    fn check_derived_paths(&self, def: &DomainDef) -> Result<(), CoreError> {
        let dir = &self.options.unix_sock_dir;
        let paths = [
            dir.join("vnc").join(format!("{}.sock", def.name)),
            dir.join("qemu").join(&def.name).join("qmp.sock"),
        ];
        for path in &paths {
            check_socket_path(path).map_err(|e| CoreError::InvalidDefinition(e.to_string()))?;
        }
        Ok(())
    }
}

/// Names a stored domain whose name define now refuses, with the way out: until it is
/// renamed, commands given its name reach another domain with that id or UUID if one
/// exists, and its own UUID always reaches it.
fn warn_reserved_name(name: &str, uuid: Uuid) {
    if let Some(why) = DomainDef::reserved_name(name) {
        tracing::warn!(
            domain = %name,
            %uuid,
            "Domain '{name}': the name {why}. Until it is renamed, commands given '{name}' \
             reach a running domain with that id or a domain with that UUID first; its UUID \
             {uuid} always reaches it. To rename it, shut it off, then: vmgate dumpconf \
             --security-info {uuid} > dom.toml; set a new name in dom.toml, keeping its uuid \
             line; vmgate define dom.toml"
        );
    }
}

pub(super) fn record(uuid: Uuid, def: &DomainDef, autostart: bool) -> DomainRecord {
    DomainRecord {
        uuid,
        name: def.name.clone(),
        definition: def.to_toml(true),
        autostart,
    }
}
