//! The `test` driver: guests that live inside the daemon, follow the same state machine as
//! QEMU guests, and own a synthetic framebuffer the VNC gateway serves. This is product
//! code, not a test double: `test:///default` is what `config/local.toml` runs, for demos,
//! for trying vmgate without QEMU, and for fast tests, as libvirt's driver of the same
//! name is. Its guests stop when the daemon stops, as libvirt's test guests do.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use vmgate_config::domain::DomainDef;

use super::{
    ConsoleBackend, ConsoleStream, Driver, DriverError, Guest, GuestNotice, GuestStatus, Reattach,
    StopCause,
};
use crate::verb::GuestVerb;

pub mod framebuffer;
pub mod rfb_server;

use framebuffer::FramebufferHandle;

/// The in-process driver.
#[derive(Default)]
pub struct TestDriver;

#[async_trait]
impl Driver for TestDriver {
    fn name(&self) -> &'static str {
        "test"
    }

    fn hypervisor_version(&self) -> String {
        format!("vmgate test driver {}", env!("CARGO_PKG_VERSION"))
    }

    fn guests_outlive_daemon(&self) -> bool {
        false
    }

    async fn start(&self, def: &DomainDef) -> Result<Arc<dyn Guest>, DriverError> {
        Ok(Arc::new(TestGuest::start(def)))
    }

    /// Test guests live inside the daemon: none survives it.
    async fn reattach(&self, _def: &DomainDef) -> Reattach {
        Reattach::NotRunning
    }
}

/// How often a running test guest's screen changes.
const TICK: Duration = Duration::from_secs(1);

/// One in-process guest.
pub struct TestGuest {
    status: watch::Sender<GuestStatus>,
    notices: broadcast::Sender<GuestNotice>,
    memory_mib: u64,
    cpu: Mutex<CpuClock>,
    screen: FramebufferHandle,
}

/// CPU time as a test guest spends it: wall time while running, none while paused.
#[derive(Default)]
struct CpuClock {
    used: Duration,
    running_since: Option<Instant>,
}

impl CpuClock {
    fn total(&self) -> Duration {
        self.used + self.running_since.map(|t| t.elapsed()).unwrap_or_default()
    }

    fn pause(&mut self) {
        if let Some(since) = self.running_since.take() {
            self.used += since.elapsed();
        }
    }

    fn run(&mut self) {
        self.running_since.get_or_insert_with(Instant::now);
    }
}

impl TestGuest {
    fn start(def: &DomainDef) -> TestGuest {
        let mut cpu = CpuClock::default();
        cpu.run();
        let guest = TestGuest {
            status: watch::Sender::new(GuestStatus::Running),
            notices: broadcast::channel(16).0,
            memory_mib: def.memory_mib,
            cpu: Mutex::new(cpu),
            screen: FramebufferHandle::new(&def.name, "running"),
        };
        tokio::spawn(animate(guest.screen.clone(), guest.status.subscribe()));
        guest
    }

    /// The guest's screen, which its console serves.
    pub fn screen(&self) -> &FramebufferHandle {
        &self.screen
    }

    fn cpu(&self) -> std::sync::MutexGuard<'_, CpuClock> {
        self.cpu.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `next` if the guest has not stopped; a stopped guest accepts nothing.
    fn transition(&self, next: GuestStatus) -> Result<(), DriverError> {
        let mut result = Ok(());
        self.status.send_if_modified(|current| {
            if matches!(current, GuestStatus::Stopped(_)) {
                result = Err(DriverError::Gone);
                return false;
            }
            let changed = *current != next;
            *current = next;
            changed
        });
        result?;
        match next {
            GuestStatus::Running => self.cpu().run(),
            GuestStatus::Paused | GuestStatus::Stopped(_) => self.cpu().pause(),
        }
        self.screen.set_state(match next {
            GuestStatus::Running => "running",
            GuestStatus::Paused => "paused",
            GuestStatus::Stopped(_) => "shut off",
        });
        Ok(())
    }
}

