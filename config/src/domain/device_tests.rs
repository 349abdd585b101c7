//! Tests of the QEMU fields of domain definitions: defaults, parse errors, each rule of
//! `device_rules` (machine, paths, direct boot, IDE room, shared images, MACs, models, PCI
//! slots), IDE placement, error positions inside `[[disk]]`/`[[interface]]`, and round trips
//! through `to_toml`.

use std::path::PathBuf;

use uuid::Uuid;

use super::{
    tests::{parse, parse_err},
    *,
};

fn errors_of(def: &DomainDef) -> Vec<String> {
    match def.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
    }
}

/// Asserts exactly one error, on `field`, containing `needle`.
fn refused(def: &DomainDef, field: &str, needle: &str) {
    let errors = errors_of(def);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let prefix = format!("{field}: ");
    assert!(
        errors[0].starts_with(&prefix) && errors[0].contains(needle),
        "want {field}: ...{needle}..., got {errors:?}"
    );
}

fn guest() -> DomainDef {
    DomainDef::new_minimal("g")
}

fn disk(path: &str, bus: DiskBus, readonly: bool) -> Disk {
    Disk {
        bus,
        readonly,
        ..Disk::new(path)
    }
}

#[test]
fn qemu_defaults() {
    let def = parse("name = \"g\"\n");
    assert_eq!(def.machine, "pc");
    assert!(def.disks.is_empty() && def.interfaces.is_empty());
    assert_eq!(
        (&def.cdrom, &def.kernel, &def.initrd, &def.cmdline),
        (&None, &None, &None, &None)
    );
    let def = parse("name = \"g\"\n[[disk]]\npath = \"/d.img\"\n[[interface]]\ntype = \"user\"\n");
    assert_eq!(def.disks, [Disk::new("/d.img")]);
    let d = &def.disks[0];
    assert_eq!(
        (d.format, d.bus, d.readonly),
        (DiskFormat::Raw, DiskBus::Virtio, false)
    );
    assert_eq!(def.interfaces, [Interface::user()]);
    assert_eq!(def.interfaces[0].model, "e1000");
}

#[test]
fn a_full_qemu_definition() {
    let def = parse(
        r#"
name = "g"
machine = "q35"
cdrom = "/iso/install,1.iso"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "console=ttyS0 quiet"

[[disk]]
path = "/img/a.qcow2"
format = "qcow2"
bus = "ide"

[[disk]]
path = "/img/b.raw"
readonly = 1

[[interface]]
type = "user"
model = "virtio-net-pci"
mac = "52:54:00:AB:cd:01"
"#,
    );
    assert_eq!(def.machine, "q35");
    assert_eq!(def.cdrom, Some(PathBuf::from("/iso/install,1.iso")));
    assert_eq!(def.kernel, Some(PathBuf::from("/boot/vmlinuz")));
    assert_eq!(def.initrd, Some(PathBuf::from("/boot/initrd.img")));
    assert_eq!(def.cmdline.as_deref(), Some("console=ttyS0 quiet"));
    assert_eq!(
        def.disks,
        [
            Disk {
                format: DiskFormat::Qcow2,
                ..disk("/img/a.qcow2", DiskBus::Ide, false)
            },
            disk("/img/b.raw", DiskBus::Virtio, true),
        ]
    );
    assert_eq!(def.interfaces[0].model, "virtio-net-pci");
    assert_eq!(def.interfaces[0].mac.as_deref(), Some("52:54:00:AB:cd:01"));
}

#[test]
fn wrong_values_and_keys_in_device_tables_are_parse_errors() {
    let err = parse_err("name = \"g\"\n[[disk]]\npath = \"/a\"\nformat = \"vmdk\"\n");
    assert_eq!(
        err,
        "guest.toml:4:10: key `format` in [disk]: unknown value `vmdk`, expected `raw` or \
         `qcow2`"
    );
    let err = parse_err("name = \"g\"\n[[disk]]\npath = \"/a\"\nbus = \"scsi\"\n");
    assert!(
        err.contains("unknown value `scsi`, expected `virtio` or `ide`"),
        "{err}"
    );
    let err = parse_err("name = \"g\"\n[[disk]]\npath = \"/a\"\ncache = \"none\"\n");
    assert!(
        err.starts_with("guest.toml:4:1: unknown key `cache` in [disk]"),
        "{err}"
    );
    let err = parse_err("name = \"g\"\n[[disk]]\nformat = \"raw\"\n");
    assert!(err.contains("missing key `path` in [disk]"), "{err}");
    let err = parse_err("name = \"g\"\n[[interface]]\ntype = \"tap\"\n");
    assert!(
        err.contains("unknown value `tap`, expected `user`"),
        "{err}"
    );
    let err = parse_err("name = \"g\"\n[[disk]]\npath = \"/a\"\nreadonly = 2\n");
    assert!(err.contains("key `readonly` in [disk]"), "{err}");
}

