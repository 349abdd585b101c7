//! A QEMU process by its pid, for what QMP cannot do: telling whether it is still alive
//! (a re-attached guest is not the daemon's child, so there is no exit status to wait
//! for), making sure a pid read from a pidfile is that guest's emulator and not a process
//! that reused the number, and killing it when it will not quit.

use std::{fs, io, path::Path, time::Duration};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use uuid::Uuid;

/// How often [`wait_gone`] looks.
const POLL: Duration = Duration::from_millis(10);

/// The pid in a QEMU pidfile, or None when there is none (or it holds no number).
pub fn read_pidfile(path: &Path) -> io::Result<Option<u32>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `pid` runs (a zombie, which has exited, does not).
pub fn is_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_ascii_whitespace()
                .next()
                .map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Whether `pid` is the emulator of the guest with `uuid`: its command line has
/// `-uuid <uuid>`, which the daemon gives every guest.
pub fn is_guest(pid: u32, uuid: Uuid) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = uuid.to_string();
    let mut args = cmdline.split(|&b| b == 0);
    while let Some(arg) = args.next() {
        if arg == b"-uuid" {
            return args.next() == Some(wanted.as_bytes());
        }
    }
    false
}

/// SIGKILL to the guest's emulator, if `pid` still is it.
pub fn kill_guest(pid: u32, uuid: Uuid) {
    if !is_guest(pid, uuid) {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(e) = kill(Pid::from_raw(raw), Signal::SIGKILL) {
        tracing::warn!(pid, "cannot kill the QEMU process: {e}");
    }
}

/// Waits until `pid` has exited, up to `limit`; whether it did.
pub async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_is_recognised_by_its_uuid_and_seen_to_go() {
        let uuid = Uuid::new_v4();
        // A process whose command line carries "-uuid" then the value, as QEMU's does.
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", "import time; time.sleep(30)", "-uuid"])
            .arg(uuid.to_string())
            .spawn()
            .expect("spawn python3");
        let pid = child.id().expect("pid");
        let seen = async {
            while !is_guest(pid, uuid) {
                tokio::time::sleep(POLL).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), seen)
            .await
            .is_err()
        {
            panic!("the process never showed -uuid {uuid}");
        }
        assert!(is_alive(pid));
        assert!(!is_guest(pid, Uuid::new_v4()), "another guest's uuid");
        kill_guest(pid, uuid);
        child.wait().await.expect("reap");
        assert!(wait_gone(pid, Duration::from_secs(5)).await);
        assert!(!is_alive(pid));
    }

    #[test]
    fn pidfiles_are_read_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("qemu.pid");
        assert_eq!(read_pidfile(&path).expect("missing"), None);
        fs::write(&path, "1234\n").expect("write");
        assert_eq!(read_pidfile(&path).expect("read"), Some(1234));
        fs::write(&path, "garbage").expect("write");
        assert_eq!(read_pidfile(&path).expect("read"), None);
    }
}
