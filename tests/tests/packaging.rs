//! The package (`packaging/`): the polkit policy declares exactly the permissions the daemon
//! checks, with libvirt's defaults, and a real polkitd (root only) applies the example rules
//! as their comments say; the packaged config passes `--check-config` and agrees
//! with the systemd units, which name their sockets as the daemon expects; and
//! `packaging/build-deb` builds a .deb with the right paths, modes, conffiles and control
//! fields, whose own binary accepts its own config.
//!
//! The .deb here is built from the debug binaries the other tests use, with man pages
//! generated in-process and a fast compression, so it takes seconds; the dist build
//! (`cargo build --profile dist`, fat LTO, minutes on two cores) runs only with
//! `VMGATE_TEST_PACKAGE=1`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    time::Duration,
};

use vmgate_tests::{
    bins,
    polkit::{FakeUser, PolkitBus},
    require_tool, skip, wait_until,
};
use vmgated::{
    auth::{
        permissions::{DOMAIN_GETATTR, Permission, permission_for},
        polkit::{UNIX_MANAGE, UNIX_MONITOR},
    },
    systemd::SocketName,
};

fn packaging() -> PathBuf {
    bins::workspace_root().join("packaging")
}

/// A polkit action's `<defaults>`: allow_any, allow_inactive, allow_active.
type Defaults = [String; 3];

