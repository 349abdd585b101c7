//! A real MIT Kerberos KDC on loopback, for the GSSAPI tests: `krb5kdc` serving [`REALM`]
//! from a temporary directory holding all that Kerberos reads or writes (configs, database,
//! logs, keytabs, ccaches, replay cache). Its commands get a cleared environment plus those
//! files: the machine's `/etc/krb5.conf`, keytab, ccache and `/var/tmp` replay cache are
//! never read or touched. Dropping it kills the KDC.
//!
//! - krb5kdc binds with `SO_REUSEPORT`, so two KDCs on one port both start and share its
//!   connections. A bound, never listening `SO_REUSEPORT` socket reserves the port instead:
//!   krb5kdc can join it, no bind to port 0 gets it. Hence also TCP only (no UDP listener).
//! - `kinit -l` gets any lifetime (1 s works), but an acceptor takes a ticket as valid until
//!   its end plus `clockskew` (300 s by default, included in the context lifetime it
//!   reports) and refuses a token built more than `clockskew` ago: hence the short
//!   [`CLOCKSKEW`]. Clients refuse expired tickets outright: to present one, build the token
//!   just before the end and send it [`CLOCKSKEW`] after.

use std::{
    fs,
    io::Write,
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use tempfile::TempDir;
use tokio::net::TcpSocket;

use crate::{require_tool, wait_until};

/// The realm every principal of the test KDC belongs to.
pub const REALM: &str = "TEST.LOCAL";

/// The clock skew everything using the KDC's krb5.conf allows: short, for quick expiry, yet
/// longer than a loaded machine ever takes between building a token and reading it.
pub const CLOCKSKEW: Duration = Duration::from_secs(3);

/// How long the KDC gets to come up.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running krb5kdc and its realm's files.
pub struct Kdc {
    dir: TempDir,
    kdc: Child,
    port: u16,
    /// Keeps the port from being handed to anyone else while the KDC runs.
    _port_reservation: TcpSocket,
    /// Numbers the ccaches `kinit` creates, so each login gets its own.
    logins: AtomicU32,
}

impl Kdc {
    /// Creates the realm's database and starts the KDC, waiting until it accepts
    /// connections. None when a krb5 tool is missing (skipped, or a failure under CI).
    pub fn start() -> Option<Kdc> {
        let tools = [
            ("krb5kdc", "krb5-kdc"),
            ("kdb5_util", "krb5-kdc"),
            ("kadmin.local", "krb5-admin-server"),
            ("kinit", "krb5-user"),
            ("klist", "krb5-user"),
        ];
        if !tools.iter().all(|(tool, pkg)| require_tool(tool, pkg)) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("vmgkdc").tempdir();
        let dir = dir.expect("temp dir");
        let (reservation, port) = reserve_port();
        write_configs(dir.path(), port);
        run(tool(dir.path(), "kdb5_util").args(["create", "-s", "-r", REALM, "-P", "master"]));
        let stderr = fs::File::create(dir.path().join("krb5kdc.err")).expect("krb5kdc.err");
        let child = tool(dir.path(), "krb5kdc")
            .args(["-n", "-P"])
            .arg(dir.path().join("krb5kdc.pid"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("spawn krb5kdc");
        let mut kdc = Kdc {
            dir,
            kdc: child,
            port,
            _port_reservation: reservation,
            logins: AtomicU32::new(0),
        };
        kdc.wait_ready();
        Some(kdc)
    }

    /// The directory holding the realm's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The krb5.conf clients and servers of this realm use (`KRB5_CONFIG`).
    pub fn krb5_config(&self) -> PathBuf {
        self.dir().join("krb5.conf")
    }

    /// The KDC's and kadmin's log (tickets issued and refused), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("kdc.log")).unwrap_or_default()
    }

    /// Adds the user principal `name` with `password`, one word without quotes (kadmin's
    /// query parser splits on whitespace).
    pub fn add_user(&self, name: &str, password: &str) {
        let plain = !password.contains(|c: char| c.is_whitespace() || "\"'".contains(c));
        assert!(plain, "test passwords must be one plain word: {password:?}");
        self.kadmin(&format!("addprinc -pw {password} {name}"), "created.");
    }

    /// Adds `principal` (e.g. `vnc/localhost`) with a random key and writes its keys to the
    /// keytab `file` in [`dir`](Kdc::dir), mode 0600; returns the keytab's path.
    pub fn add_service(&self, principal: &str, file: &str) -> PathBuf {
        assert!(!file.contains('/'), "{file:?} is not a plain file name");
        let keytab = self.dir().join(file);
        self.kadmin(&format!("addprinc -randkey {principal}"), "created.");
        let ktadd = format!("ktadd -k {} {principal}", keytab.display());
        self.kadmin(&ktadd, "added to keytab");
        fs::set_permissions(&keytab, fs::Permissions::from_mode(0o600)).expect("chmod keytab");
        keytab
    }

    /// Logs `user` in with `password` into a new ccache file in [`dir`](Kdc::dir), for at
    /// most `lifetime` when given (kinit's `-l`, e.g. `"3s"`); returns the ccache's path.
    /// Panics when kinit fails.
    #[track_caller]
    pub fn kinit(&self, user: &str, password: &str, lifetime: Option<&str>) -> PathBuf {
        self.try_kinit(user, password, lifetime)
            .unwrap_or_else(|err| panic!("kinit {user} failed: {err}\n{}", self.log()))
    }

    /// [`kinit`](Kdc::kinit), returning kinit's error message when it fails (wrong
    /// password, unknown user).
    pub fn try_kinit(
        &self,
        user: &str,
        password: &str,
        lifetime: Option<&str>,
    ) -> Result<PathBuf, String> {
        let n = self.logins.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}.{n}.ccache", user.replace('/', "_"));
        let ccache = self.dir().join(name);
        let mut child = tool(self.dir(), "kinit")
            .arg("-c")
            .arg(ccache_name(&ccache))
            .args(lifetime.iter().flat_map(|&l| ["-l", l]))
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kinit");
        // Without a terminal, kinit reads the password from stdin.
        let stdin = child.stdin.take();
        writeln!(stdin.expect("kinit stdin"), "{password}").expect("write the password");
        let out = child.wait_with_output().expect("kinit");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        out.status.success().then_some(ccache).ok_or(err)
    }

    /// The environment of a client process logged in with `ccache`: `KRB5_CONFIG` and
    /// `KRB5CCNAME`.
    pub fn client_env(&self, ccache: &Path) -> Vec<(String, String)> {
        self.env_with("KRB5CCNAME", ccache_name(ccache))
    }

    /// The environment of a server process (an acceptor): `KRB5_CONFIG`, and
    /// `KRB5RCACHEDIR` so that its replay cache is written here, not in `/var/tmp`. Its
    /// keytab is the caller's to pass (a config key, or `KRB5_KTNAME`).
    pub fn server_env(&self) -> Vec<(String, String)> {
        self.env_with("KRB5RCACHEDIR", self.dir().display().to_string())
    }

    /// `KRB5_CONFIG` and one more variable.
    fn env_with(&self, name: &str, value: String) -> Vec<(String, String)> {
        let config = self.krb5_config().display().to_string();
        vec![("KRB5_CONFIG".into(), config), (name.into(), value)]
    }

    /// Whether `ccache` holds a ticket that has not expired (`klist -s`, which allows no
    /// skew), for tests that wait for expiry.
    pub fn ticket_valid(&self, ccache: &Path) -> bool {
        let mut klist = tool(self.dir(), "klist");
        klist.arg("-s").arg("-c").arg(ccache_name(ccache));
        klist.status().expect("klist").success()
    }

    /// Runs one kadmin.local query, which must print `success`: kadmin.local exits 0 even
    /// when its query fails.
    fn kadmin(&self, query: &str, success: &str) {
        let out = run(tool(self.dir(), "kadmin.local").args(["-q", query]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains(success),
            "kadmin.local -q {query:?}:\n{stdout}{stderr}"
        );
    }

    /// Waits until the port accepts connections: only krb5kdc listens on it.
    fn wait_ready(&mut self) {
        let (kdc, port) = (&mut self.kdc, self.port);
        let mut exited = false;
        let up = wait_until(START_DEADLINE, || {
            exited = matches!(kdc.try_wait(), Ok(Some(_)));
            exited || TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let stderr = fs::read_to_string(self.dir().join("krb5kdc.err")).unwrap_or_default();
        assert!(
            up && !exited,
            "krb5kdc did not come up:\n{stderr}{}",
            self.log()
        );
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.kdc.kill();
        let _ = self.kdc.wait();
    }
}

/// A krb5 command that sees only the realm's files in `dir` (and PATH, to find tools).
fn tool(dir: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KRB5_CONFIG", dir.join("krb5.conf"))
        .env("KRB5_KDC_PROFILE", dir.join("kdc.conf"))
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion, panicking with its output when it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn a krb5 tool");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    out
}

/// The `KRB5CCNAME` form of a ccache file.
fn ccache_name(path: &Path) -> String {
    format!("FILE:{}", path.display())
}

/// A free loopback TCP port and the socket reserving it: bound with `SO_REUSEPORT` so that
/// krb5kdc can bind it too, never listening so that every connection goes to krb5kdc. The
/// port comes from a plain bind to port 0: one with `SO_REUSEPORT` may be given a port
/// another such socket holds. (tokio's `TcpSocket` needs no runtime to bind.)
fn reserve_port() -> (TcpSocket, u16) {
    for _ in 0..10 {
        let addr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
        let addr = addr.expect("bind a loopback port");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        // Otherwise taken between the two binds: try another.
        if socket.bind(addr).is_ok() {
            return (socket, addr.port());
        }
    }
    panic!("no free loopback port to reserve");
}

/// Writes krb5.conf (clients, servers and the KDC) and kdc.conf (the KDC and its tools).
/// Defaults that would reach the machine's files point into `dir` instead.
fn write_configs(dir: &Path, port: u16) {
    let (d, skew) = (dir.display(), CLOCKSKEW.as_secs());
    let krb5_conf = format!(
        "[libdefaults]
 default_realm = {REALM}
 dns_lookup_kdc = false
 dns_lookup_realm = false
 rdns = false
 dns_canonicalize_hostname = false
 udp_preference_limit = 1
 ticket_lifetime = 1h
 clockskew = {skew}
 default_ccache_name = FILE:{d}/default.ccache
 default_keytab_name = FILE:{d}/default.keytab
 default_client_keytab_name = FILE:{d}/client.keytab
[realms]
 {REALM} = {{
  kdc = 127.0.0.1:{port}
 }}
[domain_realm]
 localhost = {REALM}
"
    );
    let kdc_conf = format!(
        "[kdcdefaults]
 kdc_listen = \"\"
 kdc_tcp_listen = 127.0.0.1:{port}
[realms]
 {REALM} = {{
  database_name = {d}/principal
  key_stash_file = {d}/stash
  acl_file = {d}/kadm5.acl
  admin_keytab = FILE:{d}/kadm5.keytab
 }}
[logging]
 default = FILE:{d}/kdc.log
"
    );
    fs::write(dir.join("krb5.conf"), krb5_conf).expect("write krb5.conf");
    fs::write(dir.join("kdc.conf"), kdc_conf).expect("write kdc.conf");
    fs::write(dir.join("kadm5.acl"), "").expect("write kadm5.acl");
}
