//! The daemon as a process: its sockets (modes, the read-only one, stale ones after kill -9,
//! a second daemon refused), restart persistence and autostart, max_clients, SIGTERM, and
//! configuration errors reported by --check-config and at start.

use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream},
    process::Command,
    time::Duration,
};

use vmgate_tests::{TestDaemon, bins, run_vmgate, wait_until};

fn define(d: &TestDaemon, name: &str) {
    let path = d.file(&format!("{name}.toml"), &format!("name = \"{name}\"\n"));
    d.vmgate(&["define", path.to_str().expect("path")]).ok();
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn sockets_get_their_configured_modes_and_private_state() {
    let d = TestDaemon::start();
    assert_eq!(mode(&d.rw_socket()), 0o700);
    assert_eq!(mode(&d.ro_socket()), 0o777);
    assert_eq!(mode(&d.dir().join("state")), 0o700);
    assert_eq!(mode(&d.dir().join("state/vmgate.db")), 0o600);
    drop(d);
    let d = TestDaemon::start_with("unix_sock_rw_perms = \"0770\"\nunix_sock_ro_perms = \"0750\"");
    assert_eq!(mode(&d.rw_socket()), 0o770);
    assert_eq!(mode(&d.ro_socket()), 0o750);
}

#[test]
fn read_only_socket_allows_reading_and_refuses_the_rest() {
    let d = TestDaemon::start();
    define(&d, "alpha");
    let ro = format!("test+unix:///default?socket={}", d.ro_socket().display());
    let out = run_vmgate(&["-c", &ro, "list", "--all"], None);
    assert!(out.ok().contains("alpha"));
    let out = run_vmgate(&["-c", &ro, "dominfo", "alpha"], None);
    assert!(out.ok().contains("shut off"));
    for args in [
        &["start", "alpha"][..],
        &["undefine", "alpha"],
        &["dumpconf", "alpha", "--security-info"],
    ] {
        let mut full = vec!["-c", ro.as_str()];
        full.extend_from_slice(args);
        let err = run_vmgate(&full, None).err().to_owned();
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    assert_eq!(d.vmgate(&["domstate", "alpha"]).ok().trim(), "shut off");

    // -r with the rw socket named explicitly still gets a read-only connection.
    let err = d.vmgate(&["-r", "start", "alpha"]).err().to_owned();
    assert!(err.contains("read-only"), "{err}");
    assert!(d.vmgate(&["-r", "list", "--all"]).ok().contains("alpha"));
}

#[test]
fn definitions_and_autostart_survive_a_restart_but_test_guests_do_not_run_on() {
    let mut d = TestDaemon::start();
    define(&d, "keep");
    define(&d, "auto");
    d.vmgate(&["autostart", "auto"]).ok();
    d.vmgate(&["start", "keep"]).ok();
    assert!(d.stop(), "SIGTERM exits cleanly:\n{}", d.log());
    assert!(
        !d.rw_socket().exists() && !d.ro_socket().exists(),
        "sockets removed on exit"
    );

    d.restart();
    let list = d.vmgate(&["list", "--all"]).ok().to_owned();
    let state = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(state("keep").as_deref(), Some("shut off"), "{list}");
    assert_eq!(
        state("auto").as_deref(),
        Some("running"),
        "autostarted: {list}"
    );
}

#[test]
fn kill_9_leaves_stale_sockets_that_the_next_start_replaces() {
    let mut d = TestDaemon::start();
    define(&d, "alpha");
    d.kill9();
    assert!(d.rw_socket().exists(), "a killed daemon leaves its socket");
    assert!(
        UnixStream::connect(d.rw_socket()).is_err(),
        "nobody listens on it"
    );
    d.restart();
    assert!(d.vmgate(&["list", "--all"]).ok().contains("alpha"));
}

#[test]
fn a_second_daemon_on_the_same_sockets_is_refused() {
    let d = TestDaemon::start();
    let out = Command::new(bins::vmgated())
        .arg("--config")
        .arg(d.config_path())
        .output()
        .expect("run second daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Another vmgated"), "{stderr}");
    assert!(
        stderr.contains(&d.rw_socket().display().to_string()),
        "{stderr}"
    );
    // The first daemon is unharmed.
    d.vmgate(&["list"]).ok();
}

#[test]
fn max_clients_bounds_connections() {
    let d = TestDaemon::start_with("max_clients = 2\nmax_anonymous_clients = 2");
    let uri: vmgate::ConnectUri = d.uri().parse().expect("uri");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Two clients that completed a call each: both hold a slot. (The readiness probe's own
    // connection may hold one for a moment, hence the retry.)
    let mut held = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            if let Ok(conn) = rt.block_on(vmgate::Connection::open(&uri, false)) {
                held.push(conn);
            }
            held.len() == 2
        }),
        "two clients fit:\n{}",
        d.log()
    );
    let third = d.vmgate(&["list"]);
    assert_eq!(third.code, 1, "a third client must be refused: {third:?}");
    assert!(
        third
            .err()
            .contains("refused the connection: too many clients (max_clients = 2"),
        "the refusal says why: {third:?}"
    );
    assert!(d.log().contains("too many clients"));
    drop(held);
    assert!(
        wait_until(Duration::from_secs(10), || d.vmgate(&["list"]).code == 0),
        "slots free up when clients leave:\n{}",
        d.log()
    );
}

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(bins::vmgated())
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), all)
}

