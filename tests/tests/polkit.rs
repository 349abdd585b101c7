//! polkit end to end, as root: a real polkitd on a private system bus judges the real
//! daemon's callers, the real CLI run as test users. The package's own policy file declares
//! the actions; each test writes the rules an administrator would.
//!
//! - `auth_unix_rw = "polkit"`: a member of the granted group may use the read-write socket,
//!   another user is refused with the action named, and with polkitd gone every new caller
//!   is refused with an error that says polkit cannot be asked (never an allow).
//! - `access_drivers = ["polkit"]`: a rule on `org.vmgate.api.domain.start` keyed on the
//!   `domain_name` detail lets a user start one guest and not another, `list` shows that
//!   user only the guests it may `getattr`, and a refused call names its action.

use std::{path::PathBuf, process::Command, time::Duration};

use vmgate_tests::{
    CliOutput, TestDaemon, bins,
    polkit::{FakeUser, PolkitBus},
    wait_until,
};

const ALICE: FakeUser = FakeUser {
    name: "alice",
    uid: 2001,
    groups: &["vmadmins"],
};
const BOB: FakeUser = FakeUser {
    name: "bob",
    uid: 2002,
    groups: &[],
};

/// How long a rewritten rules file may take to apply.
const RULES_DEADLINE: Duration = Duration::from_secs(10);

fn policy() -> PathBuf {
    bins::workspace_root().join("packaging/polkit/org.vmgate.policy")
}

/// Runs the CLI against `d` as `user` (uid and gid, no supplementary groups).
fn vmgate_as(d: &TestDaemon, user: FakeUser, args: &[&str]) -> CliOutput {
    let id = user.uid.to_string();
    Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(bins::vmgate())
        .args(["-c", &d.uri()])
        .args(args)
        .env_remove("VMGATE_DEFAULT_URI")
        .env("HOME", "/tmp")
        .output()
        .expect("run vmgate as a test user")
        .into()
}

fn define(d: &TestDaemon, name: &str) {
    let path = d.file(&format!("{name}.toml"), &format!("name = \"{name}\"\n"));
    d.vmgate(&["define", path.to_str().expect("utf-8")]).ok();
}

/// Root always passes (the daemon's own tests define through it); the rest is the test's.
fn rules(body: &str) -> String {
    format!(
        "polkit.addRule(function(action, subject) {{\n\
         if (action.id.indexOf(\"org.vmgate.\") != 0) {{ return polkit.Result.NOT_HANDLED; }}\n\
         if (subject.user == \"root\") {{ return polkit.Result.YES; }}\n\
         {body}\n\
         return polkit.Result.NO;\n}});\n"
    )
}

#[test]
fn the_read_write_socket_admits_the_granted_group_only() {
    let socket_rule = rules(
        "if (action.id == \"org.vmgate.unix.manage\" && subject.isInGroup(\"vmadmins\")) \
         { return polkit.Result.YES; }",
    );
    let Some(mut bus) = PolkitBus::start(&policy(), &socket_rule, &[ALICE, BOB]) else {
        return;
    };
    let address = bus.address();
    let d = TestDaemon::start_with_env(
        "auth_unix_rw = \"polkit\"\nunix_sock_rw_perms = \"0777\"\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", &address)],
    );
    define(&d, "alpha");

    let alice = vmgate_as(&d, ALICE, &["list", "--all"]);
    assert!(alice.ok().contains("alpha"), "{alice:?}\n{}", d.log());
    let bob = vmgate_as(&d, BOB, &["list", "--all"]);
    let err = bob.err();
    assert!(
        err.contains("polkit denied org.vmgate.unix.manage"),
        "bob is refused, naming the action: {err}"
    );

    // A rule change applies to the next connection.
    bus.set_rules(&rules(
        "if (action.id == \"org.vmgate.unix.manage\" && subject.user == \"bob\") \
         { return polkit.Result.YES; }",
    ));
    assert!(
        wait_until(RULES_DEADLINE, || vmgate_as(&d, BOB, &["list"]).code == 0),
        "polkitd never applied the new rules:\n{}",
        bus.log()
    );
    assert_eq!(vmgate_as(&d, ALICE, &["list"]).code, 1, "alice lost it");

    bus.stop_polkitd();
    let without = vmgate_as(&d, BOB, &["list"]);
    let err = without.err();
    assert!(
        err.contains("polkit cannot be asked") && err.contains("refused"),
        "no polkit, no access, and the error says why: {err}"
    );
}

