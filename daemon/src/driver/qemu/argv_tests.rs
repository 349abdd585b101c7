//! Tests of the command line builder: golden files for whole command lines (a disk-less
//! console guest; two disks, a CD-ROM, direct boot and two NICs; KVM with the sandbox off,
//! firmware boot order and commas in the run directory), then the pieces: comma escaping,
//! derived MACs, and the refusals.
//!
//! `VMGATE_BLESS=1 cargo nextest run -p vmgated --lib driver::qemu` rewrites the golden
//! files from the current output; review the diff before keeping it.

use std::path::PathBuf;

use vmgate_config::domain::{Disk, DiskBus, DiskFormat, Graphics, Interface};

use super::*;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver/qemu/golden")
}

/// Compares `cmd` (emulator, then one argument per line) with `golden/<name>.txt`.
fn assert_golden(name: &str, cmd: &QemuCommand) {
    let mut text = format!("{}\n", cmd.program.display());
    for arg in &cmd.args {
        let arg = arg.to_str().expect("test arguments are UTF-8");
        assert!(
            !arg.contains('\n'),
            "{arg:?} would break the one-per-line format"
        );
        text.push_str(arg);
        text.push('\n');
    }
    let path = golden_dir().join(format!("{name}.txt"));
    if std::env::var_os("VMGATE_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with VMGATE_BLESS=1", path.display()));
    if want != text {
        panic!(
            "command line differs from {}\n--- want\n{want}--- got\n{text}",
            path.display()
        );
    }
}

fn settings(sandbox: bool) -> QemuSettings {
    QemuSettings {
        emulator: "qemu-system-x86_64".into(),
        sandbox,
        log_dir: "/var/lib/vmgate/log".into(),
    }
}

fn uuid() -> Uuid {
    Uuid::from_u128(0x6f1f1c8e_2f5b_4d7a_9a43_1c6e4c1e2b3a)
}

fn diskless() -> DomainDef {
    DomainDef {
        memory_mib: 64,
        graphics: Some(Graphics::vnc()),
        ..DomainDef::new_minimal("bios")
    }
    .with_uuid(uuid())
}

fn run_dir(guest: &str) -> PathBuf {
    RunPaths::run_dir(Path::new("/run/vmgate"), guest)
}

#[test]
fn golden_diskless_console_guest() {
    let def = diskless();
    let cmd = build(&def, &run_dir("bios"), &settings(true), false).expect("builds");
    assert_golden("diskless", &cmd);
    assert_eq!(
        cmd.paths,
        RunPaths {
            dir: "/run/vmgate/qemu/bios".into(),
            qmp: "/run/vmgate/qemu/bios/qmp.sock".into(),
            vnc: "/run/vmgate/qemu/bios/vnc.sock".into(),
            pidfile: "/run/vmgate/qemu/bios/qemu.pid".into(),
        }
    );
    assert_eq!(cmd.log_file, PathBuf::from("/var/lib/vmgate/log/bios.log"));
}

#[test]
fn golden_disks_cdrom_direct_boot_and_two_nics() {
    let def = DomainDef {
        memory_mib: 1024,
        vcpus: 2,
        graphics: Some(Graphics::vnc()),
        disks: vec![
            Disk {
                format: DiskFormat::Qcow2,
                ..Disk::new("/var/lib/images/root,v2.qcow2")
            },
            Disk {
                bus: DiskBus::Ide,
                ..Disk::new("/var/lib/images/data.raw")
            },
        ],
        cdrom: Some("/iso/tools.iso".into()),
        kernel: Some("/boot/vmlinuz-6.1".into()),
        initrd: Some("/boot/initrd,1.img".into()),
        cmdline: Some("console=ttyS0 root=/dev/vda1 opt=a,b".into()),
        interfaces: vec![
            Interface {
                model: "virtio-net-pci".into(),
                mac: Some("52:54:00:AA:bb:01".into()),
                ..Interface::user()
            },
            Interface::user(),
        ],
        ..DomainDef::new_minimal("web1")
    }
    .with_uuid(uuid());
    let cmd = build(&def, &run_dir("web1"), &settings(true), false).expect("builds");
    assert_golden("full", &cmd);
}

