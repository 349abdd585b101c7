//! Starting a guest's emulator with clean hands: its per-guest run directory made 0700
//! (only the daemon and QEMU reach the QMP and VNC sockets in it), stale sockets and pidfile
//! from an earlier run removed, the emulator resolved to an absolute path while PATH is
//! still known, then run with an empty environment, stdin from /dev/null, stdout and stderr
//! appended to the guest's 0600 log file, in its own process group (a signal to the
//! daemon's group does not reach it, and stopping the daemon leaves guests running, as
//! libvirtd does). The emulator inherits no descriptor but 0, 1 and 2: those the daemon
//! opens are close-on-exec (std and tokio open them so), and any it inherited without that
//! flag (a parent's pipes) are closed in the child before exec. When the daemon runs as
//! root and `[qemu] user`/`group` name an account, the emulator runs as that account, which
//! then owns its run directory and log.

use std::{
    ffi::OsStr,
    fs::{self, OpenOptions},
    io,
    os::fd::{BorrowedFd, RawFd},
    os::unix::{
        fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::unistd::{Gid, Uid, chown};
use tokio::process::Child;

use super::argv::{QemuCommand, RunPaths};

/// Why a guest's emulator could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "emulator {0:?} not found on PATH; install qemu-system-x86 or set [qemu] emulator to its full path"
    )]
    NoEmulator(PathBuf),
    #[error(
        "emulator {0} is not an executable file; install qemu-system-x86 or fix [qemu] emulator"
    )]
    NotExecutable(PathBuf),
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Exec {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `program` as an absolute path: as given when it has a slash, else the first executable
/// of that name on `path` (the daemon's PATH).
pub fn resolve(program: &Path, path: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let executable = |candidate: &Path| {
        fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return if executable(program) {
            Ok(program.to_owned())
        } else {
            Err(SpawnError::NotExecutable(program.to_owned()))
        };
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| SpawnError::NoEmulator(program.to_owned()))
}

/// The account the emulator runs as, when it is not the daemon's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: Uid,
    pub gid: Gid,
}

fn prepare_error(path: &Path) -> impl FnOnce(io::Error) -> SpawnError + use<> {
    let path = path.to_owned();
    move |source| SpawnError::Prepare { path, source }
}

/// Makes the run directory 0700 (owned by `account` when given; its parent then lets that
/// account through, 0711) and clears what an earlier run left in it.
pub fn prepare_run_dir(paths: &RunPaths, account: Option<Account>) -> Result<(), SpawnError> {
    let err = prepare_error;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.dir)
        .map_err(err(&paths.dir))?;
    fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o700)).map_err(err(&paths.dir))?;
    if let Some(account) = account {
        chown(&paths.dir, Some(account.uid), Some(account.gid))
            .map_err(|e| err(&paths.dir)(e.into()))?;
        if let Some(parent) = paths.dir.parent() {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o711)).map_err(err(parent))?;
        }
    }
    for stale in [&paths.qmp, &paths.vnc, &paths.pidfile] {
        match fs::remove_file(stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(stale)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Prepares the run directory and starts the emulator as `cmd` describes, as `account`
/// when given. Needs a tokio runtime (the child is reaped by it).
pub fn spawn(cmd: &QemuCommand, account: Option<Account>) -> Result<Child, SpawnError> {
    let program = resolve(&cmd.program, std::env::var_os("PATH").as_deref())?;
    prepare_run_dir(&cmd.paths, account)?;
    if let Some(dir) = cmd.log_file.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SpawnError::Prepare {
                path: dir.to_owned(),
                source,
            })?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&cmd.log_file)
        .map_err(|source| SpawnError::Prepare {
            path: cmd.log_file.clone(),
            source,
        })?;
    if let Some(account) = account {
        nix::unistd::fchown(&log, Some(account.uid), Some(account.gid))
            .map_err(|e| prepare_error(&cmd.log_file)(e.into()))?;
    }
    let stderr = log.try_clone().map_err(|source| SpawnError::Prepare {
        path: cmd.log_file.clone(),
        source,
    })?;
    let mut command = Command::new(&program);
    command
        .args(&cmd.args)
        .env_clear()
        .current_dir(&cmd.paths.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0);
    if let Some(account) = account {
        // std drops supplementary groups (setgroups to none) before setuid.
        command.uid(account.uid.as_raw()).gid(account.gid.as_raw());
    }
    close_inherited_in_child(&mut command);
    tokio::process::Command::from(command)
        .spawn()
        .map_err(|source| SpawnError::Exec { program, source })
}

