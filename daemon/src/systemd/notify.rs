//! Readiness notification for `Type=notify` (sd_notify(3)): one datagram of
//! newline-separated `KEY=VALUE` lines to the UNIX socket `NOTIFY_SOCKET` names, a path or
//! (with a leading `@`) an abstract name. vmgated sends `READY=1` once every listener is
//! bound and `STOPPING=1` as soon as shutdown starts. Without `NOTIFY_SOCKET` it does
//! nothing; a failure to notify is logged, never fatal (systemd's start timeout reports a
//! missing `READY=1`).

use std::{
    ffi::OsString,
    io,
    os::unix::{
        ffi::OsStrExt,
        net::{SocketAddr, UnixDatagram},
    },
    path::Path,
    time::Duration,
};

use crate::shutdown::Shutdown;

/// How long one notification may wait for room in systemd's socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Where notifications go; nowhere when the daemon was not started by systemd.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    socket: Option<OsString>,
}

impl Notifier {
    /// Notifications to the socket `NOTIFY_SOCKET` would name.
    pub fn new(socket: impl Into<OsString>) -> Notifier {
        Notifier {
            socket: Some(socket.into()),
        }
    }

    /// Reads `NOTIFY_SOCKET` and removes it, so that nothing the daemon runs notifies in
    /// its name.
    ///
    /// # Safety
    ///
    /// Call it while the process has a single thread (it changes the environment).
    #[allow(unsafe_code)]
    pub unsafe fn take_from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        // SAFETY: the caller guarantees that no other thread reads or writes the
        // environment.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        Notifier { socket }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (`KEY=VALUE` lines). Ok(false) when there is nowhere to send it.
    pub fn notify(&self, state: &str) -> io::Result<bool> {
        let Some(socket) = &self.socket else {
            return Ok(false);
        };
        let addr = address(socket)?;
        let sender = UnixDatagram::unbound()?;
        sender.set_write_timeout(Some(SEND_TIMEOUT))?;
        sender.send_to_addr(state.as_bytes(), &addr)?;
        Ok(true)
    }

    /// Says `READY=1` with `status`, and `STOPPING=1` once `shutdown` is triggered.
    pub fn announce_ready(&self, status: &str, shutdown: &Shutdown) {
        if !self.is_enabled() {
            return;
        }
        self.send_logged(&format!("READY=1\nSTATUS={status}"));
        let notifier = self.clone();
        let stopping = shutdown.clone();
        shutdown.spawn(async move {
            stopping.triggered().await;
            notifier.send_logged("STOPPING=1\nSTATUS=Stopping");
        });
    }

    fn send_logged(&self, state: &str) {
        let first = state.lines().next().unwrap_or_default();
        match self.notify(state) {
            Ok(_) => tracing::debug!("notified systemd: {first}"),
            Err(e) => tracing::warn!(
                socket = ?self.socket,
                "cannot notify systemd ({first}): {e}"
            ),
        }
    }
}

/// `NOTIFY_SOCKET`'s address: an absolute path, or `@name` in the abstract namespace.
fn address(socket: &OsString) -> io::Result<SocketAddr> {
    match socket.as_bytes() {
        [b'/', ..] => SocketAddr::from_pathname(Path::new(socket)),
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET={socket:?} is neither an absolute path nor an abstract name (@name)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_path_socket_receives_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(path.as_os_str());
        assert!(notifier.notify("READY=1\nSTATUS=up").expect("sent"));
        assert_eq!(receive(&socket), "READY=1\nSTATUS=up");
    }

    #[test]
    fn an_abstract_socket_receives_the_state() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("vmgated-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind");
        let notifier = Notifier::new(format!("@{name}"));
        assert!(notifier.notify("STOPPING=1").expect("sent"));
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_a_relative_one_is_refused() {
        assert!(!Notifier::default().notify("READY=1").expect("no-op"));
        let err = Notifier::new("run/notify")
            .notify("READY=1")
            .expect_err("relative");
        assert!(err.to_string().contains("\"run/notify\""), "{err}");
    }

    #[tokio::test]
    async fn ready_then_stopping_when_shutdown_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        let shutdown = Shutdown::new();
        Notifier::new(path.as_os_str()).announce_ready("Serving", &shutdown);
        assert_eq!(receive(&socket), "READY=1\nSTATUS=Serving");
        shutdown.trigger();
        shutdown.wait().await;
        assert!(receive(&socket).starts_with("STOPPING=1\n"));
    }
}
