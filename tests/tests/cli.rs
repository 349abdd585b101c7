//! The CLI's modes and its errors: stdin scripts on one connection, the daemon not
//! running, a URI for the wrong driver, exit codes; and what it reads from files and stdin
//! (definitions, passwords), within the daemon's limits.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use vmgate_tests::{CliOutput, TestDaemon, run_vmgate, wait_until};

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

/// How long a refused input may take: the refusal is immediate, but the machine is shared.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `vmgate -c URI ARGS` with `stdin`, killing it if it has not exited by `deadline`
/// (an unbounded read would otherwise hang the test or fill memory). The input is written
/// from a thread that ignores a closed pipe: vmgate stops reading at its limit.
fn vmgate_within(d: &TestDaemon, args: &[&str], stdin: Stdin) -> CliOutput {
    let mut cmd = Command::new(vmgate_tests::bins::vmgate());
    cmd.arg("-c")
        .arg(d.uri())
        .args(args)
        .env_remove("VMGATE_DEFAULT_URI")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let bytes = match stdin {
        Stdin::Bytes(bytes) => {
            cmd.stdin(Stdio::piped());
            Some(bytes)
        }
        Stdin::File(path) => {
            cmd.stdin(std::fs::File::open(path).expect("stdin file"));
            None
        }
    };
    let mut child = cmd.spawn().expect("spawn vmgate");
    if let (Some(bytes), Some(mut pipe)) = (bytes, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let exited = wait_until(REFUSAL_DEADLINE, || {
        child.try_wait().is_ok_and(|status| status.is_some())
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vmgate {args:?} was still running after {REFUSAL_DEADLINE:?}");
    }
    child.wait_with_output().expect("vmgate output").into()
}

enum Stdin {
    Bytes(Vec<u8>),
    File(&'static str),
}

#[test]
fn define_refuses_endless_special_and_oversized_files_naming_the_limit() {
    let d = TestDaemon::start();
    let none = || Stdin::Bytes(Vec::new());
    let err = vmgate_within(&d, &["define", "/dev/zero"], none());
    assert!(
        err.err()
            .contains("/dev/zero is a character device, not a regular file"),
        "{err:?}"
    );
    let fifo = d.dir().join("def.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let out = vmgate_within(&d, &["define", fifo.to_str().expect("path")], none());
    assert!(out.err().contains("is a named FIFO"), "{out:?}");

    // Over the daemon's 1 MiB limit but under tonic's 4 MiB, and over both.
    for size in [(1 << 20) + 1, 5 << 20] {
        let mut text = "name = \"big\"\n".to_owned();
        text.push_str(&"#".repeat(size - text.len()));
        let path = d.file("big.toml", &text);
        let out = vmgate_within(&d, &["define", path.to_str().expect("path")], none());
        let err = out.err();
        assert!(
            err.contains(&format!(
                "big.toml is {size} bytes, over the 1 MiB (1048576 bytes) limit"
            )),
            "{err}"
        );
        assert!(!err.contains("decoded message length"), "{err}");
        // The same text through a pipe is read only up to the limit.
        let out = vmgate_within(
            &d,
            &["define", "/dev/stdin"],
            Stdin::Bytes(text.into_bytes()),
        );
        let err = out.err();
        assert!(
            err.contains("/dev/stdin holds more than the 1 MiB (1048576 bytes) limit"),
            "{err}"
        );
    }
    assert_eq!(d.vmgate(&["list", "--all"]).ok().lines().count(), 2);

    // A pipe given on purpose still works.
    let out = vmgate_within(
        &d,
        &["define", "/dev/stdin"],
        Stdin::Bytes(b"name = \"piped\"\n".to_vec()),
    );
    assert!(out.ok().contains("Domain 'piped' defined"), "{out:?}");

    // A console ACL file is read the same way.
    let out = vmgate_within(&d, &["console-acl", "set", "piped", "/dev/zero"], none());
    assert!(
        out.err()
            .contains("/dev/zero is a character device, not a regular file"),
        "{out:?}"
    );
    let out = vmgate_within(
        &d,
        &["console-acl", "set", "piped", fifo.to_str().expect("path")],
        none(),
    );
    assert!(out.err().contains("is a named FIFO"), "{out:?}");
}

#[test]
fn password_stdin_is_read_up_to_the_limit_with_each_commands_own_words() {
    let d = TestDaemon::start();
    let path = d.file("g.toml", "name = \"g\"\n[graphics]\ntype = \"vnc\"\n");
    d.vmgate(&["define", path.to_str().expect("path")]).ok();
    let huge = || Stdin::Bytes([vec![b'p'; 20_000_000], b"\n".to_vec()].concat());
    for args in [
        &["sasl-user", "add", "bob", "--password-stdin"][..],
        &["sasl-user", "passwd", "bob", "--password-stdin"],
    ] {
        for input in [huge(), Stdin::File("/dev/zero")] {
            let out = vmgate_within(&d, args, input);
            let err = out.err();
            assert!(
                err.contains("longer than 1024 bytes, the most vmgated accepts for a SASL user"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("decoded message length"), "{err}");
        }
    }
    let vnc = ["vnc-passwd", "g", "--password-stdin"];
    for input in [huge(), Stdin::File("/dev/zero")] {
        let out = vmgate_within(&d, &vnc, input);
        let err = out.err();
        assert!(
            err.contains("the VNC password on stdin is longer than 8 bytes"),
            "{err}"
        );
    }

    // No line at all: each command says what it wanted.
    let out = vmgate_within(
        &d,
        &["sasl-user", "add", "bob", "--password-stdin"],
        Stdin::Bytes(Vec::new()),
    );
    let err = out.err();
    assert!(
        err.contains("reads the SASL user's password") && !err.contains("domain"),
        "{err}"
    );
    let out = vmgate_within(&d, &vnc, Stdin::Bytes(Vec::new()));
    assert!(
        out.err().contains("removes the domain's own password"),
        "{out:?}"
    );

    // In a script, the rest of an over-long password line is skipped, never run.
    let script = format!(
        "sasl-user add bob --password-stdin\n{}list-secret\nlist --all\n",
        "p".repeat(2000)
    );
    let out = vmgate_within(&d, &[], Stdin::Bytes(script.into_bytes()));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("longer than 1024 bytes"), "{out:?}");
    assert!(out.stdout.contains(" g "), "the next command ran: {out:?}");
    assert!(!out.stderr.contains("list-secret"), "{out:?}");
}