#[test]
fn machine_is_a_plain_type_name() {
    for good in ["pc", "q35", "pc-i440fx-10.0", "pc-q35-9.2", "microvm"] {
        let def = DomainDef {
            machine: good.into(),
            ..guest()
        };
        assert_eq!(errors_of(&def), Vec::<String>::new(), "{good}");
    }
    let with = |m: &str| DomainDef {
        machine: m.into(),
        ..guest()
    };
    refused(&with(""), "machine", "is empty");
    refused(&with("pc,accel=kvm"), "machine", "contains ','");
    refused(&with("pc q35"), "machine", "contains ' '");
    refused(&with("help"), "machine", "QEMU would print a list and exit");
    refused(&with("?"), "machine", "contains '?'");
}

#[test]
fn paths_are_absolute_and_may_hold_commas() {
    let ok = DomainDef {
        disks: vec![Disk::new("/img/a,b.img")],
        cdrom: Some("/iso/x,y.iso".into()),
        kernel: Some("/k,1".into()),
        initrd: Some("/i,1".into()),
        ..guest()
    };
    assert_eq!(errors_of(&ok), Vec::<String>::new());
    let rel = DomainDef {
        disks: vec![Disk::new("/ok.img"), Disk::new("img/b.img")],
        ..guest()
    };
    refused(
        &rel,
        "disk[1].path",
        "\"img/b.img\" is relative; give an absolute path",
    );
    refused(
        &DomainDef {
            disks: vec![Disk::new("")],
            ..guest()
        },
        "disk[0].path",
        "is empty",
    );
    refused(
        &DomainDef {
            cdrom: Some("x.iso".into()),
            ..guest()
        },
        "cdrom",
        "is relative",
    );
    refused(
        &DomainDef {
            kernel: Some("/boot/vm\0linuz".into()),
            ..guest()
        },
        "kernel",
        "contains a NUL character",
    );
}

#[test]
fn initrd_and_cmdline_need_a_kernel() {
    let boot = DomainDef {
        kernel: Some("/boot/vmlinuz".into()),
        initrd: Some("/boot/initrd".into()),
        cmdline: Some("console=ttyS0".into()),
        ..guest()
    };
    assert!(boot.validate().is_ok());
    refused(
        &DomainDef {
            kernel: None,
            cmdline: None,
            ..boot.clone()
        },
        "initrd",
        "is set but kernel is not",
    );
    refused(
        &DomainDef {
            kernel: None,
            initrd: None,
            ..boot.clone()
        },
        "cmdline",
        "is set but kernel is not",
    );
    refused(
        &DomainDef {
            cmdline: Some("a\0b".into()),
            ..boot.clone()
        },
        "cmdline",
        "contains a NUL character",
    );
    refused(
        &DomainDef {
            initrd: Some("initrd".into()),
            ..boot
        },
        "initrd",
        "is relative",
    );
}

#[test]
fn ide_disks_cannot_be_readonly() {
    let def = DomainDef {
        disks: vec![disk("/a", DiskBus::Ide, true)],
        ..guest()
    };
    refused(
        &def,
        "disk[0].readonly",
        "QEMU cannot make an IDE hard disk read-only",
    );
    let virtio = DomainDef {
        disks: vec![disk("/a", DiskBus::Virtio, true)],
        ..guest()
    };
    assert!(virtio.validate().is_ok());
}

fn ide_guest(machine: &str, disks: usize, cdrom: bool) -> DomainDef {
    DomainDef {
        machine: machine.into(),
        disks: (0..disks)
            .map(|i| disk(&format!("/d{i}"), DiskBus::Ide, false))
            .collect(),
        cdrom: cdrom.then(|| "/cd.iso".into()),
        ..guest()
    }
}

#[test]
fn ide_room_depends_on_the_machine() {
    assert!(ide_guest("pc", 4, false).validate().is_ok());
    assert!(ide_guest("pc", 3, true).validate().is_ok());
    refused(
        &ide_guest("pc", 4, true),
        "disk[3].bus",
        "no IDE slot left: machine \"pc\" has 4, the cdrom takes one; use bus = \"virtio\"",
    );
    refused(
        &ide_guest("pc-i440fx-10.0", 5, false),
        "disk[4].bus",
        "has 4;",
    );
    assert!(ide_guest("q35", 6, false).validate().is_ok());
    assert!(ide_guest("pc-q35-10.0", 5, true).validate().is_ok());
    refused(
        &ide_guest("q35", 6, true),
        "disk[5].bus",
        "machine \"q35\" has 6",
    );
}

