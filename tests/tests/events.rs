//! `vmgate event` against the real daemon (test driver): a listener runs as a child process
//! whose stdout is read line by line as it comes, while other CLI runs change domains. The
//! events must arrive in order with virsh's names and details, the `--domain` filter must
//! keep one domain's, and the loop must end as virsh's does: after the first event, at
//! `--timeout`, on Ctrl-C, when the reader goes, and when the daemon shuts down.
//!
//! A listener is known to be subscribed once it has received an event: `sync` redefines a
//! domain until one comes through, and the events such a retry may have queued are skipped.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use vmgate_tests::{TestDaemon, bins, require_tool, run_vmgate, wait_until};

/// How long an event or an exit may take to show up.
const DEADLINE: Duration = Duration::from_secs(20);

/// How long `sync` waits for each redefinition's event before trying again.
const SYNC_RETRY: Duration = Duration::from_millis(200);

/// Defines `name`, or redefines it unchanged: its UUID is derived from the name, so a
/// second definition updates the first.
fn define(d: &TestDaemon, name: &str) {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let uuid = format!("00000000-0000-4000-8000-{:012x}", hash & 0xffff_ffff_ffff);
    let text = format!("name = \"{name}\"\nuuid = \"{uuid}\"\n");
    let path = d.file(&format!("{name}.toml"), &text);
    d.vmgate(&["define", path.to_str().expect("utf-8 path")])
        .ok();
}

/// A running `vmgate event ...` whose output is read as it comes.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a listener ended.
#[derive(Debug)]
struct Ended {
    code: i32,
    /// What it printed after the lines already read.
    rest: Vec<String>,
    stderr: String,
}