/// Advances the screen's changing element while the guest runs; ends when it stops.
async fn animate(screen: FramebufferHandle, mut status: watch::Receiver<GuestStatus>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = status.changed() => {
                if changed.is_err() { return; }
            }
        }
        match *status.borrow() {
            GuestStatus::Running => screen.tick(),
            GuestStatus::Paused => {}
            GuestStatus::Stopped(_) => return,
        }
    }
}

#[async_trait]
impl Guest for TestGuest {
    fn status(&self) -> watch::Receiver<GuestStatus> {
        self.status.subscribe()
    }

    fn notices(&self) -> broadcast::Receiver<GuestNotice> {
        self.notices.subscribe()
    }

    async fn perform(&self, verb: GuestVerb) -> Result<(), DriverError> {
        match verb {
            GuestVerb::Shutdown => self.transition(GuestStatus::Stopped(StopCause::Shutdown)),
            GuestVerb::Destroy => self.transition(GuestStatus::Stopped(StopCause::Destroyed)),
            GuestVerb::Reboot => {
                // A test guest reboots instantly: it stays running.
                self.transition(GuestStatus::Running)?;
                let _ = self.notices.send(GuestNotice::Rebooted);
                Ok(())
            }
            GuestVerb::Reset => {
                // A reset keeps a paused guest paused, as QEMU's system_reset does.
                let current = *self.status.borrow();
                self.transition(current)?;
                let _ = self.notices.send(GuestNotice::Reset);
                Ok(())
            }
            GuestVerb::Suspend => self.transition(GuestStatus::Paused),
            GuestVerb::Resume => self.transition(GuestStatus::Running),
        }
    }

    fn cpu_time(&self) -> Duration {
        self.cpu().total()
    }

    fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    fn console(&self) -> Option<Arc<dyn ConsoleBackend>> {
        Some(Arc::new(TestConsole {
            screen: self.screen.clone(),
        }))
    }
}

/// How much a console connection to a test guest buffers in each direction. The pipe keeps
/// what it once grew to for as long as the connection lives, so this bounds the memory of
/// a session that has seen a full update (a 1 MiB pipe moved about 8% more full frames
/// through the relay, for 768 KiB more per such session).
const CONSOLE_PIPE_BYTES: usize = 256 * 1024;

/// Each connection gets its own RFB server task over an in-memory pipe; the task ends when
/// the gateway drops its end.
struct TestConsole {
    screen: FramebufferHandle,
}

#[async_trait]
impl ConsoleBackend for TestConsole {
    async fn connect(&self) -> std::io::Result<Box<dyn ConsoleStream>> {
        let (gateway_end, guest_end) = tokio::io::duplex(CONSOLE_PIPE_BYTES);
        let screen = self.screen.clone();
        tokio::spawn(async move {
            if let Err(e) = rfb_server::serve(guest_end, screen).await {
                tracing::debug!("test console connection ended: {e}");
            }
        });
        Ok(Box::new(gateway_end))
    }
}

impl Drop for TestGuest {
    fn drop(&mut self) {
        // Whoever still watches learns that the guest is gone with the daemon.
        self.status.send_if_modified(|s| {
            if matches!(s, GuestStatus::Stopped(_)) {
                return false;
            }
            *s = GuestStatus::Stopped(StopCause::DaemonStopped);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_screen_shows_the_state_and_moves_only_while_running() {
        let def = DomainDef::new_minimal("alpha");
        let guest = TestGuest::start(&def);
        assert_eq!(guest.screen().read(|fb| fb.name().to_owned()), "alpha");
        let before = guest.screen().read(|fb| fb.ticks());
        tokio::time::sleep(TICK * 3 + TICK / 2).await;
        assert!(guest.screen().read(|fb| fb.ticks()) >= before + 3);

        guest.perform(GuestVerb::Suspend).await.expect("suspend");
        assert_eq!(guest.screen().read(|fb| fb.state().to_owned()), "paused");
        let paused_at = guest.screen().read(|fb| fb.ticks());
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(
            guest.screen().read(|fb| fb.ticks()),
            paused_at,
            "paused guests do not tick"
        );

        guest.perform(GuestVerb::Destroy).await.expect("destroy");
        assert!(
            guest.perform(GuestVerb::Resume).await.is_err(),
            "a stopped guest accepts nothing"
        );
    }
}