#[test]
fn ide_placement_puts_the_cdrom_where_qemu_does() {
    let slot = |bus, unit| Some(IdeSlot { bus, unit });
    let mut def = ide_guest("pc", 3, true);
    def.disks.insert(1, Disk::new("/virtio"));
    let placed = def.ide_placement();
    assert_eq!(placed.cdrom, slot(1, 0), "hdc, as -cdrom");
    assert_eq!(placed.disks, [slot(0, 0), None, slot(0, 1), slot(1, 1)]);
    let placed = ide_guest("q35", 3, true).ide_placement();
    assert_eq!(placed.cdrom, slot(2, 0));
    assert_eq!(placed.disks, [slot(0, 0), slot(1, 0), slot(3, 0)]);
    let placed = ide_guest("pc", 3, false).ide_placement();
    assert_eq!((placed.cdrom, placed.disks[2]), (None, slot(1, 0)));
    assert_eq!(IdeSlot { bus: 1, unit: 0 }.to_string(), "ide.1 unit 0");
}

#[test]
fn an_image_written_by_one_user_is_not_shared() {
    let two = |a: Disk, b: Disk| DomainDef {
        disks: vec![a, b],
        ..guest()
    };
    refused(
        &two(Disk::new("/a"), Disk::new("/a")),
        "disk[1].path",
        "\"/a\" is also disk[0]; QEMU locks an image",
    );
    refused(
        &two(disk("/a", DiskBus::Virtio, true), Disk::new("/a")),
        "disk[1].path",
        "is also disk[0]",
    );
    assert!(
        two(
            disk("/a", DiskBus::Virtio, true),
            disk("/a", DiskBus::Virtio, true)
        )
        .validate()
        .is_ok()
    );
    let with_cdrom = |d: Disk| DomainDef {
        disks: vec![d],
        cdrom: Some("/a".into()),
        ..guest()
    };
    refused(
        &with_cdrom(Disk::new("/a")),
        "disk[0].path",
        "is also cdrom",
    );
    assert!(
        with_cdrom(disk("/a", DiskBus::Virtio, true))
            .validate()
            .is_ok()
    );
}

fn nics(macs: &[Option<&str>]) -> DomainDef {
    DomainDef {
        interfaces: macs
            .iter()
            .map(|mac| Interface {
                mac: mac.map(str::to_string),
                ..Interface::user()
            })
            .collect(),
        ..guest()
    }
}

#[test]
fn mac_addresses() {
    assert_eq!(
        parse_mac("52:54:00:aB:Cd:0f"),
        Ok([0x52, 0x54, 0, 0xab, 0xcd, 0x0f])
    );
    assert!(
        nics(&[Some("52:54:00:00:00:01"), None, Some("02:00:00:00:00:01")])
            .validate()
            .is_ok()
    );
    for bad in [
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "52-54-00-12-34-56",
        "525400123456",
        "52:54:00:12:34:5g",
        "52:54:00:12:34:+5",
        "52:54:00:12:34:056",
        "",
    ] {
        refused(
            &nics(&[Some(bad)]),
            "interface[0].mac",
            "is not a MAC address",
        );
    }
    refused(
        &nics(&[Some("01:00:5e:00:00:01")]),
        "interface[0].mac",
        "is a multicast address",
    );
    refused(
        &nics(&[Some("00:00:00:00:00:00")]),
        "interface[0].mac",
        "is all zeros",
    );
    refused(
        &nics(&[Some("52:54:00:aa:bb:cc"), None, Some("52:54:00:AA:BB:CC")]),
        "interface[2].mac",
        "\"52:54:00:AA:BB:CC\" is also the MAC of interface[0]",
    );
}

#[test]
fn nic_models_are_plain_device_names() {
    let with = |model: &str| DomainDef {
        interfaces: vec![Interface {
            model: model.into(),
            ..Interface::user()
        }],
        ..guest()
    };
    for good in ["e1000", "virtio-net-pci", "rtl8139", "ne2k_pci"] {
        assert!(with(good).validate().is_ok(), "{good}");
    }
    refused(
        &with("e1000,mac=52:54:00:00:00:01"),
        "interface[0].model",
        "contains ','",
    );
    refused(
        &with("help"),
        "interface[0].model",
        "`qemu-system-x86_64 -device help`",
    );
    refused(&with(""), "interface[0].model", "is empty");
}

