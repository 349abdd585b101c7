//! Drivers run guests. A `Driver` starts a guest from its definition and hands back a
//! `Guest` handle; the core never learns how (in-process for `test`, a supervised QEMU
//! process for `qemu`). A guest performs the verbs of a running guest (`GuestVerb`, from
//! the leaf module `crate::verb`) through one method, `Guest::perform`, and reports its
//! status on a watch channel, so the core sees stops it did not ask for (a guest powering
//! itself off, a crash) the same way as the ones it did. Drivers never import `core`.

pub mod qemu;
pub mod test;

use std::{io, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{broadcast, watch},
};
use vmgate_config::domain::DomainDef;

use crate::verb::GuestVerb;

/// Why a guest stopped, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The guest powered off (ACPI shutdown, or the test driver's shutdown).
    Shutdown,
    /// Destroyed on request.
    Destroyed,
    /// It died without being asked to.
    Crashed,
    /// The daemon is stopping and the guest cannot outlive it.
    DaemonStopped,
}

/// What a running guest is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestStatus {
    Running,
    Paused,
    Stopped(StopCause),
}

/// Something a guest did that leaves its status as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestNotice {
    /// It rebooted: a guest-cooperative reboot completed, or the guest rebooted itself.
    Rebooted,
    /// It was reset on request (`reset`).
    Reset,
}

/// What a starting daemon finds of a guest an earlier daemon ran.
pub enum Reattach {
    /// Nothing: the guest was not left running.
    NotRunning,
    /// Still running, now supervised again.
    Running(Arc<dyn Guest>),
    /// It stopped while no daemon watched; the text says how it was found.
    Gone(StopCause, String),
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    StartFailed(String),
    #[error("The guest is no longer running")]
    Gone,
    #[error("{0}")]
    Failed(String),
}

/// Starts guests.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The URI scheme this driver answers to: "test" or "qemu".
    fn name(&self) -> &'static str;
    fn hypervisor_version(&self) -> String;
    /// Whether guests keep running when the daemon stops (QEMU processes do, test guests
    /// live inside the daemon and do not).
    fn guests_outlive_daemon(&self) -> bool;
    async fn start(&self, def: &DomainDef) -> Result<Arc<dyn Guest>, DriverError>;
    /// Looks for the guest `def` (the definition it was started with) that an earlier
    /// daemon left running, and supervises it again.
    async fn reattach(&self, def: &DomainDef) -> Reattach;
}

/// A running guest.
#[async_trait]
pub trait Guest: Send + Sync + 'static {
    fn status(&self) -> watch::Receiver<GuestStatus>;
    /// Reboots and resets from now on.
    fn notices(&self) -> broadcast::Receiver<GuestNotice>;
    /// Performs `verb`, returning once the request is made; the effect shows in `status()`
    /// (at once for the test driver, when the guest acts for QEMU). A stopped guest
    /// performs nothing: [`DriverError::Gone`].
    async fn perform(&self, verb: GuestVerb) -> Result<(), DriverError>;
    /// CPU time used by this run.
    fn cpu_time(&self) -> Duration;
    /// The memory the guest has, in MiB, as its hypervisor reports it.
    fn memory_mib(&self) -> u64;
    /// The guest's framebuffer, an RFB server without authentication that only the
    /// gateway reaches; None for a guest without graphics.
    fn console(&self) -> Option<Arc<dyn ConsoleBackend>>;
}

/// A byte stream to or from a console.
pub trait ConsoleStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ConsoleStream for T {}

/// Opens connections to a guest's own RFB server (QEMU's `-vnc unix:` socket, or the test
/// driver's in-process framebuffer server).
#[async_trait]
pub trait ConsoleBackend: Send + Sync + 'static {
    async fn connect(&self) -> io::Result<Box<dyn ConsoleStream>>;
}
