//! One QEMU guest under supervision: the `Guest` handle the core holds, and the task that
//! owns the process and reads its QMP events. The task turns events into the guest's
//! status: STOP and RESUME are pause and resume; SHUTDOWN (QEMU kept alive by
//! `-no-shutdown`) either completes a guest-cooperative reboot (reset, then resume, as
//! libvirt does) or is answered with `quit`; the end of the QMP connection (or of the
//! child) is the end of the run, whose cause is what the daemon last asked for: a quit
//! it sent after the guest powered off is a shutdown, after `destroy` a destruction, and
//! anything unasked a crash. The status turns to stopped only once the process is gone
//! and its run directory removed, so nothing of a stopped guest is left behind.
//!
//! When the daemon stops, the task ends and the guest keeps running; a new daemon
//! re-attaches to it (`driver.rs`).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::{
    net::UnixStream,
    sync::{broadcast, watch},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    argv::RunPaths,
    cputime, process,
    qmp::{CloseReason, Event, QmpClient, QmpError, RunState},
};
use crate::{
    driver::{
        ConsoleBackend, ConsoleStream, DriverError, Guest, GuestNotice, GuestStatus, StopCause,
    },
    verb::GuestVerb,
};

/// How long QEMU gets to exit after `quit` or the end of its QMP connection before it is
/// killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// How long a killed QEMU gets to disappear.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// SeaBIOS resets the machine once more right after a `system_reset` (QEMU reports it as
/// a guest reset); a guest reset this soon after the daemon's own is that one, not a
/// reboot by the guest.
const FIRMWARE_RESET_WINDOW: Duration = Duration::from_secs(2);

/// The process the supervisor owns: its own child, or one an earlier daemon started.
pub(super) enum Process {
    Child(tokio::process::Child),
    Adopted,
}

impl Process {
    /// Resolves when the child exits; never for an adopted process (QMP EOF tells).
    async fn exited(&mut self) {
        match self {
            Process::Child(child) => {
                let _ = child.wait().await;
            }
            Process::Adopted => std::future::pending().await,
        }
    }

    /// Waits for the process to be gone, killing it after [`EXIT_GRACE`].
    async fn reap(&mut self, pid: u32, uuid: Uuid) {
        match self {
            Process::Child(child) => {
                if tokio::time::timeout(EXIT_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(pid, "QEMU did not exit; killing it");
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            Process::Adopted => {
                if !process::wait_gone(pid, EXIT_GRACE).await {
                    tracing::warn!(pid, "QEMU did not exit; killing it");
                    process::kill_guest(pid, uuid);
                    process::wait_gone(pid, KILL_GRACE).await;
                }
            }
        }
    }
}

/// What the daemon asked for that the guest's next SHUTDOWN or the end of its process
/// answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    Nothing,
    /// `reboot`: when the guest powers off, reset and resume it.
    Reboot,
    /// The guest powered off and was told to quit.
    PoweredOff,
    /// `destroy`.
    Destroy,
}

/// What a supervised guest is made of.
pub(super) struct Supervised {
    pub name: String,
    pub uuid: Uuid,
    pub pid: u32,
    pub paths: RunPaths,
    pub qmp: QmpClient,
    pub events: broadcast::Receiver<Event>,
    pub process: Process,
    pub initial: GuestStatus,
    pub memory_mib: u64,
    pub graphics: bool,
}

/// A running QEMU guest.
pub struct QemuGuest {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    uuid: Uuid,
    pid: u32,
    paths: RunPaths,
    qmp: QmpClient,
    status: watch::Sender<GuestStatus>,
    notices: broadcast::Sender<GuestNotice>,
    intent: Mutex<Intent>,
    /// Between a SHUTDOWN and the RESUME of a reboot (or the end): the STOP QEMU sends
    /// then is not a pause.
    powering_off: Mutex<bool>,
    memory_mib: AtomicU64,
    /// When the daemon last reset the guest.
    last_reset: Mutex<Option<tokio::time::Instant>>,
    /// The last CPU time read, kept for after the process is gone.
    cpu_time_ns: AtomicU64,
    graphics: bool,
}

impl QemuGuest {
    /// Starts supervising; the task ends when the guest stops or `stop` is cancelled (the
    /// daemon stopping, which leaves the guest running).
    pub(super) fn supervise(parts: Supervised, stop: CancellationToken) -> Arc<QemuGuest> {
        let Supervised {
            name,
            uuid,
            pid,
            paths,
            qmp,
            events,
            process,
            initial,
            memory_mib,
            graphics,
        } = parts;
        let shared = Arc::new(Shared {
            name,
            uuid,
            pid,
            paths,
            qmp,
            status: watch::Sender::new(initial),
            notices: broadcast::channel(16).0,
            intent: Mutex::new(Intent::Nothing),
            powering_off: Mutex::new(false),
            memory_mib: AtomicU64::new(memory_mib),
            last_reset: Mutex::new(None),
            cpu_time_ns: AtomicU64::new(0),
            graphics,
        });
        tokio::spawn(run(shared.clone(), process, events, stop));
        Arc::new(QemuGuest { shared })
    }
}

/// The supervisor task.
async fn run(
    shared: Arc<Shared>,
    mut process: Process,
    mut events: broadcast::Receiver<Event>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            _ = process.exited() => break,
            event = events.recv() => event,
        };
        match event {
            Ok(Event::Closed(reason)) => {
                if let CloseReason::Broken(why) = reason {
                    tracing::warn!(domain = %shared.name, "QMP connection lost: {why}");
                }
                break;
            }
            Err(broadcast::error::RecvError::Closed) => break,
            Ok(Event::Shutdown { guest, reason }) => shared.on_shutdown(guest, &reason).await,
            Ok(Event::Stop) => {
                if !*shared.lock_powering_off() {
                    shared.set_status(GuestStatus::Paused);
                }
            }
            Ok(Event::Resume) => {
                *shared.lock_powering_off() = false;
                shared.set_status(GuestStatus::Running);
            }
            Ok(Event::Reset { guest: true, .. }) if !shared.firmware_reset() => {
                let _ = shared.notices.send(GuestNotice::Rebooted);
            }
            Err(broadcast::error::RecvError::Lagged(lost)) => {
                tracing::warn!(domain = %shared.name, lost, "QMP events lost; asking QEMU");
                shared.resync().await;
            }
            Ok(_) => {}
        }
    }
    let cause = match *shared.lock_intent() {
        Intent::Destroy => StopCause::Destroyed,
        Intent::PoweredOff => StopCause::Shutdown,
        Intent::Nothing | Intent::Reboot => StopCause::Crashed,
    };
    if cause == StopCause::Crashed {
        tracing::warn!(domain = %shared.name, pid = shared.pid, "QEMU ended unexpectedly");
    }
    shared.refresh_cpu_time();
    process.reap(shared.pid, shared.uuid).await;
    if let Err(e) = std::fs::remove_dir_all(&shared.paths.dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %shared.paths.dir.display(), "cannot remove the run directory: {e}");
    }
    shared.status.send_replace(GuestStatus::Stopped(cause));
}