#[test]
fn golden_kvm_without_sandbox_or_graphics_boot_order_and_escaped_run_dir() {
    let def = DomainDef {
        machine: "q35".into(),
        disks: vec![
            Disk {
                bus: DiskBus::Ide,
                ..Disk::new("/img/a.raw")
            },
            Disk {
                readonly: true,
                ..Disk::new("/img/b.raw")
            },
        ],
        cdrom: Some("/iso/install.iso".into()),
        ..DomainDef::new_minimal("db")
    }
    .with_uuid(uuid());
    let settings = QemuSettings {
        emulator: "/opt/qemu/bin/qemu-system-x86_64".into(),
        ..settings(false)
    };
    let dir = RunPaths::run_dir(Path::new("/run/a,b"), "db");
    let cmd = build(&def, &dir, &settings, true).expect("builds");
    assert_golden("kvm_nosandbox", &cmd);
}

#[test]
fn escape_doubles_commas_only() {
    assert_eq!(escape(Path::new("/a,b,,c")), OsString::from("/a,,b,,,,c"));
    assert_eq!(
        escape(Path::new("/plain path")),
        OsString::from("/plain path")
    );
    let raw = OsString::from_vec(vec![b'/', 0xff, b',']);
    assert_eq!(escape(Path::new(&raw)).as_bytes(), [b'/', 0xff, b',', b',']);
}

#[test]
fn derived_macs_are_stable_distinct_and_avoid_explicit_ones() {
    let mut def = DomainDef {
        interfaces: vec![Interface::user(); 3],
        ..DomainDef::new_minimal("n")
    }
    .with_uuid(uuid());
    let first = macs(&def, uuid());
    assert_eq!(
        first,
        [
            "52:54:00:1e:2b:3a",
            "52:54:00:1e:2b:3b",
            "52:54:00:1e:2b:3c"
        ]
    );
    assert_eq!(macs(&def, uuid()), first, "the same on every start");
    def.interfaces[2].mac = Some("52:54:00:1E:2B:3A".into());
    assert_eq!(
        macs(&def, uuid()),
        [
            "52:54:00:1e:2b:3b",
            "52:54:00:1e:2b:3c",
            "52:54:00:1e:2b:3a"
        ]
    );
    let wrap = Uuid::from_u128(0xff_ffff);
    assert_eq!(
        macs(&def, wrap)[..2],
        ["52:54:00:ff:ff:ff", "52:54:00:00:00:00"]
    );
    let other = macs(&def, Uuid::from_u128(0x1234_5678));
    assert_ne!(other[0], first[0], "another guest, another MAC");
}

#[test]
fn refusals_name_the_problem() {
    let no_uuid = DomainDef::new_minimal("x");
    let err = build(&no_uuid, &run_dir("x"), &settings(true), false).expect_err("no uuid");
    assert_eq!(
        err.to_string(),
        "Guest x has no UUID; define it before starting it"
    );
    let bad = DomainDef {
        cmdline: Some("quiet".into()),
        ..diskless()
    };
    let err = build(&bad, &run_dir("bios"), &settings(true), false).expect_err("invalid");
    assert!(
        matches!(err, ArgvError::Invalid(_)) && err.to_string().starts_with("cmdline: "),
        "{err}"
    );
    let long = PathBuf::from(format!("/{}", "d".repeat(100)));
    let err = build(&diskless(), &long, &settings(true), false).expect_err("long path");
    assert!(
        err.to_string().contains("qmp.sock is 110 bytes long"),
        "{err}"
    );
}

#[test]
fn no_graphics_means_no_vnc_socket() {
    let def = DomainDef {
        graphics: None,
        ..diskless()
    };
    let cmd = build(&def, &run_dir("bios"), &settings(true), false).expect("builds");
    assert!(!cmd.args.iter().any(|a| a == "-vnc"), "{:?}", cmd.args);
    // the VNC socket length is then irrelevant: only qmp.sock must fit
    let dir = PathBuf::from(format!("/{}", "d".repeat(97)));
    assert!(build(&def, &dir, &settings(true), false).is_ok());
}
