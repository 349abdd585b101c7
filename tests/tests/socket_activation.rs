//! Socket activation and readiness notification, end to end, with the test as systemd: it
//! binds the sockets, starts the real vmgated with them at descriptors 3, 4, ... and
//! `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES` set as systemd sets them, reads
//! `NOTIFY_SOCKET`, and drives the real CLI over the passed sockets. The daemon's own
//! socket paths (`unix_sock_dir`) are elsewhere, so every answer proves a passed socket
//! served it.

use std::{
    fs,
    os::{
        fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd},
        unix::{
            net::{UnixDatagram, UnixListener},
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    fcntl::{FcntlArg, fcntl},
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tempfile::TempDir;
use vmgate_tests::{DAEMON_DEADLINE, bins, pki, require_tool, vmgate_login};

/// One vmgated started the way systemd starts `vmgated.service` with its socket units.
struct Activated {
    dir: TempDir,
    notify: UnixDatagram,
    child: Option<Child>,
}

impl Activated {
    /// Starts vmgated with `extra` in its `[daemon]` section and `passed` at descriptors 3,
    /// 4, ... under their names. The test keeps its own copies, as systemd does.
    fn start(dir: TempDir, extra: &str, passed: &[(&str, OwnedFd)]) -> Activated {
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        let config = dir.path().join("vmgated.toml");
        let text = format!(
            "[daemon]\ndriver = \"test\"\nstate_dir = \"{0}/state\"\nunix_sock_dir = \"{0}/run\"\n\
             {extra}\n",
            dir.path().display()
        );
        fs::write(&config, text).expect("write config");
        let log = fs::File::create(dir.path().join("vmgated.log")).expect("log");

        let names: Vec<&str> = passed.iter().map(|(name, _)| *name).collect();
        let fds: Vec<RawFd> = passed.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        let mut command = Command::new("sh");
        // systemd sets LISTEN_PID to the service's own pid after the fork; the shell's $$
        // is that pid, which exec keeps.
        command
            .args(["-c", "LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\""])
            .arg(bins::vmgated())
            .arg("--config")
            .arg(&config)
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .process_group(0);
        if passed.is_empty() {
            command
                .env_remove("LISTEN_FDS")
                .env_remove("LISTEN_FDNAMES");
        }
        place_fds(&mut command, fds);
        let child = command.spawn().expect("spawn vmgated");
        Activated {
            dir,
            notify,
            child: Some(child),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("vmgated.log")).unwrap_or_default()
    }

    /// The next notification, failing with the log if the daemon exits first.
    fn notification(&mut self) -> String {
        let deadline = Instant::now() + DAEMON_DEADLINE;
        self.notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.notify.recv(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "vmgated exited with {status} before notifying:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no notification:\n{}",
                self.log()
            );
        }
    }

    /// Waits for the daemon to exit on its own.
    fn exit_status(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + DAEMON_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                panic!("vmgated did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = killpg(Pid::from_raw(child.id() as i32), signal);
        }
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Makes `fds` descriptors 3, 4, ... of the child, without close-on-exec.
fn place_fds(command: &mut Command, fds: Vec<RawFd>) {
    const MAX: usize = 8;
    assert!(fds.len() <= MAX);
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only makes fcntl(2) and
    // dup2(2) calls, which are async-signal-safe, on descriptors the parent holds open
    // (`fds`, borrowed by the caller for the whole spawn). It allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // First copies at 100 and up, so that moving them to 3, 4, ... cannot overwrite
            // a descriptor not yet moved; they are close-on-exec and vanish at exec.
            let mut high = [0 as RawFd; MAX];
            for (slot, &fd) in high.iter_mut().zip(&fds) {
                *slot = fcntl(BorrowedFd::borrow_raw(fd), FcntlArg::F_DUPFD_CLOEXEC(100))?;
            }
            for (target, &fd) in (3..).zip(&high[..fds.len()]) {
                // dup2 clears close-on-exec on the new descriptor.
                let placed = nix::unistd::dup2_raw(BorrowedFd::borrow_raw(fd), target)?;
                let _ = placed.into_raw_fd();
            }
            Ok(())
        });
    }
}

