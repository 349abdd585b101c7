//! What systemd hands a `Type=notify` service started by socket units: the listening
//! sockets (`activation`, sd_listen_fds_with_names(3)) and the notification socket
//! (`notify`, sd_notify(3)). Both are read once, at the top of `main` while the process
//! has one thread, and the variables are removed, so that nothing the daemon runs
//! (`qemu --version`, guests) inherits them. The sockets are only checked and handed out
//! here; the listeners in `rpc` serve them.
//!
//! Both protocols are small enough to implement on nix and std: listenfd has no names,
//! and sd-notify would add a dependency for one datagram.

pub mod activation;
pub mod notify;

pub use activation::{Activated, ActivationError, SocketName};
pub use notify::Notifier;

/// Everything systemd passed; empty when the daemon was not started by systemd.
#[derive(Debug, Default)]
pub struct Handoff {
    pub sockets: Activated,
    pub notify: Notifier,
}

impl Handoff {
    /// Nothing passed: the daemon binds its sockets itself and notifies nobody.
    pub fn none() -> Handoff {
        Handoff::default()
    }

    /// Takes the sockets and the notification socket from the environment, removing
    /// `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES` and `NOTIFY_SOCKET`.
    ///
    /// # Safety
    ///
    /// Call it once, before the process starts a second thread (it changes the
    /// environment), and before anything else takes ownership of the descriptors from 3 on.
    #[allow(unsafe_code)]
    pub unsafe fn take_from_env() -> Result<Handoff, ActivationError> {
        // SAFETY: the caller guarantees one thread and unowned descriptors.
        let sockets = unsafe { activation::take_from_env() }?;
        // SAFETY: as above.
        let notify = unsafe { Notifier::take_from_env() };
        Ok(Handoff { sockets, notify })
    }
}
