//! The device tables of a domain definition that the qemu driver turns into a command
//! line: `[[disk]]` and `[[interface]]`, plus where IDE devices sit on a machine's IDE
//! buses ([`ide_slots`]), which both the rules (is there room?) and the driver (which
//! `bus=`/`unit=`) need, so they cannot disagree.
//!
//! Owns the schema and defaults only; the rules live in `device_rules`, the command line in
//! the daemon's `driver::qemu::argv`.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::values::{boolean, toml_name};

/// The machine type when none is given: QEMU's i440FX PC.
pub const DEFAULT_MACHINE: &str = "pc";
/// The NIC model when none is given: what QEMU itself gives a `pc` machine.
pub const DEFAULT_NIC_MODEL: &str = "e1000";

/// A disk (`[[disk]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Absolute path of the image file (the driver opens it with QEMU's `file` driver,
    /// which takes regular files only). Whether it exists is checked when the guest
    /// starts, not when it is defined.
    pub path: PathBuf,
    /// Image format; never probed from the file (a guest could forge a header).
    #[serde(default)]
    pub format: DiskFormat,
    /// How the guest sees the disk.
    #[serde(default)]
    pub bus: DiskBus,
    /// Open the image read-only (virtio only: QEMU refuses read-only IDE hard disks).
    #[serde(default, deserialize_with = "boolean::de")]
    pub readonly: bool,
}

impl Disk {
    /// A writable raw virtio disk.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Disk {
            path: path.into(),
            format: DiskFormat::default(),
            bus: DiskBus::default(),
            readonly: false,
        }
    }
}

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// The bytes are the disk.
    #[default]
    Raw,
    /// QEMU copy-on-write v2.
    Qcow2,
}

/// Disk buses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// A virtio-blk PCI device.
    #[default]
    Virtio,
    /// An IDE hard disk on the machine's built-in controller.
    Ide,
}

/// A network interface (`[[interface]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// The host side; only `"user"` (QEMU's user-mode network stack, no privileges needed).
    pub r#type: InterfaceType,
    /// The QEMU NIC device, e.g. `"e1000"` or `"virtio-net-pci"`.
    #[serde(default = "default_nic_model")]
    pub model: String,
    /// The guest's MAC address (`52:54:00:xx:xx:xx`); unset means one derived from the
    /// guest's UUID, stable across starts.
    #[serde(default)]
    pub mac: Option<String>,
}

impl Interface {
    /// A user-mode interface with the default model and a derived MAC.
    pub fn user() -> Self {
        Interface {
            r#type: InterfaceType::User,
            model: default_nic_model(),
            mac: None,
        }
    }
}

fn default_nic_model() -> String {
    DEFAULT_NIC_MODEL.to_string()
}

/// Host sides of a network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceType {
    /// QEMU's user-mode (SLIRP) networking.
    User,
}

toml_name! {
    DiskFormat { Raw => "raw", Qcow2 => "qcow2" }
    DiskBus { Virtio => "virtio", Ide => "ide" }
    InterfaceType { User => "user" }
}

/// A place on an IDE bus: QEMU's `bus=ide.<bus>,unit=<unit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdeSlot {
    /// The bus number (`ide.N`).
    pub bus: u8,
    /// Master (0) or slave (1).
    pub unit: u8,
}

const PIIX_SLOTS: [IdeSlot; 4] = [
    IdeSlot { bus: 0, unit: 0 },
    IdeSlot { bus: 0, unit: 1 },
    IdeSlot { bus: 1, unit: 0 },
    IdeSlot { bus: 1, unit: 1 },
];
const AHCI_SLOTS: [IdeSlot; 6] = [
    IdeSlot { bus: 0, unit: 0 },
    IdeSlot { bus: 1, unit: 0 },
    IdeSlot { bus: 2, unit: 0 },
    IdeSlot { bus: 3, unit: 0 },
    IdeSlot { bus: 4, unit: 0 },
    IdeSlot { bus: 5, unit: 0 },
];

/// The slot the CD-ROM takes: index 2, where QEMU's own `-cdrom` puts it (`hdc` on a PC).
pub const CDROM_SLOT_INDEX: usize = 2;

/// The IDE slots of `machine`, in QEMU's drive index order: the q35 family has six AHCI
/// ports with one device each, every other machine is taken to have the PIIX controller's
/// two buses with two devices each (QEMU refuses IDE devices at start on machines that
/// have neither). QEMU will not place a third IDE device by itself, so the driver always
/// names the slot.
pub fn ide_slots(machine: &str) -> &'static [IdeSlot] {
    if machine == "q35" || machine.starts_with("pc-q35-") {
        &AHCI_SLOTS
    } else {
        &PIIX_SLOTS
    }
}

impl fmt::Display for IdeSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ide.{} unit {}", self.bus, self.unit)
    }
}

/// Where the IDE devices of a definition go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdePlacement {
    /// One entry per disk, in order: its slot, or `None` for a virtio disk or an IDE disk
    /// that does not fit (which validation refuses).
    pub disks: Vec<Option<IdeSlot>>,
    /// The CD-ROM's slot, when there is one.
    pub cdrom: Option<IdeSlot>,
}

/// Places the CD-ROM at [`CDROM_SLOT_INDEX`] and the IDE disks in the other slots, in order.
pub fn place_ide(machine: &str, disks: &[Disk], cdrom: bool) -> IdePlacement {
    let slots = ide_slots(machine);
    let cdrom_slot = cdrom.then(|| slots[CDROM_SLOT_INDEX]);
    let mut free = slots
        .iter()
        .enumerate()
        .filter(|(i, _)| !(cdrom && *i == CDROM_SLOT_INDEX))
        .map(|(_, slot)| *slot);
    let disks = disks
        .iter()
        .map(|d| match d.bus {
            DiskBus::Ide => free.next(),
            DiskBus::Virtio => None,
        })
        .collect();
    IdePlacement {
        disks,
        cdrom: cdrom_slot,
    }
}