impl Listener {
    fn spawn(d: &TestDaemon, args: &[&str]) -> Listener {
        let uri = d.uri();
        let mut child = Command::new(bins::vmgate())
            .args(["-c", uri.as_str(), "event"])
            .args(args)
            .env_remove("VMGATE_DEFAULT_URI")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vmgate event");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Listener {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next line within `wait`; None when there is none yet or the output ended.
    fn line_within(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// The next line, failing the test when none comes within the deadline.
    #[track_caller]
    fn line(&mut self) -> String {
        match self.line_within(DEADLINE) {
            Some(line) => line,
            None => panic!("no event line within {DEADLINE:?}: {:?}", self.end()),
        }
    }

    /// The next `--json` event that `skip` does not reject.
    #[track_caller]
    fn event(&mut self, skip: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self.line();
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            if !skip(&value) {
                return value;
            }
        }
    }

    /// Waits for the exit, then collects the rest of the output.
    fn end(&mut self) -> Ended {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("vmgate event did not exit within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = Vec::new();
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            rest.push(line);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ended {
            code: status.code().unwrap_or(-1),
            rest,
            stderr,
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        kill(Pid::from_raw(pid), signal).expect("signal vmgate event");
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redefines `name` until the listener has printed a line, so that it is known to be
/// subscribed; returns that line. Later redefinitions may have queued more such lines.
#[track_caller]
fn sync(d: &TestDaemon, listener: &Listener, name: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        define(d, name);
        if let Some(line) = listener.line_within(SYNC_RETRY) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "the listener printed nothing within {DEADLINE:?}"
        );
    }
}

/// (domain, family, event, detail) of a `--json` event.
fn summary(v: &Value) -> (&str, &str, &str, &str) {
    let field = |name: &str| v[name].as_str().unwrap_or("<missing>");
    (
        field("domain"),
        field("family"),
        field("event"),
        field("detail"),
    )
}

/// A redefinition left over from `sync`.
fn is_update(v: &Value) -> bool {
    v["event"] == "Defined" && v["detail"] == "Updated"
}

#[test]
fn lifecycle_events_arrive_in_order_with_their_details() {
    let d = TestDaemon::start();
    let mut listener = Listener::spawn(&d, &["--loop", "--json"]);
    sync(&d, &listener, "probe");
    let not_probe = |v: &Value| v["domain"] == "probe";

    define(&d, "alpha");
    let defined = listener.event(not_probe);
    assert_eq!(
        summary(&defined),
        ("alpha", "lifecycle", "Defined", "Added")
    );
    let uuid = d.vmgate(&["domuuid", "alpha"]).ok().trim().to_owned();
    assert_eq!(defined["uuid"], uuid.as_str());
    assert!(defined["time_ms"].as_i64().is_some_and(|ms| ms > 0));
    assert!(defined["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(defined["lost"], 0);

    for (command, event, detail) in [
        ("start", "Started", "Booted"),
        ("suspend", "Suspended", "Paused"),
        ("resume", "Resumed", "Unpaused"),
        ("destroy", "Stopped", "Destroyed"),
        ("undefine", "Undefined", "Removed"),
    ] {
        d.vmgate(&[command, "alpha"]).ok();
        let got = listener.event(not_probe);
        assert_eq!(
            summary(&got),
            ("alpha", "lifecycle", event, detail),
            "after {command}"
        );
        assert_eq!(got["uuid"], uuid.as_str(), "after {command}");
    }
}

#[test]
fn without_loop_the_first_event_is_printed_as_virsh_does() {
    let d = TestDaemon::start();
    define(&d, "alpha");
    let mut listener = Listener::spawn(&d, &["--domain", "alpha"]);
    let first = sync(&d, &listener, "alpha");
    assert_eq!(
        first,
        "event 'lifecycle' for domain 'alpha': Defined Updated"
    );
    let ended = listener.end();
    assert_eq!(ended.code, 0, "{ended:?}");
    assert_eq!(ended.rest, ["events received: 1"], "{ended:?}");
    assert_eq!(ended.stderr, "");
}

#[test]
fn the_domain_filter_keeps_one_domain_by_uuid_or_name() {
    let d = TestDaemon::start();
    define(&d, "alpha");
    define(&d, "beta");
    let uuid = d.vmgate(&["domuuid", "alpha"]).ok().trim().to_owned();
    let mut by_uuid = Listener::spawn(&d, &["--loop", "--json", "--domain", &uuid]);
    sync(&d, &by_uuid, "alpha");
    let mut by_name = Listener::spawn(&d, &["--loop", "--json", "--domain", "beta"]);
    sync(&d, &by_name, "beta");

    d.vmgate(&["start", "beta"]).ok();
    d.vmgate(&["start", "alpha"]).ok();
    d.vmgate(&["destroy", "beta"]).ok();
    d.vmgate(&["destroy", "alpha"]).ok();

    // Events come in publication order, so beta's would show up before alpha's last.
    for (event, detail) in [("Started", "Booted"), ("Stopped", "Destroyed")] {
        let got = by_uuid.event(is_update);
        assert_eq!(summary(&got), ("alpha", "lifecycle", event, detail));
        let got = by_name.event(is_update);
        assert_eq!(summary(&got), ("beta", "lifecycle", event, detail));
    }
}

#[test]
fn reboot_and_reset_print_as_virsh_and_the_family_filter_drops_them() {
    let d = TestDaemon::start();
    define(&d, "alpha");
    let mut all = Listener::spawn(&d, &["--loop", "--domain", "alpha"]);
    let mut lifecycle = Listener::spawn(
        &d,
        &[
            "--loop",
            "--json",
            "--event",
            "lifecycle",
            "--domain",
            "alpha",
        ],
    );
    sync(&d, &all, "alpha");
    sync(&d, &lifecycle, "alpha");
    let update = "event 'lifecycle' for domain 'alpha': Defined Updated";

    // One at a time: a reboot's event comes from the guest's watcher, after the reply.
    for (command, expected) in [
        (
            "start",
            "event 'lifecycle' for domain 'alpha': Started Booted",
        ),
        ("reboot", "event 'reboot' for domain 'alpha'"),
        ("reset", "event 'reset' for domain 'alpha'"),
        (
            "destroy",
            "event 'lifecycle' for domain 'alpha': Stopped Destroyed",
        ),
    ] {
        d.vmgate(&[command, "alpha"]).ok();
        let line = loop {
            let line = all.line();
            if line != update {
                break line;
            }
        };
        assert_eq!(line, expected, "after {command}");
    }
    for (event, detail) in [("Started", "Booted"), ("Stopped", "Destroyed")] {
        let got = lifecycle.event(is_update);
        assert_eq!(summary(&got), ("alpha", "lifecycle", event, detail));
    }
}

#[test]
fn timeout_ends_the_wait_successfully_without_events() {
    let d = TestDaemon::start();
    for args in [
        &["event", "--timeout", "1"][..],
        &["event", "--loop", "--timeout", "1"],
    ] {
        let started = Instant::now();
        let out = d.vmgate(args);
        assert_eq!(
            out.ok(),
            "event loop timed out\nevents received: 0\n",
            "{args:?}"
        );
        assert_eq!(out.stderr, "");
        assert!(started.elapsed() >= Duration::from_secs(1));
    }
    let out = d.vmgate(&["event", "--loop", "--timeout", "1", "--json"]);
    assert_eq!(out.ok(), "", "--json prints the events only");
}

#[test]
fn an_unknown_domain_or_family_is_refused() {
    let d = TestDaemon::start();
    let out = d.vmgate(&["event", "--domain", "ghost", "--timeout", "5"]);
    let err = out.err();
    assert!(err.contains("ghost") && err.contains("not found"), "{err}");
    assert_eq!(out.stdout, "");
    let out = d.vmgate(&["event", "--event", "lost"]);
    assert!(out.err().contains("lost"), "{out:?}");
}

#[test]
fn the_read_only_socket_may_listen() {
    let d = TestDaemon::start();
    let ro = format!("test+unix:///default?socket={}", d.ro_socket().display());
    let out = run_vmgate(&["-c", &ro, "event", "--timeout", "1"], None);
    assert!(out.ok().contains("events received: 0"), "{out:?}");
}

#[test]
fn ctrl_c_ends_the_loop_as_virsh_does() {
    let d = TestDaemon::start();
    let mut listener = Listener::spawn(&d, &["--loop"]);
    sync(&d, &listener, "alpha");
    listener.signal(Signal::SIGINT);
    let ended = listener.end();
    assert_eq!(ended.code, 0, "{ended:?}");
    let (last, before) = ended.rest.split_last().expect("closing lines");
    assert!(last.starts_with("events received: "), "{ended:?}");
    assert_eq!(
        before.last().map(String::as_str),
        Some("event loop interrupted")
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_loop_quietly() {
    let d = TestDaemon::start();
    let uri = d.uri();
    let mut child = Command::new(bins::vmgate())
        .args(["-c", uri.as_str(), "event", "--loop"])
        .env_remove("VMGATE_DEFAULT_URI")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmgate event");
    drop(child.stdout.take());
    let mut exited = None;
    let ended = wait_until(DEADLINE, || {
        define(&d, "alpha");
        exited = child.try_wait().expect("wait");
        exited.is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "vmgate event kept running with nobody reading");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn daemon_shutdown_ends_the_stream_without_holding_up_the_daemon() {
    let mut d = TestDaemon::start();
    let mut listener = Listener::spawn(&d, &["--loop"]);
    sync(&d, &listener, "alpha");
    let started = Instant::now();
    assert!(d.stop(), "vmgated exits cleanly:\n{}", d.log());
    // In-flight calls get 10 s to drain; an open event stream must not use them up.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}:\n{}",
        started.elapsed(),
        d.log()
    );
    let ended = listener.end();
    assert_eq!(ended.code, 1, "{ended:?}");
    assert!(ended.stderr.contains("shutting down"), "{ended:?}");
}

#[test]
fn scripts_may_wait_for_events_and_go_on() {
    let d = TestDaemon::start();
    define(&d, "alpha");
    let out = d.vmgate_stdin(&[], Some("event --timeout 1\nlist --all\n"));
    let text = out.ok();
    assert!(
        text.starts_with("event loop timed out\nevents received: 0\n"),
        "{text}"
    );
    assert!(text.contains("alpha"), "{text}");
}

#[test]
fn ctrl_c_in_the_shell_ends_the_loop_and_the_shell_goes_on() {
    if !require_tool("expect", "expect") {
        return;
    }
    let d = TestDaemon::start();
    define(&d, "alpha");
    let script = format!(
        r#"
set timeout 1
spawn {vmgate} -c {uri}
expect "vmgate # "
send "event --loop\r"
set seen 0
for {{set i 0}} {{$i < 20}} {{incr i}} {{
    exec {vmgate} -c {uri} define {path}
    expect {{
        "Defined Updated" {{ set seen 1; break }}
        timeout {{}}
    }}
}}
if {{!$seen}} {{ exit 2 }}
set timeout 20
send "\003"
expect "event loop interrupted"
expect "vmgate # "
send "domstate alpha\r"
expect "shut off"
expect "vmgate # "
send "quit\r"
expect eof
catch wait result
exit [lindex $result 3]
"#,
        vmgate = bins::vmgate().display(),
        uri = d.uri(),
        path = d.dir().join("alpha.toml").display(),
    );
    let out = Command::new("expect")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run expect");
    assert!(
        out.status.success(),
        "shell session failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
