//! The `qemu` driver: starting a guest (files checked first, command line built, emulator
//! spawned, QMP negotiated before `start` returns, so the console is ready when the caller
//! hears back) and re-attaching to the guests an earlier daemon left running (pidfile, the
//! pid checked to be that guest's emulator, QMP socket, `query-status`). A guest that
//! powered off while no daemon watched is still there, stopped by `-no-shutdown`: it is
//! told to quit and reported as shut down; one whose process is gone is reported crashed.

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use tokio::{net::UnixStream, sync::broadcast};
use tokio_util::sync::CancellationToken;
use vmgate_config::{Config, domain::DomainDef};

use super::{
    argv::{self, QemuCommand, QemuSettings, RunPaths},
    guest::{Process, QemuGuest, Supervised},
    process,
    qmp::{Event, QmpClient, RunState},
    spawn::{self, Account},
};
use crate::driver::{Driver, DriverError, Guest, GuestStatus, Reattach, StopCause};

/// How long a starting QEMU gets to open its monitor and negotiate it. TCG on a loaded
/// host can take seconds; QEMU exiting early is noticed at once.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a re-attach waits for a running QEMU's monitor.
const REATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a starting QEMU's monitor socket is tried.
const CONNECT_POLL: Duration = Duration::from_millis(5);

/// The most of a QEMU log quoted in an error.
const LOG_TAIL_BYTES: u64 = 2048;

/// Runs guests as QEMU processes.
pub struct QemuDriver {
    settings: QemuSettings,
    unix_sock_dir: PathBuf,
    account: Option<Account>,
    kvm: bool,
    version: String,
    stop: CancellationToken,
}

impl QemuDriver {
    /// The driver for `cfg`; `stop` ends supervision (not the guests) when the daemon stops.
    /// Fails when `[qemu] user` or `group` names no account.
    pub fn new(cfg: &Config, stop: CancellationToken) -> Result<QemuDriver, String> {
        let settings = QemuSettings::from_config(&cfg.qemu, &cfg.daemon.state_dir);
        let account = account(cfg.qemu.user.as_deref(), cfg.qemu.group.as_deref())?;
        let kvm = kvm_usable();
        let version = emulator_version(&settings.emulator);
        tracing::info!(
            emulator = %settings.emulator.display(),
            %version,
            accel = if kvm { "kvm" } else { "tcg" },
            "qemu driver ready"
        );
        Ok(QemuDriver {
            settings,
            unix_sock_dir: cfg.daemon.unix_sock_dir.clone(),
            account,
            kvm,
            version,
            stop,
        })
    }

    fn run_paths(&self, name: &str) -> RunPaths {
        RunPaths::new(&RunPaths::run_dir(&self.unix_sock_dir, name))
    }
}

/// The account `[qemu] user`/`group` name, when the daemon runs as root; as libvirt's
/// qemu.conf, a user without a group runs with the user's own group.
fn account(user: Option<&str>, group: Option<&str>) -> Result<Option<Account>, String> {
    if !nix::unistd::geteuid().is_root() || (user.is_none() && group.is_none()) {
        return Ok(None);
    }
    let user = match user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(|e| format!("[qemu] user {name:?}: {e}"))?
                .ok_or_else(|| {
                    format!("[qemu] user {name:?} does not exist; create it or remove the setting")
                })?,
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => {
            nix::unistd::Group::from_name(name)
                .map_err(|e| format!("[qemu] group {name:?}: {e}"))?
                .ok_or_else(|| {
                    format!("[qemu] group {name:?} does not exist; create it or remove the setting")
                })?
                .gid
        }
        None => user
            .as_ref()
            .map_or(nix::unistd::Gid::from_raw(0), |u| u.gid),
    };
    Ok(Some(Account {
        uid: user.map_or(nix::unistd::Uid::from_raw(0), |u| u.uid),
        gid,
    }))
}

/// Whether guests can run under KVM: this process can open `/dev/kvm` and the CPU
/// exposes hardware virtualization (`vmx` or `svm`). Some virtual machines offer a
/// `/dev/kvm` without it (a paravirtual KVM that runs only guests built for it), on which
/// an ordinary guest never gets past its firmware; those get TCG.
fn kvm_usable() -> bool {
    let device = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    device && fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| cpu_virtualizes(&info))
}

/// Whether a `/proc/cpuinfo` lists `vmx` (Intel VT-x) or `svm` (AMD-V) among its flags.
fn cpu_virtualizes(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm")
}

