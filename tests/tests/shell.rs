//! The interactive shell on a real terminal: `expect` gives vmgate a TTY, types commands at
//! its prompt and reads the answers, as a person would.

use std::process::Command;

use vmgate_tests::{TestDaemon, bins, require_tool};

#[test]
fn interactive_shell_runs_commands_until_quit() {
    if !require_tool("expect", "expect") {
        return;
    }
    let d = TestDaemon::start();
    let path = d.file("a.toml", "name = \"alpha\"\n");
    let script = format!(
        r#"
set timeout 20
spawn {vmgate} -c {uri}
expect "vmgate # "
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
send "quit\r"
expect eof
catch wait result
exit [lindex $result 3]
"#,
        vmgate = bins::vmgate().display(),
        uri = d.uri(),
        path = path.display(),
    );
    let out = Command::new("expect")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run expect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shell session failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.vmgate(&["list", "--all"]).ok().contains("alpha"),
        "the shell's define took effect"
    );
}
