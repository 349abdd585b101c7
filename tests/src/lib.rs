//! The end-to-end test harness: `TestDaemon` starts the real `vmgated` binary on a private
//! temporary directory (config, state, sockets), waits until its socket answers, runs the
//! real `vmgate` CLI against it, and kills its process group when dropped. Binaries are
//! found under this crate's target directory and rebuilt first when a source is newer.
//!
//! The benchmarks (`bench/`, crate `vmgate-bench`) run on this harness too; nothing here
//! depends on them.

pub mod bins;
pub mod console;
pub mod events;
pub mod guest_image;
pub mod kdc;
pub mod peer;
pub mod pki;
pub mod polkit;
pub mod vnc;
#[cfg(feature = "gssapi")]
pub mod vnc_gssapi;

use std::{
    fs,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tempfile::TempDir;

/// How long a daemon gets to come up or go down.
pub const DAEMON_DEADLINE: Duration = Duration::from_secs(30);

/// A running vmgated on a private directory.
pub struct TestDaemon {
    dir: TempDir,
    child: Option<Child>,
    driver: &'static str,
    extra_config: String,
    /// Environment variables the daemon gets on top of this process's.
    env: Vec<(String, String)>,
}

impl TestDaemon {
    /// A daemon with the test driver and the built-in defaults for everything else.
    pub fn start() -> TestDaemon {
        Self::start_with("")
    }

    /// A daemon whose config has `extra` appended to its `[daemon]` section; `extra` may
    /// open further sections (`[vnc]` ...) after its daemon keys.
    pub fn start_with(extra: &str) -> TestDaemon {
        Self::start_driver("test", extra)
    }

    /// A daemon with the qemu driver (real QEMU guests), `extra` as in [`start_with`].
    /// Dropping it also kills the guests it leaves running, as the daemon does not.
    ///
    /// [`start_with`]: TestDaemon::start_with
    pub fn start_qemu(extra: &str) -> TestDaemon {
        Self::start_driver("qemu", extra)
    }

    fn start_driver(driver: &'static str, extra: &str) -> TestDaemon {
        Self::start_full(driver, extra, &[])
    }

    /// A test-driver daemon with `env` added to its environment, on a directory other
    /// users may traverse (for clients run as other users).
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> TestDaemon {
        Self::start_full("test", extra, env)
    }

    fn start_full(driver: &'static str, extra: &str, env: &[(&str, &str)]) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("vmg")
            .tempdir()
            .expect("temp dir");
        if !env.is_empty() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut daemon = TestDaemon {
            dir,
            child: None,
            driver,
            extra_config: extra.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        daemon.write_config();
        daemon.spawn();
        daemon
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("vmgated.toml")
    }

    pub fn sock_dir(&self) -> PathBuf {
        self.dir().join("run")
    }

    pub fn rw_socket(&self) -> PathBuf {
        self.sock_dir().join("vmgate-sock")
    }

    pub fn ro_socket(&self) -> PathBuf {
        self.sock_dir().join("vmgate-sock-ro")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("vmgated.log")
    }

    /// The URI of the rw socket.
    pub fn uri(&self) -> String {
        let (scheme, path) = match self.driver {
            "qemu" => ("qemu", "system"),
            _ => ("test", "default"),
        };
        format!(
            "{scheme}+unix:///{path}?socket={}",
            self.rw_socket().display()
        )
    }

    /// The run directory of a QEMU guest (its QMP and VNC sockets and pidfile).
    pub fn qemu_run_dir(&self, guest: &str) -> PathBuf {
        self.sock_dir().join("qemu").join(guest)
    }

    /// The pids of the QEMU processes whose pidfiles are under this daemon's directory and
    /// which still run.
    pub fn qemu_pids(&self) -> Vec<u32> {
        let dirs = fs::read_dir(self.sock_dir().join("qemu"));
        dirs.into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| fs::read_to_string(e.path().join("qemu.pid")).ok())
            .filter_map(|text| text.trim().parse().ok())
            .filter(|&pid| is_qemu(pid))
            .collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn write_config(&self) {
        let text = format!(
            "[daemon]\ndriver = \"{}\"\nstate_dir = \"{}\"\nunix_sock_dir = \"{}\"\n{}\n",
            self.driver,
            self.dir().join("state").display(),
            self.sock_dir().display(),
            self.extra_config
        );
        fs::write(self.config_path(), text).expect("write config");
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let child = Command::new(bins::vmgated())
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn vmgated");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the rw socket accepts connections, failing with the daemon's log if it
    /// exits or the deadline passes.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + DAEMON_DEADLINE;
        loop {
            if std::os::unix::net::UnixStream::connect(self.rw_socket()).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "vmgated exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "vmgated did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends `signal` to the daemon's process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = killpg(Pid::from_raw(pid as i32), signal);
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        self.signal(Signal::SIGTERM);
        self.wait_exit().success()
    }

    /// SIGKILL, leaving whatever the daemon left behind (stale sockets).
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait_exit();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + DAEMON_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("vmgated did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the daemon again on the same directory and config.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        self.spawn();
    }

    /// A daemon whose user database holds `users` (name, password), added through the
    /// CLI on the default config, then restarted with `extra` (a SASL login setting needs
    /// its users to exist first).
    pub fn start_with_users(users: &[(&str, &str)], extra: &str) -> TestDaemon {
        let mut d = TestDaemon::start();
        for (name, password) in users {
            let line = format!("{password}\n");
            d.vmgate_stdin(&["sasl-user", "add", name, "--password-stdin"], Some(&line))
                .ok();
        }
        assert!(d.stop(), "the daemon stops");
        d.set_extra_config(extra);
        d.restart();
        d
    }

    /// Rewrites the config's extra keys (takes effect at the next restart).
    pub fn set_extra_config(&mut self, extra: &str) {
        self.extra_config = extra.to_owned();
        self.write_config();
    }

    /// Runs `vmgate -c URI ARGS...`.
    pub fn vmgate(&self, args: &[&str]) -> CliOutput {
        self.vmgate_stdin(args, None)
    }

    /// Runs `vmgate -c URI ARGS...` with `stdin` as its standard input.
    pub fn vmgate_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let uri = self.uri();
        let mut full = vec!["-c", uri.as_str()];
        full.extend_from_slice(args);
        run_vmgate(&full, stdin)
    }

    /// Writes `text` to a file in the daemon's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        // QEMU guests run in their own process groups and outlive the daemon.
        let guests = self.qemu_pids();
        for &pid in &guests {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + DAEMON_DEADLINE;
        while guests.iter().any(|&pid| is_qemu(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether `pid` is a live (not zombie) QEMU process.
pub fn is_qemu(pid: u32) -> bool {
    vmgated::driver::qemu::process::is_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmd| cmd.windows(4).any(|w| w == b"qemu"))
}

/// What a CLI run printed and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "vmgate failed: {self:#?}");
        &self.stdout
    }

    /// Asserts exit 1 and returns stderr.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert_eq!(self.code, 1, "vmgate should have failed: {self:#?}");
        &self.stderr
    }
}

impl From<Output> for CliOutput {
    fn from(out: Output) -> CliOutput {
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `vmgate -c URI ARGS` with stdin `input`, a HOME of its own (so no auth file of the
/// user's is found) and `auth` as `VMGATE_AUTH_FILE` when given: for SASL logins.
pub fn vmgate_login(
    uri: &str,
    auth: Option<&Path>,
    args: &[&str],
    input: Option<&str>,
) -> CliOutput {
    vmgate_login_env(uri, auth, args, input, &[])
}

/// [`vmgate_login`] with `env` added (a Kerberos credential cache and config).
pub fn vmgate_login_env(
    uri: &str,
    auth: Option<&Path>,
    args: &[&str],
    input: Option<&str>,
    env: &[(String, String)],
) -> CliOutput {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = Command::new(bins::vmgate());
    cmd.arg("-c")
        .arg(uri)
        .args(args)
        .env_remove("VMGATE_DEFAULT_URI")
        .env_remove("VMGATE_AUTH_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    if let Some(auth) = auth {
        cmd.env("VMGATE_AUTH_FILE", auth);
    }
    let mut child = cmd.spawn().expect("spawn vmgate");
    if let Some(text) = input
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(text.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("vmgate").into()
}

/// Runs the CLI with exactly `args`.
pub fn run_vmgate(args: &[&str], stdin: Option<&str>) -> CliOutput {
    let mut child = Command::new(bins::vmgate())
        .args(args)
        .env_remove("VMGATE_DEFAULT_URI")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmgate");
    if let Some(text) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("vmgate output").into()
}

/// Whether `command` is on PATH. When it is not, a test that needs it fails under CI (the
/// test command installs `package`) and otherwise is skipped with a visible reason, which
/// is also appended to `target/vmgate-test-skips.log` for the summary `scripts/test` prints.
pub fn require_tool(command: &str, package: &str) -> bool {
    if on_path(command) {
        return true;
    }
    let reason = format!(
        "{command} not found (Debian package {package}; scripts/install-test-deps installs it)"
    );
    assert!(std::env::var_os("CI").is_none(), "{reason}");
    skip(&reason);
    false
}

/// Whether `cmd` is on PATH.
pub fn on_path(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first line `cmd ARGS` prints, trimmed (a version, a date).
pub fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// The path of the shared library `name` (e.g. `libnss_wrapper.so`, which has no command)
/// where Debian installs it: `/usr/lib/<multiarch>/` or `/usr/lib/`. When it is missing
/// the test fails under CI and is skipped otherwise, as with [`require_tool`].
pub fn require_library(name: &str, package: &str) -> Option<PathBuf> {
    let base = Path::new("/usr/lib");
    let multiarch = fs::read_dir(base)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir());
    let found = std::iter::once(base.to_path_buf())
        .chain(multiarch)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        let reason = format!(
            "{name} not found under /usr/lib (Debian package {package}; \
             scripts/install-test-deps installs it)"
        );
        assert!(std::env::var_os("CI").is_none(), "{reason}");
        skip(&reason);
    }
    found
}

/// Records that the calling test did not run, and why.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_owned();
    eprintln!("SKIPPED {test}: {reason}");
    let log = bins::workspace_root().join("target/vmgate-test-skips.log");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(f, "{test}: {reason}");
    }
}

/// Polls `cond` every 10 ms until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