/// The descriptors above 2 this process has open now.
fn open_descriptors() -> Vec<RawFd> {
    fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| fd > 2)
        .collect()
}

/// Closes, in the child, every descriptor that would survive exec. The list is made here,
/// before the fork; descriptors with close-on-exec set (std's own exec-error pipe among
/// them) are left for exec to close.
fn close_inherited_in_child(command: &mut Command) {
    let candidates = open_descriptors();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec. It allocates nothing and
    // makes only fcntl(2) and close(2) calls, which are async-signal-safe, on descriptor
    // numbers; a number that is not open just makes fcntl fail.
    unsafe {
        command.pre_exec(move || {
            for &fd in &candidates {
                let borrowed = BorrowedFd::borrow_raw(fd);
                let flags = fcntl(borrowed, FcntlArg::F_GETFD);
                if flags.is_ok_and(|f| f & FdFlag::FD_CLOEXEC.bits() == 0) {
                    let _ = nix::unistd::close(fd);
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsString, os::unix::fs::MetadataExt};

    use super::*;

    fn command(dir: &Path, program: &str, args: &[&str]) -> QemuCommand {
        let run = dir.join("run");
        QemuCommand {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            paths: RunPaths::new(&run),
            log_file: dir.join("log").join("g.log"),
        }
    }

    #[test]
    fn emulators_resolve_on_path_or_name_what_to_install() {
        let sh = resolve(
            Path::new("sh"),
            Some(OsStr::new("/nonexistent:/bin:/usr/bin")),
        );
        assert!(sh.expect("sh").is_absolute());
        let err = resolve(Path::new("qemu-nope"), Some(OsStr::new("/bin"))).expect_err("missing");
        assert!(err.to_string().contains("qemu-system-x86"), "{err}");
        assert_eq!(
            resolve(Path::new("/bin/sh"), None).expect("as given"),
            PathBuf::from("/bin/sh")
        );
        let err = resolve(Path::new("/opt/q/qemu"), None).expect_err("missing");
        assert!(
            err.to_string().contains("/opt/q/qemu is not an executable"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_child_gets_no_environment_no_descriptors_and_its_own_group() {
        let dir = tempfile::tempdir().expect("tmp");
        // A descriptor this process holds, as the daemon holds its database and sockets.
        let _held = fs::File::open("/proc/self/stat").expect("a descriptor");
        let script = "echo env=$(env | grep -cv '^PWD='); ls /proc/self/fd | tr '\\n' ' '; echo; \
                      cut -d' ' -f5 /proc/$$/stat; echo pid=$$";
        let cmd = command(dir.path(), "sh", &["-c", script]);
        fs::create_dir_all(&cmd.paths.dir).expect("run dir");
        fs::write(&cmd.paths.qmp, "stale").expect("stale socket");
        let mut child = spawn(&cmd, None).expect("spawn");
        assert!(child.wait().await.expect("wait").success());
        assert!(!cmd.paths.qmp.exists(), "stale sockets are removed");
        let mode = fs::metadata(&cmd.paths.dir).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
        let log_mode = fs::metadata(&cmd.log_file).expect("log").mode() & 0o777;
        assert_eq!(log_mode, 0o600);
        let log = fs::read_to_string(&cmd.log_file).expect("log");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "env=0", "only the PWD sh sets itself: {log}");
        // 0, 1, 2 and the one ls opens to read the directory; this test process runs with
        // the test runner's jobserver pipes inherited, which must not reach the child.
        let mut fds: Vec<u32> = lines[1]
            .split_whitespace()
            .map(|f| f.parse().expect("fd"))
            .collect();
        fds.sort();
        assert!(fds.len() <= 4 && fds.starts_with(&[0, 1, 2]), "{log}");
        let pid = lines[3].trim_start_matches("pid=");
        assert_eq!(
            lines[2], pid,
            "the child leads its own process group: {log}"
        );
    }
}