impl Shared {
    fn lock_intent(&self) -> std::sync::MutexGuard<'_, Intent> {
        self.intent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_powering_off(&self) -> std::sync::MutexGuard<'_, bool> {
        self.powering_off
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Resets the guest, remembering when.
    async fn system_reset(&self) -> Result<(), QmpError> {
        *self
            .last_reset
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
        self.qmp.system_reset().await
    }

    /// Whether a guest reset now is the firmware's echo of the daemon's last reset.
    fn firmware_reset(&self) -> bool {
        let last = self
            .last_reset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_some_and(|at| at.elapsed() < FIRMWARE_RESET_WINDOW)
    }

    /// Sets the status unless the guest has stopped.
    fn set_status(&self, next: GuestStatus) {
        self.status.send_if_modified(|current| {
            let changed = !matches!(current, GuestStatus::Stopped(_)) && *current != next;
            if changed {
                *current = next;
            }
            changed
        });
    }

    fn is_stopped(&self) -> bool {
        matches!(*self.status.borrow(), GuestStatus::Stopped(_))
    }

    /// The guest powered off (or QEMU was told to stop by a signal): reboot it if a reboot
    /// was asked for, else let QEMU exit. A SHUTDOWN caused by our own `quit` needs nothing.
    async fn on_shutdown(&self, guest: bool, reason: &str) {
        if reason == "host-qmp-quit" {
            return;
        }
        *self.lock_powering_off() = true;
        let reboot = {
            let mut intent = self.lock_intent();
            let reboot = *intent == Intent::Reboot;
            *intent = if reboot {
                Intent::Nothing
            } else {
                Intent::PoweredOff
            };
            reboot
        };
        tracing::info!(domain = %self.name, guest, reason, reboot, "guest powered off");
        if reboot {
            let done = async {
                self.system_reset().await?;
                self.qmp.cont().await
            };
            match done.await {
                Ok(()) => {
                    let _ = self.notices.send(GuestNotice::Rebooted);
                }
                Err(e) => tracing::warn!(domain = %self.name, "cannot complete the reboot: {e}"),
            }
        } else if let Err(e) = self.qmp.quit().await {
            tracing::warn!(domain = %self.name, "cannot quit QEMU after power-off: {e}");
        }
    }

