//! The CLI's modes and its errors: stdin scripts on one connection, the daemon not
//! running, a URI for the wrong driver, exit codes.

use vmgate_tests::{TestDaemon, run_vmgate};

#[test]
fn stdin_runs_many_commands_and_goes_on_after_a_failure() {
    let d = TestDaemon::start();
    let path = d.file("a.toml", "name = \"a\"\n");
    let script = format!(
        "# a comment\ndefine {}\n\nstart ghost\nstart a\nlist\n",
        path.display()
    );
    let out = d.vmgate_stdin(&[], Some(&script));
    assert_eq!(out.code, 1, "one command failed: {out:?}");
    assert!(out.stderr.contains("ghost"), "{out:?}");
    assert!(out.stdout.contains("Domain 'a' started"), "{out:?}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("a"));
    assert!(row.is_some_and(|r| r.contains("running")), "{out:?}");

    let ok = d.vmgate_stdin(&[], Some("list --all\ndomstate a\n"));
    assert_eq!(ok.code, 0, "{ok:?}");
}

#[test]
fn daemon_not_running_names_the_socket_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("nothing-here");
    let uri = format!("test+unix:///default?socket={}", sock.display());
    let out = run_vmgate(&["-c", &uri, "list"], None);
    let err = out.err();
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert!(err.contains("vmgated"), "{err}");
}

#[test]
fn wrong_driver_in_the_uri_says_which_driver_is_served() {
    let d = TestDaemon::start();
    let uri = format!("qemu+unix:///system?socket={}", d.rw_socket().display());
    let err = run_vmgate(&["-c", &uri, "list"], None).err().to_owned();
    assert!(err.contains("test"), "{err}");
}

#[test]
fn uri_and_version_describe_the_connection() {
    let d = TestDaemon::start();
    let uri = d.vmgate(&["uri"]).ok().trim().to_owned();
    assert!(
        uri.starts_with("test") && uri.contains(":///default"),
        "{uri}"
    );
    assert!(uri.contains(&d.rw_socket().display().to_string()), "{uri}");
    let version = d.vmgate(&["version"]).ok().to_owned();
    assert!(version.contains("test"), "{version}");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
}

#[test]
fn bad_uris_are_explained() {
    for uri in [
        "qemu:///session",
        "bogus:///system",
        "qemu+unix:///system?nope=1",
    ] {
        let out = run_vmgate(&["-c", uri, "list"], None);
        assert!(!out.err().is_empty(), "{uri}");
    }
}