/// `QEMU emulator version 10.0.2 (...)`'s version, or why there is none.
fn emulator_version(emulator: &Path) -> String {
    let path = std::env::var_os("PATH");
    let program = match spawn::resolve(emulator, path.as_deref()) {
        Ok(program) => program,
        Err(e) => return format!("unavailable: {e}"),
    };
    match Command::new(&program).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        Ok(out) => format!(
            "unavailable: {} --version failed: {}",
            program.display(),
            out.status
        ),
        Err(e) => format!("unavailable: {}: {e}", program.display()),
    }
}

/// Every file the guest reads must exist before QEMU is asked to open it; the error names
/// the definition's field.
fn check_files(def: &DomainDef) -> Result<(), DriverError> {
    let mut files: Vec<(String, &Path)> = def
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("disk[{i}].path"), d.path.as_path()))
        .collect();
    let named = [
        ("cdrom", &def.cdrom),
        ("kernel", &def.kernel),
        ("initrd", &def.initrd),
    ];
    for (field, path) in named {
        if let Some(path) = path {
            files.push((field.to_string(), path.as_path()));
        }
    }
    for (field, path) in files {
        if let Err(e) = fs::File::open(path) {
            return Err(DriverError::StartFailed(format!(
                "{field}: cannot open {}: {e}; create it or fix the path in the definition",
                path.display()
            )));
        }
    }
    Ok(())
}

/// What a log has gained since `offset`, clipped to its last [`LOG_TAIL_BYTES`].
fn log_since(path: &Path, offset: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let end = file.metadata().map(|m| m.len()).unwrap_or(offset);
    let start = offset.max(end.saturating_sub(LOG_TAIL_BYTES));
    let mut text = String::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.take(LOG_TAIL_BYTES).read_to_string(&mut text);
    }
    text.trim().to_string()
}

/// Connects to a starting QEMU's monitor, failing at once if the process exits first.
async fn connect_monitor(
    cmd: &QemuCommand,
    child: &mut tokio::process::Child,
    log_offset: u64,
) -> Result<(QmpClient, broadcast::Receiver<Event>), String> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_since(&cmd.log_file, log_offset);
            return Err(format!("QEMU exited at start ({status}): {log}"));
        }
        if let Ok(stream) = UnixStream::connect(&cmd.paths.qmp).await {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            return match tokio::time::timeout(remaining, QmpClient::handshake(stream)).await {
                Ok(Ok(client)) => Ok(client),
                Ok(Err(e)) => Err(format!(
                    "{e}; QEMU said: {}",
                    log_since(&cmd.log_file, log_offset)
                )),
                Err(_) => Err(format!(
                    "QEMU's monitor did not answer within {}s",
                    START_TIMEOUT.as_secs()
                )),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "QEMU did not open its monitor socket within {}s",
                START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(CONNECT_POLL).await;
    }
}

/// The guest's memory as QEMU reports it, or the definition's.
async fn memory_mib(qmp: &QmpClient, def: &DomainDef) -> u64 {
    match qmp.query_memory_size_summary().await {
        Ok(summary) => (summary.base_memory + summary.plugged_memory.unwrap_or(0)) / (1024 * 1024),
        Err(_) => def.memory_mib,
    }
}

