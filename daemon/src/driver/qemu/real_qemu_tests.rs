//! Tests against the real emulator: QEMU must accept the command lines `argv` builds, and
//! the QMP client must drive it (status, stop/cont with their events, memory, quit ending
//! in EOF and the process exiting). They skip, saying so on stderr, when
//! `qemu-system-x86_64` is not on PATH (and fail instead when `CI` is set). Each QEMU is
//! killed by pid if the test fails before it quits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use tokio::time::timeout;
use uuid::Uuid;
use vmgate_config::domain::{Disk, DiskBus, DomainDef, Graphics, Interface};

use super::argv::{QemuSettings, RunPaths, build};
use super::cputime;
use super::qmp::{CloseReason, Event, QmpClient, RunState};

const EMULATOR: &str = "qemu-system-x86_64";
const WAIT: Duration = Duration::from_secs(20);

fn find_emulator(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(EMULATOR))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{EMULATOR} is not on PATH; install the qemu-system-x86 package"
        );
        eprintln!("SKIP {test}: {EMULATOR} is not on PATH (package qemu-system-x86)");
    }
    found
}

/// A running QEMU; dropping it kills the process by pid if it still runs.
struct Qemu {
    child: Child,
    pid: u32,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Starts `def` as the driver will (cleared environment, output to the log file) and
/// connects to its QMP socket.
async fn start(
    emulator: &Path,
    def: &DomainDef,
    base: &Path,
) -> (Qemu, QmpClient, broadcast::Receiver<Event>, RunPaths) {
    let run_dir = RunPaths::run_dir(base, &def.name);
    std::fs::create_dir_all(&run_dir).expect("run dir");
    let settings = QemuSettings {
        emulator: emulator.to_path_buf(),
        sandbox: true,
        log_dir: base.join("log"),
    };
    std::fs::create_dir_all(&settings.log_dir).expect("log dir");
    let cmd = build(def, &run_dir, &settings, false).expect("argv");
    let log = std::fs::File::create(&cmd.log_file).expect("log file");
    let child = Command::new(&cmd.program)
        .args(&cmd.args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn qemu");
    let pid = child.id().expect("pid");
    let mut qemu = Qemu { child, pid };
    let mut attempts = 0;
    let (client, events) = loop {
        match QmpClient::connect(&cmd.paths.qmp).await {
            Ok(connected) => break connected,
            Err(e) => {
                attempts += 1;
                let exited = qemu.child.try_wait().expect("try_wait");
                if attempts > 400 || exited.is_some() {
                    let log = std::fs::read_to_string(&cmd.log_file).unwrap_or_default();
                    panic!("QEMU not reachable ({e}); exit: {exited:?}; log:\n{log}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    (qemu, client, events, cmd.paths)
}

/// The next event that is not `Other` (QEMU may add events of its own).
async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    loop {
        let event = timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("an event");
        if !matches!(event, Event::Other { .. }) {
            return event;
        }
    }
}

async fn quit_and_reap(mut qemu: Qemu, client: QmpClient, events: &mut broadcast::Receiver<Event>) {
    client.quit().await.expect("quit");
    assert_eq!(
        next_event(events).await,
        Event::Shutdown {
            guest: false,
            reason: "host-qmp-quit".into()
        }
    );
    assert_eq!(next_event(events).await, Event::Closed(CloseReason::Eof));
    let status = timeout(WAIT, qemu.child.wait())
        .await
        .expect("QEMU exits after quit")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn real_qemu_runs_the_diskless_guest_and_obeys_qmp() {
    let Some(emulator) = find_emulator("real_qemu_runs_the_diskless_guest_and_obeys_qmp") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let def = DomainDef {
        memory_mib: 64,
        graphics: Some(Graphics::vnc()),
        ..DomainDef::new_minimal("bios")
    }
    .with_uuid(Uuid::new_v4());
    let (qemu, client, mut events, paths) = start(&emulator, &def, dir.path()).await;

    assert!(client.greeting().version.0 >= 7, "{:?}", client.greeting());
    let status = client.query_status().await.expect("status");
    assert!(
        status.running && status.status == RunState::Running,
        "{status:?}"
    );
    let pidfile = std::fs::read_to_string(&paths.pidfile).expect("pidfile");
    assert_eq!(pidfile.trim(), qemu.pid.to_string());
    assert!(paths.vnc.exists(), "QEMU listens on the VNC socket");

    client.stop().await.expect("stop");
    assert_eq!(next_event(&mut events).await, Event::Stop);
    let status = client.query_status().await.expect("status");
    assert_eq!((status.running, status.status), (false, RunState::Paused));
    client.cont().await.expect("cont");
    assert_eq!(next_event(&mut events).await, Event::Resume);
    assert!(client.query_status().await.expect("status").running);

    let memory = client.query_memory_size_summary().await.expect("memory");
    assert_eq!(memory.base_memory, 64 << 20);
    assert_eq!(client.query_cpus_fast().await.expect("cpus").len(), 1);
    cputime::of_process(qemu.pid).expect("cpu time from /proc");

    quit_and_reap(qemu, client, &mut events).await;
    assert!(!paths.pidfile.exists(), "QEMU removes its pidfile on exit");
}

#[tokio::test]
async fn real_qemu_accepts_disks_a_cdrom_and_nics() {
    let Some(emulator) = find_emulator("real_qemu_accepts_disks_a_cdrom_and_nics") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = |name: &str| {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(1 << 20))
            .expect("image");
        path
    };
    for machine in ["pc", "q35"] {
        let def = DomainDef {
            machine: machine.into(),
            memory_mib: 64,
            disks: vec![
                Disk {
                    bus: DiskBus::Ide,
                    ..Disk::new(image(&format!("{machine}-a,1.raw")))
                },
                Disk {
                    readonly: true,
                    ..Disk::new(image(&format!("{machine}-b.raw")))
                },
                Disk {
                    bus: DiskBus::Ide,
                    ..Disk::new(image(&format!("{machine}-c.raw")))
                },
            ],
            cdrom: Some(image(&format!("{machine}-cd.iso"))),
            interfaces: vec![
                Interface::user(),
                Interface {
                    model: "virtio-net-pci".into(),
                    mac: Some("52:54:00:00:00:01".into()),
                    ..Interface::user()
                },
            ],
            ..DomainDef::new_minimal(format!("devices-{machine}"))
        }
        .with_uuid(Uuid::new_v4());
        let (qemu, client, mut events, _) = start(&emulator, &def, dir.path()).await;
        let block = client
            .execute("query-block", None)
            .await
            .expect("query-block");
        let nodes: Vec<(&str, bool)> = block
            .as_array()
            .expect("a list")
            .iter()
            .map(|b| {
                let inserted = &b["inserted"];
                (
                    inserted["node-name"].as_str().unwrap_or_default(),
                    inserted["ro"].as_bool().unwrap_or_default(),
                )
            })
            .collect();
        for want in [
            ("disk0", false),
            ("disk1", true),
            ("disk2", false),
            ("cdrom", true),
        ] {
            assert!(
                nodes.contains(&want),
                "{machine}: {want:?} not in {nodes:?}"
            );
        }
        quit_and_reap(qemu, client, &mut events).await;
    }
}
