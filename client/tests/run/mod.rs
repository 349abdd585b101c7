//! Running the `vmgate` binary in the client's tests: one process per call, stdin written and
//! closed, stdout, stderr and the exit status collected.

#![allow(dead_code)] // each test binary uses a different part

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What a run of `vmgate` did.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `vmgate -c URI ARGS...`, with pipes for all three streams and no default URI from the
/// environment.
pub fn command(uri: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmgate"));
    cmd.arg("-c")
        .arg(uri)
        .args(args)
        .env_remove("VMGATE_DEFAULT_URI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts `cmd`, writes `stdin` (if any) and closes it, and waits for the end.
pub async fn finish(mut cmd: Command, stdin: Option<&str>) -> Run {
    let mut child = cmd.spawn().expect("spawn vmgate");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().await.expect("vmgate runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `vmgate -c URI ARGS...` with `stdin` as its standard input.
pub async fn vmgate(uri: &str, args: &[&str], stdin: Option<&str>) -> Run {
    finish(command(uri, args), stdin).await
}
