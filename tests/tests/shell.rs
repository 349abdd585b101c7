//! The interactive shell on a real terminal: `expect` gives vmgate a TTY, types commands at
//! its prompt and reads the answers, as a person would.

use std::{process::Command, time::Duration};

use vmgate_tests::{TestDaemon, bins, require_tool, wait_until};

#[test]
fn interactive_shell_runs_commands_until_quit() {
    if !require_tool("expect", "expect") {
        return;
    }
    let d = TestDaemon::start();
    let path = d.file("a.toml", "name = \"alpha\"\n");
    let commands = format!(
        r#"
send "define {path}\r"
expect "defined from"
expect "vmgate # "
send "start ghost\r"
expect "not found"
expect "vmgate # "
send "list --all\r"
expect "alpha"
expect "vmgate # "
send "help\r"
expect "dominfo"
expect "vmgate # "
"#,
        path = path.display(),
    );
    run_session(&d, &commands);
    assert!(
        d.vmgate(&["list", "--all"]).ok().contains("alpha"),
        "the shell's define took effect"
    );
}

/// The daemon's keepalive (`keepalive_interval = 1`, `keepalive_count = 1`): a shell idle at
/// its prompt for several probe intervals still answers them and keeps its connection,
/// while a shell that is stopped (SIGSTOP, as a client whose host froze) cannot answer, and
/// the daemon closes its connection. Once continued, it dials again and goes on.
#[test]
fn an_idle_shell_answers_keepalive_probes_and_a_frozen_one_is_closed() {
    if !require_tool("expect", "expect") {
        return;
    }
    let d = TestDaemon::start_with("keepalive_interval = 1\nkeepalive_count = 1");
    let closed = "no longer answers keepalive probes";
    let shell = |freeze: bool| {
        let idle = if freeze {
            "exec kill -STOP [exp_pid]\nafter 4000\nexec kill -CONT [exp_pid]"
        } else {
            "after 4000"
        };
        let commands = format!(
            r#"
send "list --all\r"
expect "Name"
expect "vmgate # "
{idle}
send "list --all\r"
expect "Name"
expect "vmgate # "
"#
        );
        run_session(&d, &commands);
    };
    shell(false);
    assert!(
        !d.log().contains(closed),
        "an idle shell keeps its connection:\n{}",
        d.log()
    );
    shell(true);
    assert!(
        wait_until(Duration::from_secs(10), || d.log().contains(closed)),
        "the frozen shell's connection is closed:\n{}",
        d.log()
    );
}

/// Starts `vmgate` on `d` under expect, waits for its prompt, types `commands` (expect
/// lines, each ending at the prompt), then quits; fails with the transcript, expect's errors
/// and the daemon's log unless the shell exits 0.
fn run_session(d: &TestDaemon, commands: &str) {
    let script = format!(
        r#"
set timeout 20
spawn {vmgate} -c {uri}
expect "vmgate # "
{commands}
send "quit\r"
expect eof
catch wait result
exit [lindex $result 3]
"#,
        vmgate = bins::vmgate().display(),
        uri = d.uri(),
    );
    let out = Command::new("expect")
        .args(["-c", &script])
        .output()
        .expect("run expect");
    assert!(
        out.status.success(),
        "shell session failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
}