/// Every action of the policy file, with its defaults; panics on a malformed file or an
/// action without a description or message.
fn policy_actions() -> BTreeMap<String, Defaults> {
    let path = packaging().join("polkit/org.vmgate.policy");
    let text = fs::read_to_string(&path).expect("read the policy");
    // polkit's policy files carry a DOCTYPE, which roxmltree refuses unless allowed.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, options).expect("policy XML");
    assert_eq!(doc.root_element().tag_name().name(), "policyconfig");
    let child = |node: roxmltree::Node, name: &str| {
        node.children()
            .find(|c| c.has_tag_name(name))
            .and_then(|c| c.text())
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let mut actions = BTreeMap::new();
    for action in doc
        .root_element()
        .children()
        .filter(|c| c.has_tag_name("action"))
    {
        let id = action.attribute("id").expect("action id").to_owned();
        for text in ["description", "message"] {
            assert!(!child(action, text).is_empty(), "{id} has no {text}");
        }
        let defaults = action
            .children()
            .find(|c| c.has_tag_name("defaults"))
            .unwrap_or_else(|| panic!("{id} has no defaults"));
        let allow = ["allow_any", "allow_inactive", "allow_active"].map(|k| child(defaults, k));
        assert!(actions.insert(id.clone(), allow).is_none(), "{id} twice");
    }
    actions
}

/// Every permission the daemon checks, by polkit action id: what each method of the schema
/// needs, and what `list` asks of each domain it shows.
fn checked_permissions() -> BTreeMap<String, Permission> {
    vmgate_proto::v1::ALL_METHODS
        .iter()
        .map(|method| permission_for(method).unwrap_or_else(|| panic!("{method}: no permission")))
        .chain([DOMAIN_GETATTR])
        .map(|p| (p.action_id(), p))
        .collect()
}

fn defaults(any: &str, inactive: &str, active: &str) -> Defaults {
    [any, inactive, active].map(str::to_owned)
}

#[test]
fn policy_declares_exactly_the_permissions_the_daemon_checks() {
    let actions = policy_actions();
    let checked = checked_permissions();
    let declared: BTreeSet<&String> = actions
        .keys()
        .filter(|id| id.starts_with("org.vmgate.api."))
        .collect();
    let missing: Vec<_> = checked.keys().filter(|id| !declared.contains(id)).collect();
    let unknown: Vec<_> = declared
        .iter()
        .filter(|id| !checked.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the policy does not declare {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "the policy declares {unknown:?}, which the daemon never checks"
    );

    // Queries are free, as on the read-only socket; the rest needs an administrator.
    for (id, permission) in &checked {
        let expected = if permission.is_read_only() {
            defaults("yes", "yes", "yes")
        } else {
            defaults("no", "no", "auth_admin")
        };
        assert_eq!(actions[id], expected, "{id}");
    }
    assert_eq!(actions[UNIX_MONITOR], defaults("yes", "yes", "yes"));
    assert_eq!(
        actions[UNIX_MANAGE],
        defaults("no", "no", "auth_admin_keep")
    );
    assert_eq!(
        actions.len(),
        checked.len() + 2,
        "only the unix and api actions"
    );
}

#[test]
fn example_rules_name_only_declared_actions() {
    let actions = policy_actions();
    let rules = fs::read_to_string(packaging().join("polkit/50-vmgate.rules.example"))
        .expect("read the rules example");
    let mut named = 0;
    for quoted in rules.split('"').skip(1).step_by(2) {
        if quoted.starts_with("org.vmgate.") && !quoted.ends_with('.') {
            assert!(actions.contains_key(quoted), "the rules name {quoted}");
            named += 1;
        }
    }
    assert!(
        named >= 2,
        "the example grants the manage and start actions"
    );
    assert!(rules.contains("action.lookup(\"domain_name\")"));
}

/// A process of a test user for `pkcheck --process` to ask about; killed on drop.
struct Subject(Child);

impl Subject {
    fn spawn(user: FakeUser) -> Subject {
        let id = user.uid.to_string();
        let child = Command::new("setpriv")
            .args([
                "--reuid",
                &id,
                "--regid",
                &id,
                "--clear-groups",
                "sleep",
                "60",
            ])
            .spawn()
            .expect("spawn a test user's process");
        // Until setpriv has switched user and become `sleep`, polkit would judge root.
        let comm = format!("/proc/{}/comm", child.id());
        let switched = wait_until(Duration::from_secs(5), || {
            fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
        });
        assert!(switched, "{} did not start", user.name);
        Subject(child)
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pkcheck's answer: 0 authorized, 1 not authorized, 2 authentication required.
fn pkcheck(bus: &PolkitBus, action: &str, subject: &Subject, details: &[(&str, &str)]) -> i32 {
    let mut cmd = Command::new("pkcheck");
    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .args(["--action-id", action, "--process"])
        .arg(subject.0.id().to_string());
    for (key, value) in details {
        cmd.args(["--detail", key, value]);
    }
    let out = cmd.output().expect("run pkcheck");
    let code = out.status.code().expect("pkcheck exit status");
    assert!(
        code <= 2,
        "pkcheck {action}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        bus.log()
    );
    code
}

#[test]
fn example_rules_do_what_they_say_under_a_real_polkitd() {
    const ALICE: FakeUser = FakeUser {
        name: "alice",
        uid: 2101,
        groups: &["vmgate"],
    };
    const BOB: FakeUser = FakeUser {
        name: "bob",
        uid: 2102,
        groups: &[],
    };
    let rules = fs::read_to_string(packaging().join("polkit/50-vmgate.rules.example"))
        .expect("read the rules example");
    let policy = packaging().join("polkit/org.vmgate.policy");
    let Some(bus) = PolkitBus::start(&policy, &rules, &[ALICE, BOB]) else {
        return;
    };
    let (alice, bob) = (Subject::spawn(ALICE), Subject::spawn(BOB));
    let web = [("connect_driver", "QEMU"), ("domain_name", "web1")];
    let prod = [("connect_driver", "QEMU"), ("domain_name", "prod-db")];
    let cases = [
        // Group vmgate: the read-write socket and every API permission, without a password,
        (&alice, UNIX_MANAGE, &web[..0], 0),
        (&alice, "org.vmgate.api.domain.start", &web[..], 0),
        (&alice, "org.vmgate.api.domain.stop", &prod[..], 0),
        (&alice, "org.vmgate.api.user.admin", &web[..1], 0),
        // except starting a prod- guest, which takes an administrator's password.
        (&alice, "org.vmgate.api.domain.start", &prod[..], 2),
        // Anyone else, outside an active session: queries only, as the policy's defaults.
        (&bob, UNIX_MANAGE, &web[..0], 1),
        (&bob, UNIX_MONITOR, &web[..0], 0),
        (&bob, "org.vmgate.api.domain.getattr", &web[..], 0),
        (&bob, "org.vmgate.api.connect.search-domains", &web[..1], 0),
        (&bob, "org.vmgate.api.domain.start", &web[..], 1),
    ];
    for (subject, action, details, expected) in cases {
        let who = if std::ptr::eq(subject, &alice) {
            "alice"
        } else {
            "bob"
        };
        assert_eq!(
            pkcheck(&bus, action, subject, details),
            expected,
            "{who} {action} {details:?}"
        );
    }
}

/// `[section]` -> key -> values of a systemd unit file (keys may repeat).
fn unit(name: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let path = packaging().join("systemd").join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}: not key=value: {line}"));
        sections
            .entry(section.clone())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    sections
}

fn one<'a>(unit: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>, key: &str) -> &'a str {
    let (section, key) = key.split_once('.').expect("section.key");
    match unit
        .get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
    {
        Some([value]) => value,
        other => panic!("[{section}] {key}: expected one value, found {other:?}"),
    }
}

fn packaged_config() -> vmgate_config::Config {
    let path = packaging().join("vmgated.toml");
    match vmgate_config::load(&path) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

#[test]
fn units_pass_the_sockets_the_daemon_expects_where_the_config_says() {
    let config = packaged_config();
    let service = unit("vmgated.service");
    assert_eq!(one(&service, "Service.Type"), "notify");
    assert_eq!(
        one(&service, "Service.ExecStart"),
        "/usr/sbin/vmgated --config /etc/vmgate/vmgated.toml"
    );
    assert_eq!(
        one(&service, "Service.KillMode"),
        "process",
        "guests outlive restarts"
    );
    assert_eq!(
        one(&service, "Service.ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(one(&service, "Service.Restart"), "on-failure");

    for name in SocketName::ALL {
        let socket = unit(name.unit());
        assert_eq!(one(&socket, "Socket.FileDescriptorName"), name.as_str());
        assert_eq!(one(&socket, "Socket.Service"), "vmgated.service");
        let listen = one(&socket, "Socket.ListenStream");
        let expected = match name {
            SocketName::Rw => config.daemon.rw_socket_path().display().to_string(),
            SocketName::Ro => config.daemon.ro_socket_path().display().to_string(),
            SocketName::Tls => config.daemon.tls_port.to_string(),
            SocketName::Tcp => config.daemon.tcp_port.to_string(),
        };
        assert_eq!(listen, expected, "{}", name.unit());
    }
    // Enabling the service enables the local sockets, not the network ones.
    let also = &service["Install"]["Also"];
    assert_eq!(also, &["vmgated.socket", "vmgated-ro.socket"]);
}

#[test]
fn packaged_config_is_what_the_package_promises() {
    let config = packaged_config();
    let daemon = &config.daemon;
    use vmgate_config::{AuthKind, DriverKind};
    assert_eq!(daemon.driver, DriverKind::Qemu);
    assert_eq!(
        (daemon.auth_unix_ro, daemon.auth_unix_rw),
        (AuthKind::Polkit, AuthKind::Polkit)
    );
    assert_eq!(daemon.unix_sock_rw_perms.to_string(), "0777");
    assert_eq!(daemon.state_dir, Path::new("/var/lib/vmgate"));
    assert_eq!(daemon.unix_sock_dir, Path::new("/run/vmgate"));
    assert_eq!(config.qemu.user.as_deref(), Some("vmgate-qemu"));
    assert_eq!(config.qemu.group.as_deref(), Some("vmgate-qemu"));
    assert_eq!(
        config.qemu.log_dir.as_deref(),
        Some(Path::new("/var/log/vmgate/qemu"))
    );

    // The accounts and directories it names are the ones the package creates.
    let sysusers = fs::read_to_string(packaging().join("sysusers.d/vmgate.conf")).expect("read");
    assert!(sysusers.lines().any(|l| l.starts_with("u vmgate-qemu ")));
    let tmpfiles = fs::read_to_string(packaging().join("tmpfiles.d/vmgate.conf")).expect("read");
    for (dir, mode) in [
        ("/run/vmgate", "0755"),
        ("/var/lib/vmgate", "0700"),
        ("/var/log/vmgate", "0700"),
    ] {
        assert!(
            tmpfiles
                .lines()
                .any(|l| l.starts_with(&format!("d {dir} {mode} "))),
            "tmpfiles.d creates {dir} {mode}"
        );
    }

    let out = check_config(&bins::vmgated(), &packaging().join("vmgated.toml"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "the packaged config should not warn: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `vmgated --config CONFIG --check-config` and asserts it passes.
fn check_config(vmgated: &Path, config: &Path) -> Output {
    let out = Command::new(vmgated)
        .arg("--config")
        .arg(config)
        .arg("--check-config")
        .output()
        .expect("run vmgated --check-config");
    assert!(
        out.status.success(),
        "{} --check-config failed: {}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn build_deb_tools() -> bool {
    require_tool("dpkg-deb", "dpkg") && require_tool("strip", "binutils")
}

/// The only .deb in `dir`.
fn the_deb(dir: &Path) -> PathBuf {
    let debs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read the output dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one .deb in {}: {debs:?}", dir.display());
    debs[0].clone()
}

#[test]
fn build_deb_packages_every_file_with_its_mode() {
    if !build_deb_tools() {
        return;
    }
    let vmgated = bins::vmgated();
    let bin_dir = vmgated.parent().expect("the binaries' directory");
    let tmp = tempfile::tempdir().expect("temp dir");
    let (docs, out) = (tmp.path().join("docs"), tmp.path().join("out"));
    vmgate_packaging::generate(&docs, "2026-01-01").expect("man pages and completions");
    run(Command::new(packaging().join("build-deb"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--docs-dir")
        .arg(&docs)
        .arg("--out")
        .arg(&out)
        .args(["--compress", "zstd"]));
    let deb = the_deb(&out);
    let name = deb.file_name().and_then(|n| n.to_str()).expect("name");
    let version = env!("CARGO_PKG_VERSION");
    assert!(name.starts_with(&format!("vmgate_{version}_")), "{name}");

    // Paths and modes, all root-owned.
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let entries: BTreeMap<&str, &str> = listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[1], "root/root", "{line}");
            (fields[5].trim_start_matches('.'), fields[0])
        })
        .collect();
    let exe = "-rwxr-xr-x";
    let file = "-rw-r--r--";
    let mut expected = vec![
        ("/usr/sbin/vmgated", exe),
        ("/usr/bin/vmgate", exe),
        ("/etc/vmgate/vmgated.toml", file),
        ("/usr/share/polkit-1/actions/org.vmgate.policy", file),
        ("/usr/lib/tmpfiles.d/vmgate.conf", file),
        ("/usr/lib/sysusers.d/vmgate.conf", file),
        ("/usr/share/doc/vmgate/copyright", file),
        (
            "/usr/share/doc/vmgate/examples/50-vmgate.rules.example",
            file,
        ),
        ("/usr/share/doc/vmgate/examples/vmgated.toml", file),
        ("/usr/share/man/man8/vmgated.8.gz", file),
        ("/usr/share/man/man1/vmgate.1.gz", file),
        ("/usr/share/man/man1/vmgate-list.1.gz", file),
        ("/usr/share/man/man1/vmgate-console-acl-set.1.gz", file),
        ("/usr/share/bash-completion/completions/vmgate", file),
        ("/usr/share/zsh/vendor-completions/_vmgate", file),
        ("/usr/share/fish/vendor_completions.d/vmgate.fish", file),
    ];
    let units: Vec<String> = SocketName::ALL
        .iter()
        .map(|n| format!("/usr/lib/systemd/system/{}", n.unit()))
        .chain(["/usr/lib/systemd/system/vmgated.service".to_owned()])
        .collect();
    expected.extend(units.iter().map(|u| (u.as_str(), file)));
    for (path, mode) in &expected {
        assert_eq!(entries.get(path), Some(mode), "{path} in\n{listing}");
    }
    for (path, mode) in &entries {
        if path.ends_with('/') {
            assert_eq!(*mode, "drwxr-xr-x", "{path}");
        }
    }

    // Control fields and conffiles.
    let field = |name: &str| run(Command::new("dpkg-deb").arg("--field").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "vmgate");
    assert_eq!(field("Version").trim(), version);
    let depends = field("Depends");
    for needed in ["libc6 (>= ", "qemu-system-x86 | qemu-system", "polkitd"] {
        assert!(depends.contains(needed), "Depends: {depends}");
    }
    let conffiles = run(Command::new("dpkg-deb")
        .args(["--info"])
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles, "/etc/vmgate/vmgated.toml\n");
    for script in ["postinst", "prerm", "postrm"] {
        let text = run(Command::new("dpkg-deb").arg("--info").arg(&deb).arg(script));
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
    }

    // The packaged daemon accepts the packaged config.
    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    check_config(
        &root.join("usr/sbin/vmgated"),
        &root.join("etc/vmgate/vmgated.toml"),
    );
    let installed_policy = fs::read(root.join("usr/share/polkit-1/actions/org.vmgate.policy"));
    let policy = fs::read(packaging().join("polkit/org.vmgate.policy"));
    assert_eq!(
        installed_policy.ok(),
        policy.ok(),
        "the policy is installed as is"
    );
    verify_units(&root);
}

/// `systemd-analyze verify` of the unit files as packaged, when systemd's tools are here
/// (building the package does not need them). It checks them against the host, where
/// `/usr/sbin/vmgated` is normally missing: that one complaint is expected.
fn verify_units(root: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("systemd-analyze not found (Debian package systemd): units not verified");
        return;
    }
    let units = root.join("usr/lib/systemd/system");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(
            std::iter::once("vmgated.service".to_owned())
                .chain(SocketName::ALL.iter().map(|n| n.unit().to_owned()))
                .map(|u| units.join(u)),
        )
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = "Command /usr/sbin/vmgated is not executable: No such file or directory";
    let expected = |line: &str| line.ends_with(missing) && !Path::new("/usr/sbin/vmgated").exists();
    let complaints: Vec<&str> = stderr.lines().filter(|l| !expected(l)).collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify: {complaints:#?}"
    );
}

/// The real thing: `packaging/build-deb` with no arguments (dist build, xz). Minutes on
/// two cores, so only on request.
#[test]
fn build_deb_release() {
    if std::env::var_os("VMGATE_TEST_PACKAGE").is_none() {
        skip("set VMGATE_TEST_PACKAGE=1 to build the dist package (cargo build --profile dist)");
        return;
    }
    if !build_deb_tools() {
        return;
    }
    let out = run(&mut Command::new(packaging().join("build-deb")));
    let deb = PathBuf::from(
        out.lines()
            .last()
            .expect("build-deb prints the .deb")
            .trim(),
    );
    assert!(deb.is_file(), "{}", deb.display());
    let tmp = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(tmp.path()));
    check_config(
        &tmp.path().join("usr/sbin/vmgated"),
        &tmp.path().join("etc/vmgate/vmgated.toml"),
    );
    // The package is built with Kerberos, so it needs MIT's GSSAPI library.
    let depends = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Depends"));
    assert!(depends.contains("libgssapi-krb5-2"), "{depends}");
}