#[test]
fn check_config_names_file_line_and_key() {
    let (code, out) = check_config("[daemon]\ndriver = \"test\"\n\n[vnc]\nvnc_listn = \"::1\"\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("c.toml:5") && out.contains("vnc_listn"),
        "{out}"
    );

    let (code, out) = check_config("[daemon]\ntls_port = \"many\"\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("c.toml:2") && out.contains("tls_port"),
        "{out}"
    );

    let (code, out) = check_config("[daemon]\ndriver = \"test\"\nlisten_tcp = 1\n");
    assert_eq!(
        code, 1,
        "0/1 booleans parse, but SASL on plain TCP has no security layer: {out}"
    );
    assert!(out.contains("tcp_min_ssf"), "{out}");

    // SCRAM and PLAIN have no security layer: SASL on consoles (type 20) needs TLS.
    let (code, out) = check_config("[daemon]\ndriver = \"test\"\n[vnc]\nvnc_sasl = true\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("vnc_sasl") && out.contains("vnc_tls"), "{out}");

    let (code, out) =
        check_config("[vnc]\nvnc_password = \"123456789\"\n[daemon]\ndriver = \"test\"\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("vnc_password"), "{out}");

    // Directories need not exist for --check-config.
    let (code, out) = check_config(
        "[daemon]\ndriver = \"test\"\nstate_dir = \"/nonexistent/state\"\nunix_sock_dir = \"/nonexistent/run\"\n",
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn example_configs_in_the_repository_are_valid() {
    let root = bins::workspace_root();
    for file in ["config/local.toml", "config/vmgated.toml"] {
        let out = Command::new(bins::vmgated())
            .args(["--check-config", "--config"])
            .arg(root.join(file))
            .output()
            .expect("run");
        // vmgated.toml documents the default qemu driver, which this build may refuse.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if file.ends_with("local.toml") {
            assert!(out.status.success(), "{file}: {stderr}");
        } else {
            assert!(
                out.status.success() || stderr.contains("driver"),
                "{file}: {stderr}"
            );
        }
    }
}

#[test]
fn an_uncreatable_socket_directory_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").expect("write");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\ndriver = \"test\"\nstate_dir = \"{}\"\nunix_sock_dir = \"{}\"\n",
            dir.path().join("state").display(),
            blocker.join("run").display()
        ),
    )
    .expect("write");
    let out = Command::new(bins::vmgated())
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&blocker.join("run").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("unix_sock_dir"), "{stderr}");
}