#[async_trait]
impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn hypervisor_version(&self) -> String {
        self.version.clone()
    }

    fn guests_outlive_daemon(&self) -> bool {
        true
    }

    async fn start(&self, def: &DomainDef) -> Result<Arc<dyn Guest>, DriverError> {
        check_files(def)?;
        let paths = self.run_paths(&def.name);
        let cmd = argv::build(def, &paths.dir, &self.settings, self.kvm)
            .map_err(|e| DriverError::StartFailed(e.to_string()))?;
        let log_offset = fs::metadata(&cmd.log_file).map(|m| m.len()).unwrap_or(0);
        let mut child = spawn::spawn(&cmd, self.account)
            .map_err(|e| DriverError::StartFailed(e.to_string()))?;
        let pid = child.id().unwrap_or_default();
        let (qmp, events) = match connect_monitor(&cmd, &mut child, log_offset).await {
            Ok(connected) => connected,
            Err(message) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let _ = fs::remove_dir_all(&paths.dir);
                return Err(DriverError::StartFailed(message));
            }
        };
        let memory_mib = memory_mib(&qmp, def).await;
        tracing::info!(domain = %def.name, pid, "QEMU started");
        Ok(QemuGuest::supervise(
            Supervised {
                name: def.name.clone(),
                uuid: def.uuid.unwrap_or_default(),
                pid,
                paths,
                qmp,
                events,
                process: Process::Child(child),
                initial: GuestStatus::Running,
                memory_mib,
                graphics: def.graphics.is_some(),
            },
            self.stop.child_token(),
        ))
    }

    async fn reattach(&self, def: &DomainDef) -> Reattach {
        let paths = self.run_paths(&def.name);
        let Some(uuid) = def.uuid else {
            return Reattach::NotRunning;
        };
        let pid = match process::read_pidfile(&paths.pidfile) {
            Ok(Some(pid)) => pid,
            Ok(None) => return Reattach::NotRunning,
            Err(e) => {
                return gone(
                    &paths,
                    StopCause::Crashed,
                    format!("its pidfile cannot be read: {e}"),
                );
            }
        };
        if !process::is_alive(pid) || !process::is_guest(pid, uuid) {
            return gone(
                &paths,
                StopCause::Crashed,
                format!("its QEMU process (pid {pid}) exited while vmgated was not running"),
            );
        }
        let connected = async {
            let stream = UnixStream::connect(&paths.qmp)
                .await
                .map_err(|e| e.to_string())?;
            let (qmp, events) = QmpClient::handshake(stream)
                .await
                .map_err(|e| e.to_string())?;
            let status = qmp.query_status().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((qmp, events, status))
        };
        let (qmp, events, status) = match tokio::time::timeout(REATTACH_TIMEOUT, connected).await {
            Ok(Ok(found)) => found,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e,
                    _ => format!("no answer within {}s", REATTACH_TIMEOUT.as_secs()),
                };
                process::kill_guest(pid, uuid);
                process::wait_gone(pid, Duration::from_secs(10)).await;
                return gone(
                    &paths,
                    StopCause::Crashed,
                    format!("its monitor did not answer ({why}); QEMU (pid {pid}) was killed"),
                );
            }
        };
        if status.status == RunState::Shutdown {
            let _ = qmp.quit().await;
            process::wait_gone(pid, Duration::from_secs(10)).await;
            if process::is_alive(pid) {
                process::kill_guest(pid, uuid);
            }
            return gone(
                &paths,
                StopCause::Shutdown,
                "it powered off while vmgated was not running".to_string(),
            );
        }
        let initial = if status.running {
            GuestStatus::Running
        } else {
            GuestStatus::Paused
        };
        let memory_mib = memory_mib(&qmp, def).await;
        tracing::info!(domain = %def.name, pid, "re-attached to QEMU");
        Reattach::Running(QemuGuest::supervise(
            Supervised {
                name: def.name.clone(),
                uuid,
                pid,
                paths,
                qmp,
                events,
                process: Process::Adopted,
                initial,
                memory_mib,
                graphics: def.graphics.is_some(),
            },
            self.stop.child_token(),
        ))
    }
}

/// A guest found stopped: its run directory goes too.
fn gone(paths: &RunPaths, cause: StopCause, why: String) -> Reattach {
    let _ = fs::remove_dir_all(&paths.dir);
    Reattach::Gone(cause, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmgate_config::domain::Disk;

    #[test]
    fn a_missing_file_is_named_by_its_field() {
        let mut def = DomainDef::new_minimal("alpha");
        def.disks.push(Disk::new("/nonexistent/root.qcow2"));
        let err = check_files(&def).expect_err("missing disk").to_string();
        assert!(
            err.starts_with("disk[0].path: cannot open /nonexistent/root.qcow2"),
            "{err}"
        );
        assert!(err.contains("fix the path"), "{err}");
        def.disks.clear();
        def.kernel = Some("/nonexistent/vmlinuz".into());
        let err = check_files(&def).expect_err("missing kernel").to_string();
        assert!(err.starts_with("kernel: "), "{err}");
    }

    #[test]
    fn kvm_needs_hardware_virtualization_in_the_cpu_flags() {
        assert!(cpu_virtualizes("processor : 0\nflags : fpu vme vmx sse\n"));
        assert!(cpu_virtualizes("flags\t\t: fpu svm\n"));
        assert!(!cpu_virtualizes(
            "flags : fpu vme sse hypervisor\nvmx flags : ept\n"
        ));
    }

    #[test]
    fn a_log_is_quoted_from_where_this_run_began() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("g.log");
        fs::write(&log, "an earlier run's complaint\n").expect("write");
        let offset = fs::metadata(&log).expect("stat").len();
        let mut text = fs::read_to_string(&log).expect("read");
        text.push_str("qemu: -blockdev: Could not open '/x'\n");
        fs::write(&log, text).expect("append");
        assert_eq!(
            log_since(&log, offset),
            "qemu: -blockdev: Could not open '/x'"
        );
    }
}