    /// After lost events: asks QEMU where the guest is.
    async fn resync(&self) {
        match self.qmp.query_status().await {
            Ok(status) if status.status == RunState::Shutdown => {
                self.on_shutdown(true, "guest-shutdown").await;
            }
            Ok(status) if status.running => self.set_status(GuestStatus::Running),
            Ok(_) => self.set_status(GuestStatus::Paused),
            Err(e) => tracing::warn!(domain = %self.name, "query-status failed: {e}"),
        }
    }

    fn refresh_cpu_time(&self) -> Duration {
        match cputime::of_process(self.pid) {
            Ok(used) => {
                let ns = u64::try_from(used.as_nanos()).unwrap_or(u64::MAX);
                self.cpu_time_ns.store(ns, Ordering::Relaxed);
                used
            }
            Err(_) => Duration::from_nanos(self.cpu_time_ns.load(Ordering::Relaxed)),
        }
    }

    fn check_running(&self) -> Result<(), DriverError> {
        if self.is_stopped() {
            Err(DriverError::Gone)
        } else {
            Ok(())
        }
    }

    /// Tells QEMU to quit and waits for the supervisor to report the guest stopped,
    /// killing QEMU if its monitor does not answer.
    async fn destroy(&self) -> Result<(), DriverError> {
        *self.lock_intent() = Intent::Destroy;
        let mut status = self.status.subscribe();
        let stopped = |st: &GuestStatus| matches!(st, GuestStatus::Stopped(_));
        let _ = tokio::time::timeout(EXIT_GRACE, self.qmp.quit()).await;
        // The supervisor kills QEMU itself when it does not exit after the quit; this is
        // for a QEMU whose monitor does not even answer.
        let limit = EXIT_GRACE * 2;
        if tokio::time::timeout(limit, status.wait_for(stopped))
            .await
            .is_err()
        {
            tracing::warn!(domain = %self.name, pid = self.pid, "QEMU ignores quit; killing it");
            process::kill_guest(self.pid, self.uuid);
            if tokio::time::timeout(KILL_GRACE, status.wait_for(stopped))
                .await
                .is_err()
            {
                return Err(DriverError::Failed(format!(
                    "QEMU process {} of {} survived SIGKILL",
                    self.pid, self.name
                )));
            }
        }
        Ok(())
    }
}

fn qmp_error(e: QmpError) -> DriverError {
    match e {
        QmpError::Closed(_) => DriverError::Gone,
        other => DriverError::Failed(other.to_string()),
    }
}

#[async_trait]
impl Guest for QemuGuest {
    fn status(&self) -> watch::Receiver<GuestStatus> {
        self.shared.status.subscribe()
    }

    fn notices(&self) -> broadcast::Receiver<GuestNotice> {
        self.shared.notices.subscribe()
    }

    async fn perform(&self, verb: GuestVerb) -> Result<(), DriverError> {
        let s = &self.shared;
        s.check_running()?;
        match verb {
            GuestVerb::Shutdown => {
                // Powering off now ends a reboot asked for earlier: the guest stays off.
                {
                    let mut intent = s.lock_intent();
                    if *intent == Intent::Reboot {
                        *intent = Intent::Nothing;
                    }
                }
                s.qmp.system_powerdown().await.map_err(qmp_error)
            }
            GuestVerb::Destroy => s.destroy().await,
            GuestVerb::Reboot => {
                *s.lock_intent() = Intent::Reboot;
                s.qmp.system_powerdown().await.map_err(qmp_error)
            }
            GuestVerb::Reset => {
                s.system_reset().await.map_err(qmp_error)?;
                let _ = s.notices.send(GuestNotice::Reset);
                Ok(())
            }
            GuestVerb::Suspend => {
                s.qmp.stop().await.map_err(qmp_error)?;
                s.set_status(GuestStatus::Paused);
                Ok(())
            }
            GuestVerb::Resume => {
                s.qmp.cont().await.map_err(qmp_error)?;
                s.set_status(GuestStatus::Running);
                Ok(())
            }
        }
    }

    fn cpu_time(&self) -> Duration {
        if self.shared.is_stopped() {
            return Duration::from_nanos(self.shared.cpu_time_ns.load(Ordering::Relaxed));
        }
        self.shared.refresh_cpu_time()
    }

    fn memory_mib(&self) -> u64 {
        self.shared.memory_mib.load(Ordering::Relaxed)
    }

    fn console(&self) -> Option<Arc<dyn ConsoleBackend>> {
        self.shared.graphics.then(|| {
            Arc::new(QemuConsole {
                socket: self.shared.paths.vnc.clone(),
            }) as Arc<dyn ConsoleBackend>
        })
    }
}

/// QEMU's own VNC server on the UNIX socket in the run directory.
struct QemuConsole {
    socket: std::path::PathBuf,
}

#[async_trait]
impl ConsoleBackend for QemuConsole {
    async fn connect(&self) -> std::io::Result<Box<dyn ConsoleStream>> {
        Ok(Box::new(UnixStream::connect(&self.socket).await?))
    }
}