fn unix_listener(path: &Path) -> OwnedFd {
    UnixListener::bind(path).expect("bind").into()
}

fn tcp_listener() -> (OwnedFd, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener.into(), port)
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("vmgact")
        .tempdir()
        .expect("temp dir")
}

fn unix_uri(socket: &Path) -> String {
    format!("test+unix:///default?socket={}", socket.display())
}

#[test]
fn passed_sockets_are_served_by_their_names_and_left_to_systemd() {
    let dir = temp_dir();
    let passed_dir = dir.path().join("passed");
    fs::create_dir(&passed_dir).expect("mkdir");
    // The paths say the opposite of the names on purpose: read-only or read-write must
    // come from the name alone.
    let rw_path = passed_dir.join("vmgate-sock-ro");
    let ro_path = passed_dir.join("vmgate-sock");
    let (tcp, port) = tcp_listener();
    let passed = [
        ("vmgate", unix_listener(&rw_path)),
        ("vmgate-ro", unix_listener(&ro_path)),
        ("vmgate-tcp", tcp),
    ];
    // listen_tcp stays off: the passed vmgate-tcp turns the TCP listener on. Its port
    // (tcp_port's default, 16509) and the socket modes are the units' business.
    let extra = "tcp_min_ssf = 0\nunix_sock_rw_perms = \"0600\"\n";
    let mut d = Activated::start(dir, extra, &passed);

    let ready = d.notification();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS="), "{ready:?}");
    let rw = unix_uri(&rw_path);
    let ro = unix_uri(&ro_path);
    // Ready means serving: the first call after READY=1 is answered.
    vmgate_login(&rw, None, &["list", "--all"], None).ok();
    for own in ["run/vmgate-sock", "run/vmgate-sock-ro"] {
        assert!(!d.path(own).exists(), "{own} bound although passed");
    }
    let log = d.log();
    assert!(
        log.contains("socket activation: serving vmgate, vmgate-ro, vmgate-tcp")
            && log.contains("unix_sock_rw_perms")
            && log.contains("listen_tcp is on"),
        "{log}"
    );
    assert_eq!(log.matches("are ignored for them").count(), 1, "{log}");

    // Read-write by name: define works.
    let alpha = d.path("alpha.toml");
    fs::write(&alpha, "name = \"alpha\"\n").expect("write");
    let alpha = alpha.to_str().expect("utf-8");
    vmgate_login(&rw, None, &["define", alpha], None).ok();
    let add = ["sasl-user", "add", "alice", "--password-stdin"];
    vmgate_login(&rw, None, &add, Some("alice-pw\n")).ok();

    // Read-only by name: list works, define is refused.
    assert!(
        vmgate_login(&ro, None, &["list", "--all"], None)
            .ok()
            .contains("alpha")
    );
    let beta = d.path("beta.toml");
    fs::write(&beta, "name = \"beta\"\n").expect("write");
    let refused = vmgate_login(&ro, None, &["define", beta.to_str().expect("utf-8")], None);
    assert!(refused.err().contains("read-only"), "{refused:?}");

    // Plain TCP: the SASL login is required, and works.
    let tcp_uri = format!("test+tcp://127.0.0.1:{port}/default");
    let anonymous = vmgate_login(&tcp_uri, None, &["list", "--all"], None);
    assert!(anonymous.err().contains("no credentials"), "{anonymous:?}");
    let auth = d.path("auth.toml");
    fs::write(
        &auth,
        "[[credentials]]\nhost = \"127.0.0.1\"\nusername = \"alice\"\npassword = \"alice-pw\"\n",
    )
    .expect("write the auth file");
    pki::set_mode(&auth, 0o600);
    let listed = vmgate_login(&tcp_uri, Some(&auth), &["list", "--all"], None);
    assert!(listed.ok().contains("alpha"), "{listed:?}");
    assert!(d.log().contains("API SASL login user=\"alice\""));

    // SIGTERM: STOPPING=1 at once, a clean exit, and systemd's sockets stay.
    d.signal(Signal::SIGTERM);
    let stopping = d.notification();
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert!(d.exit_status().success(), "{}", d.log());
    assert!(
        rw_path.exists() && ro_path.exists(),
        "passed sockets unlinked"
    );
    assert!(
        !d.log().contains("nothing serves it"),
        "every passed socket was used"
    );
}