#[test]
fn the_access_driver_judges_each_call_on_each_domain() {
    let api_rules = rules(
        "if (action.id == \"org.vmgate.unix.manage\") { return polkit.Result.YES; }\n\
         if (subject.isInGroup(\"vmadmins\")) { return polkit.Result.YES; }\n\
         if (subject.user == \"bob\") {\n\
           if (action.id.indexOf(\"org.vmgate.api.connect.\") == 0) { return polkit.Result.YES; }\n\
           if ((action.id == \"org.vmgate.api.domain.start\" || \
                action.id == \"org.vmgate.api.domain.getattr\" || \
                action.id == \"org.vmgate.api.domain.read\") && \
               action.lookup(\"domain_name\") == \"web\" && \
               action.lookup(\"connect_driver\") == \"Test\") { return polkit.Result.YES; }\n\
         }",
    );
    let Some(bus) = PolkitBus::start(&policy(), &api_rules, &[ALICE, BOB]) else {
        return;
    };
    let address = bus.address();
    let d = TestDaemon::start_with_env(
        "auth_unix_rw = \"polkit\"\nunix_sock_rw_perms = \"0777\"\naccess_drivers = [\"polkit\"]\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", &address)],
    );
    define(&d, "web");
    define(&d, "db");

    vmgate_as(&d, BOB, &["start", "web"]).ok();
    let refused = vmgate_as(&d, BOB, &["start", "db"]);
    let err = refused.err();
    assert!(
        err.contains("polkit denied org.vmgate.api.domain.start"),
        "the refusal names the action: {err}"
    );
    assert_eq!(
        d.vmgate(&["domstate", "db"]).ok().trim(),
        "shut off",
        "db was not started"
    );
    let destroy = vmgate_as(&d, BOB, &["destroy", "web"]);
    assert!(
        destroy.err().contains("org.vmgate.api.domain.stop"),
        "{destroy:?}"
    );

    let bobs = vmgate_as(&d, BOB, &["list", "--all", "--name"]);
    assert_eq!(bobs.ok().split_whitespace().collect::<Vec<_>>(), ["web"]);
    let alices = vmgate_as(&d, ALICE, &["list", "--all", "--name"]);
    let mut names: Vec<&str> = alices.ok().split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["db", "web"], "the group sees every guest");
    vmgate_as(&d, ALICE, &["start", "db"]).ok();

    // Events: bob hears of web only.
    let events = events_as(&d, BOB);
    let synced = wait_until(RULES_DEADLINE, || {
        d.vmgate(&["suspend", "web"]).ok();
        d.vmgate(&["resume", "web"]).ok();
        events
            .recv_timeout(Duration::from_millis(300))
            .is_ok_and(|line| line.contains("\"web\""))
    });
    assert!(synced, "bob's event stream never showed web");
    d.vmgate(&["destroy", "db"]).ok();
    d.vmgate(&["destroy", "web"]).ok();
    let mut seen = Vec::new();
    while let Ok(line) = events.recv_timeout(Duration::from_secs(5)) {
        let stopped_web = line.contains("\"web\"") && line.contains("Stopped");
        seen.push(line);
        if stopped_web {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("\"web\"") && l.contains("Stopped")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("\"db\"")),
        "db's events are hidden: {seen:?}"
    );
    drop(bus);
}

/// `vmgate event --loop --json` as `user`, its lines on a channel.
fn events_as(d: &TestDaemon, user: FakeUser) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let id = user.uid.to_string();
    let mut child = Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(bins::vmgate())
        .args([
            "-c",
            &d.uri(),
            "event",
            "--loop",
            "--json",
            "--timeout",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("vmgate event");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    });
    rx
}

#[test]
fn a_caller_polkit_would_let_in_after_authentication_authenticates_on_a_terminal() {
    let challenge = rules(
        "if (action.id == \"org.vmgate.unix.manage\" && subject.user == \"bob\") \
         { return polkit.Result.AUTH_SELF; }",
    );
    let Some(bus) = PolkitBus::start(&policy(), &challenge, &[ALICE, BOB]) else {
        return;
    };
    let address = bus.address();
    let d = TestDaemon::start_with_env(
        "auth_unix_rw = \"polkit\"\nunix_sock_rw_perms = \"0777\"\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", &address)],
    );
    // Without a terminal the client starts no agent: refused, saying what would help.
    let piped = vmgate_as(&d, BOB, &["list"]);
    assert!(
        piped
            .err()
            .contains("polkit requires authentication for org.vmgate.unix.manage"),
        "{piped:?}"
    );
    assert_eq!(vmgate_as(&d, ALICE, &["list"]).code, 1, "alice has no rule");

    // On a terminal: the client's own pkttyagent takes polkit's question on it, and the
    // daemon lets polkit wait for the answer. bob has no password here (he exists for
    // polkitd only), so authenticating fails and the call is denied.
    if !vmgate_tests::require_tool("expect", "expect") {
        return;
    }
    let script = format!(
        "set timeout 30\n\
         spawn setpriv --reuid {uid} --regid {uid} --clear-groups {vmgate} -c {uri} list\n\
         expect {{\n\
           -re {{AUTHENTICATING FOR org.vmgate.unix.manage}} {{ puts \"\\nAGENT-PROMPTED\" }}\n\
           timeout {{ puts \"\\nNO-PROMPT\"; exit 2 }}\n\
           eof {{ puts \"\\nNO-PROMPT\"; exit 2 }}\n\
         }}\n\
         expect eof\n\n",
        uid = BOB.uid,
        vmgate = bins::vmgate().display(),
        uri = d.uri(),
    );
    let out = Command::new("expect")
        .args(["-c", &script])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .output()
        .expect("run expect");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        transcript.contains("AGENT-PROMPTED"),
        "the client's polkit agent asked on the terminal:\n{transcript}\n{}",
        bus.log()
    );
    assert!(
        transcript.contains("polkit denied org.vmgate.unix.manage"),
        "a failed authentication is a refusal:\n{transcript}"
    );
}