#[test]
fn pci_slots_are_limited() {
    let with = |virtio: usize, nics: usize, ide: usize| DomainDef {
        disks: (0..virtio)
            .map(|i| Disk::new(format!("/v{i}")))
            .chain((0..ide).map(|i| disk(&format!("/i{i}"), DiskBus::Ide, false)))
            .collect(),
        interfaces: vec![Interface::user(); nics],
        ..guest()
    };
    assert!(with(20, 9, 4).validate().is_ok());
    refused(
        &with(20, 10, 0),
        "interface",
        "30 virtio disks and interfaces need 30 PCI slots but the machine has 29 free",
    );
}

#[test]
fn errors_in_arrays_point_at_their_entry() {
    let err = parse_err(
        "name = \"g\"\ninitrd = \"/i\"\n\n[[disk]]\npath = \"/a\"\n\n[[disk]]\npath = \"b\"\n\
         bus = \"ide\"\nreadonly = true\n\n[[interface]]\ntype = \"user\"\nmac = \"x\"\n",
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "guest.toml:8:1: disk[1].path: \"b\" is relative; give an absolute path (the \
             daemon does not run in your directory)",
            "guest.toml:10:1: disk[1].readonly: QEMU cannot make an IDE hard disk read-only; \
             use bus = \"virtio\" or readonly = false",
            "guest.toml:2:1: initrd: is set but kernel is not; an initrd is only loaded with a \
             kernel (direct boot): set kernel or remove initrd",
            "guest.toml:14:1: interface[0].mac: \"x\" is not a MAC address; write six hex \
             pairs such as \"52:54:00:12:34:56\"",
        ]
    );
}

fn full_qemu() -> DomainDef {
    DomainDef {
        machine: "pc-q35-10.0".into(),
        memory_mib: 512,
        vcpus: 2,
        graphics: Some(Graphics::vnc()),
        disks: vec![
            Disk {
                format: DiskFormat::Qcow2,
                ..disk("/img/root,1.qcow2", DiskBus::Virtio, false)
            },
            disk("/img/\"data\".raw", DiskBus::Ide, false),
            disk("/img/ro.raw", DiskBus::Virtio, true),
        ],
        cdrom: Some("/iso/install.iso".into()),
        kernel: Some("/boot/vmlinuz".into()),
        initrd: Some("/boot/initrd.img".into()),
        cmdline: Some("console=ttyS0 root=\"/dev/vda\"\tquiet".into()),
        interfaces: vec![
            Interface::user(),
            Interface {
                model: "virtio-net-pci".into(),
                mac: Some("52:54:00:12:34:56".into()),
                ..Interface::user()
            },
        ],
        ..guest()
    }
    .with_uuid(Uuid::from_u128(0x11))
}

#[test]
fn to_toml_keeps_every_qemu_field() {
    let def = full_qemu();
    assert!(def.validate().is_ok(), "{:?}", def.validate());
    let text = def.to_toml(false);
    assert_eq!(
        text,
        "name = \"g\"\n\
         uuid = \"00000000-0000-0000-0000-000000000011\"\n\
         machine = \"pc-q35-10.0\"\n\
         memory_mib = 512\n\
         vcpus = 2\n\
         cdrom = \"/iso/install.iso\"\n\
         kernel = \"/boot/vmlinuz\"\n\
         initrd = \"/boot/initrd.img\"\n\
         cmdline = \"console=ttyS0 root=\\\"/dev/vda\\\"\\tquiet\"\n\
         \n\
         [graphics]\n\
         type = \"vnc\"\n\
         connected = \"disconnect\"\n\
         share_policy = \"allow-exclusive\"\n\
         \n\
         [[disk]]\n\
         path = \"/img/root,1.qcow2\"\n\
         format = \"qcow2\"\n\
         bus = \"virtio\"\n\
         readonly = false\n\
         \n\
         [[disk]]\n\
         path = \"/img/\\\"data\\\".raw\"\n\
         format = \"raw\"\n\
         bus = \"ide\"\n\
         readonly = false\n\
         \n\
         [[disk]]\n\
         path = \"/img/ro.raw\"\n\
         format = \"raw\"\n\
         bus = \"virtio\"\n\
         readonly = true\n\
         \n\
         [[interface]]\n\
         type = \"user\"\n\
         model = \"e1000\"\n\
         \n\
         [[interface]]\n\
         type = \"user\"\n\
         model = \"virtio-net-pci\"\n\
         mac = \"52:54:00:12:34:56\"\n"
    );
    assert_eq!(DomainDef::parse(&text, "dump").expect("round trip"), def);
}

#[test]
fn round_trips_without_graphics_or_optional_fields() {
    let def = DomainDef {
        disks: vec![Disk::new("/a")],
        interfaces: vec![Interface::user()],
        ..guest()
    };
    let text = def.to_toml(true);
    assert!(!text.contains("cdrom") && !text.contains("mac ="), "{text}");
    assert_eq!(DomainDef::parse(&text, "dump").expect("round trip"), def);
}