#[test]
fn without_activation_ready_comes_once_the_own_sockets_answer() {
    let mut d = Activated::start(temp_dir(), "", &[]);
    let ready = d.notification();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    let rw = d.path("run/vmgate-sock");
    assert!(
        std::os::unix::net::UnixStream::connect(&rw).is_ok(),
        "READY=1 before the socket was bound"
    );
    vmgate_login(&unix_uri(&rw), None, &["list"], None).ok();
    assert!(d.log().contains("vmgated ready"));
    assert!(!d.log().contains("socket activation"), "{}", d.log());
    d.signal(Signal::SIGTERM);
    assert!(d.notification().starts_with("STOPPING=1"));
    assert!(d.exit_status().success(), "{}", d.log());
    assert!(!rw.exists(), "the daemon removes the sockets it bound");
}

/// Starts vmgated with `passed` and returns its log once it has exited, which it must.
fn refused(extra: &str, passed: &[(&str, OwnedFd)], dir: TempDir) -> String {
    let mut d = Activated::start(dir, extra, passed);
    let status = d.exit_status();
    assert!(!status.success(), "vmgated ran:\n{}", d.log());
    d.log()
}

#[test]
fn sockets_that_do_not_match_their_names_stop_the_daemon() {
    let dir = temp_dir();
    let (tcp, _) = tcp_listener();
    let log = refused("", &[("vmgate", tcp)], dir);
    assert!(
        log.contains(
            "fd 3 (vmgate) is an IPv4 TCP socket, but vmgate must be a listening UNIX stream \
             socket; check ListenStream= and Accept=no in vmgated.socket"
        ),
        "{log}"
    );

    let dir = temp_dir();
    let unix = unix_listener(&dir.path().join("s"));
    let other = unix_listener(&dir.path().join("t"));
    let log = refused("", &[("vmgate-ro", unix), ("vmgate-tls", other)], dir);
    assert!(
        log.contains(
            "fd 4 (vmgate-tls) is a UNIX stream socket, but vmgate-tls must be a listening \
             TCP socket; check ListenStream= and Accept=no in vmgated-tls.socket"
        ),
        "{log}"
    );

    let dir = temp_dir();
    let unix = unix_listener(&dir.path().join("s"));
    let log = refused("", &[("libvirt", unix)], dir);
    assert!(
        log.contains("fd 3 is named \"libvirt\"")
            && log.contains("one of vmgate, vmgate-ro, vmgate-tls, vmgate-tcp"),
        "{log}"
    );
}

#[test]
fn a_passed_tls_socket_needs_the_certificate_files() {
    let dir = temp_dir();
    let (tcp, _) = tcp_listener();
    let missing = dir.path().join("missing");
    let extra = format!(
        "key_file = \"{0}/key.pem\"\ncert_file = \"{0}/cert.pem\"\nca_file = \"{0}/ca.pem\"\n",
        missing.display()
    );
    let log = refused(&extra, &[("vmgate-tls", tcp)], dir);
    assert!(
        log.contains("listen_tls is on (to turn it off, stop and disable vmgated-tls.socket)")
            && log.contains("key_file: ")
            && log.contains("key.pem does not exist"),
        "{log}"
    );
}

#[test]
fn a_passed_tls_socket_serves_tls_with_the_configured_certificate() {
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    let dir = temp_dir();
    let tls = pki::ApiTls::new(dir.path());
    let (tcp, port) = tcp_listener();
    // listen_tls stays off and tls_port names another port: the passed socket is served.
    let extra = format!("tls_port = 1\n{}", tls.files());
    let mut d = Activated::start(dir, &extra, &[("vmgate-tls", tcp)]);
    assert!(d.notification().starts_with("READY=1"));
    let uri = tls.uri(port);
    vmgate_login(&uri, None, &["list", "--all"], None).ok();
    assert!(d.log().contains("TLS client connected"), "{}", d.log());
    // The UNIX sockets were not passed, so the daemon bound them as configured.
    assert!(d.path("run/vmgate-sock").exists());
}
