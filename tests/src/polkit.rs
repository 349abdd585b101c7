//! A real polkitd on a private system bus, for the polkit tests (root only): a
//! `dbus-daemon` of type system listening in a temporary directory, and polkitd started
//! in a private mount namespace where the directory's actions and rules are bind-mounted
//! over polkit's fixed ones, so nothing outside the directory changes. polkitd learns of
//! the test's users and groups through nss_wrapper; the test runs clients as those users
//! with `setpriv`. Dropping it stops both daemons.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{require_library, require_tool, skip, wait_until};

/// A test user: name, uid (also its primary gid) and extra groups.
#[derive(Clone, Copy, Debug)]
pub struct FakeUser {
    pub name: &'static str,
    pub uid: u32,
    pub groups: &'static [&'static str],
}

/// The bus and polkitd.
pub struct PolkitBus {
    dir: TempDir,
    dbus: Option<Child>,
    polkitd: Option<Child>,
}

/// How long the bus and polkitd get to come up.
const START_DEADLINE: Duration = Duration::from_secs(20);

impl PolkitBus {
    /// Starts both with `policy` (an actions file) and `rules` (a JavaScript rules file's
    /// text). None when this is not root or a tool is missing (skipped, or a failure
    /// under CI, with the reason).
    pub fn start(policy: &Path, rules: &str, users: &[FakeUser]) -> Option<PolkitBus> {
        if !nix::unistd::geteuid().is_root() {
            skip("polkit tests need root (a private mount namespace for polkitd)");
            return None;
        }
        let tools = [
            ("dbus-daemon", "dbus-daemon"),
            ("dbus-send", "dbus-bin"),
            ("pkcheck", "polkitd"),
            ("setpriv", "util-linux"),
            ("unshare", "util-linux"),
        ];
        if !tools
            .iter()
            .all(|(tool, package)| require_tool(tool, package))
        {
            return None;
        }
        let nss_wrapper = require_library("libnss_wrapper.so", "libnss-wrapper")?;
        let dir = tempfile::Builder::new()
            .prefix("vmgpolkit")
            .tempdir()
            .expect("temp dir");
        // polkitd drops to its own user, which must reach the bus socket and the rules.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut bus = PolkitBus {
            dir,
            dbus: None,
            polkitd: None,
        };
        bus.write_files(policy, rules, users);
        bus.start_dbus(&nss_wrapper);
        bus.start_polkitd(&nss_wrapper);
        Some(bus)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `DBUS_SYSTEM_BUS_ADDRESS` for the daemon and polkit's tools.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.path("system_bus_socket").display())
    }

    fn write_files(&self, policy: &Path, rules: &str, users: &[FakeUser]) {
        for sub in ["actions", "rules.d", "etcrules"] {
            fs::create_dir_all(self.path(sub)).expect("mkdir");
        }
        fs::copy(policy, self.path("actions/org.vmgate.policy")).expect("copy the policy");
        self.set_rules(rules);
        let bus_conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_type="method_call"/>
    <allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
            self.path("system_bus_socket").display()
        );
        fs::write(self.path("bus.conf"), bus_conf).expect("bus.conf");
        let host = |db: &str, names: &[&str]| -> String {
            let out = Command::new("getent")
                .arg(db)
                .args(names)
                .output()
                .expect("getent");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let mut passwd = host("passwd", &["root", "polkitd", "nobody"]);
        let mut group = host("group", &["root", "polkitd", "nogroup"]);
        let mut extra: Vec<(&str, Vec<&str>)> = Vec::new();
        for user in users {
            passwd.push_str(&format!(
                "{0}:x:{1}:{1}::/tmp:/bin/sh\n",
                user.name, user.uid
            ));
            group.push_str(&format!("{}:x:{}:\n", user.name, user.uid));
            for &g in user.groups {
                match extra.iter_mut().find(|(name, _)| *name == g) {
                    Some((_, members)) => members.push(user.name),
                    None => extra.push((g, vec![user.name])),
                }
            }
        }
        for (i, (name, members)) in extra.iter().enumerate() {
            group.push_str(&format!("{name}:x:{}:{}\n", 2900 + i, members.join(",")));
        }
        fs::write(self.path("passwd"), passwd).expect("passwd");
        fs::write(self.path("group"), group).expect("group");
    }

    /// Replaces the rules (polkitd reloads them on its own; wait for the effect).
    pub fn set_rules(&self, rules: &str) {
        let tmp = self.path("etcrules/.50-vmgate-test.rules");
        fs::write(&tmp, rules).expect("rules");
        fs::rename(&tmp, self.path("etcrules/50-vmgate-test.rules")).expect("rename rules");
    }

    /// The bus knows the test users too: it drops connections from uids it cannot name.
    fn start_dbus(&mut self, nss_wrapper: &Path) {
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", self.path("bus.conf").display()))
            .arg("--nofork")
            .env("LD_PRELOAD", nss_wrapper)
            .env("NSS_WRAPPER_PASSWD", self.path("passwd"))
            .env("NSS_WRAPPER_GROUP", self.path("group"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dbus-daemon");
        self.dbus = Some(child);
        let socket = self.path("system_bus_socket");
        assert!(
            wait_until(START_DEADLINE, || socket.exists()),
            "dbus-daemon did not come up"
        );
    }

    fn start_polkitd(&mut self, nss_wrapper: &Path) {
        let mounts = [
            ("etcrules", "/etc/polkit-1/rules.d"),
            ("rules.d", "/usr/share/polkit-1/rules.d"),
            ("actions", "/usr/share/polkit-1/actions"),
        ];
        let mut script = String::from("set -e\n");
        for (from, to) in mounts {
            script.push_str(&format!(
                "mount --bind '{}' '{to}'\n",
                self.path(from).display()
            ));
        }
        script.push_str("exec /usr/lib/polkit-1/polkitd --no-debug\n");
        let log = fs::File::create(self.path("polkitd.log")).expect("log");
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.address())
            .env("LD_PRELOAD", nss_wrapper)
            .env("NSS_WRAPPER_PASSWD", self.path("passwd"))
            .env("NSS_WRAPPER_GROUP", self.path("group"))
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn polkitd");
        self.polkitd = Some(child);
        let owned = wait_until(START_DEADLINE, || {
            Command::new("dbus-send")
                .arg(format!("--bus={}", self.address()))
                .args([
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.PolicyKit1",
                ])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("boolean true"))
        });
        assert!(owned, "polkitd did not come up:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path("polkitd.log")).unwrap_or_default()
    }

    /// Stops polkitd (the bus stays), to see what callers get without it.
    pub fn stop_polkitd(&mut self) {
        if let Some(mut child) = self.polkitd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PolkitBus {
    fn drop(&mut self) {
        self.stop_polkitd();
        if let Some(mut child) = self.dbus.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
