//! The rules for what the qemu driver puts on QEMU's command line: the machine type,
//! `[[disk]]`, `cdrom`, direct kernel boot and `[[interface]]`.
//!
//! Every rule here is one QEMU would enforce by refusing to start (or, worse, by doing
//! something else: `-machine help` prints a list and exits 0), checked at define time so
//! the user hears about it with the field's name. The checks are syntactic only: whether a
//! file exists, is readable or holds the format it claims is a question for start time,
//! since files come and go between `define` and `start`. Commas in paths are allowed: the
//! driver escapes them as QEMU's option syntax requires (`,,`).

use std::collections::HashMap;
use std::path::Path;

use super::DomainDef;
use super::devices::{DiskBus, ide_slots, place_ide};

/// PCI slots left for virtio disks and NICs on `pc` and `q35` with `-nodefaults -vga std`
/// (32 minus the host bridge, the chipset's function block and the VGA); QEMU refuses the
/// next device with "PCI: no slot/function available". Adjust when the driver adds PCI
/// devices of its own.
pub const MAX_PCI_DEVICES: usize = 29;

/// Every broken rule, reported through `error(field, message)`.
pub(super) fn check(def: &DomainDef, error: &mut impl FnMut(&str, String)) {
    if let Err(message) = check_device_name(&def.machine, "machine type", "pc") {
        error("machine", message);
    }
    check_disks(def, error);
    if let Some(cdrom) = &def.cdrom
        && let Err(message) = check_path(cdrom)
    {
        error("cdrom", message);
    }
    check_boot(def, error);
    check_interfaces(def, error);
    let pci = def
        .disks
        .iter()
        .filter(|d| d.bus == DiskBus::Virtio)
        .count()
        + def.interfaces.len();
    if pci > MAX_PCI_DEVICES {
        error(
            "interface",
            format!(
                "{pci} virtio disks and interfaces need {pci} PCI slots but the machine has \
                 {MAX_PCI_DEVICES} free; remove some, or put disks on bus = \"ide\""
            ),
        );
    }
}

fn check_disks(def: &DomainDef, error: &mut impl FnMut(&str, String)) {
    let placement = place_ide(&def.machine, &def.disks, def.cdrom.is_some());
    // path -> (field that uses it, whether that use is writable)
    let mut seen: HashMap<&Path, (String, bool)> = HashMap::new();
    if let Some(cdrom) = &def.cdrom {
        seen.insert(cdrom, ("cdrom".to_string(), false));
    }
    for (i, disk) in def.disks.iter().enumerate() {
        let field = |name: &str| format!("disk[{i}].{name}");
        if let Err(message) = check_path(&disk.path) {
            error(&field("path"), message);
        }
        let writable = !disk.readonly;
        match seen.get(disk.path.as_path()) {
            Some((other, other_writable)) if writable || *other_writable => error(
                &field("path"),
                format!(
                    "{:?} is also {other}; QEMU locks an image that one user writes to, so \
                     use each image once or make every use readonly = true",
                    disk.path
                ),
            ),
            Some(_) => {}
            None => {
                seen.insert(&disk.path, (format!("disk[{i}]"), writable));
            }
        }
        if disk.bus == DiskBus::Ide {
            if disk.readonly {
                error(
                    &field("readonly"),
                    "QEMU cannot make an IDE hard disk read-only; use bus = \"virtio\" or \
                     readonly = false"
                        .to_string(),
                );
            }
            if placement.disks[i].is_none() {
                let slots = ide_slots(&def.machine).len();
                let cdrom = if def.cdrom.is_some() {
                    ", the cdrom takes one"
                } else {
                    ""
                };
                error(
                    &field("bus"),
                    format!(
                        "no IDE slot left: machine {:?} has {slots}{cdrom}; use bus = \"virtio\"",
                        def.machine
                    ),
                );
            }
        }
    }
}

fn check_boot(def: &DomainDef, error: &mut impl FnMut(&str, String)) {
    if let Some(kernel) = &def.kernel
        && let Err(message) = check_path(kernel)
    {
        error("kernel", message);
    }
    if let Some(initrd) = &def.initrd {
        if let Err(message) = check_path(initrd) {
            error("initrd", message);
        }
        if def.kernel.is_none() {
            error(
                "initrd",
                "is set but kernel is not; an initrd is only loaded with a kernel (direct \
                 boot): set kernel or remove initrd"
                    .to_string(),
            );
        }
    }
    if let Some(cmdline) = &def.cmdline {
        if cmdline.contains('\0') {
            error("cmdline", "contains a NUL character".to_string());
        }
        if def.kernel.is_none() {
            error(
                "cmdline",
                "is set but kernel is not; a command line is only passed with a kernel \
                 (direct boot): set kernel or remove cmdline"
                    .to_string(),
            );
        }
    }
}

fn check_interfaces(def: &DomainDef, error: &mut impl FnMut(&str, String)) {
    let mut macs: HashMap<[u8; 6], usize> = HashMap::new();
    for (i, nic) in def.interfaces.iter().enumerate() {
        if let Err(message) = check_device_name(&nic.model, "device model", "virtio-net-pci") {
            error(&format!("interface[{i}].model"), message);
        }
        let Some(mac) = &nic.mac else { continue };
        match parse_mac(mac) {
            Err(message) => error(&format!("interface[{i}].mac"), message),
            Ok(bytes) => {
                if let Some(first) = macs.get(&bytes) {
                    error(
                        &format!("interface[{i}].mac"),
                        format!("{mac:?} is also the MAC of interface[{first}]; give each its own"),
                    );
                } else {
                    macs.insert(bytes, i);
                }
            }
        }
    }
}

/// A MAC address as `xx:xx:xx:xx:xx:xx` (hex, either case), unicast and not all zeros.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let syntax = || {
        format!("{text:?} is not a MAC address; write six hex pairs such as \"52:54:00:12:34:56\"")
    };
    let mut bytes = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut bytes {
        let part = parts.next().ok_or_else(syntax)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(syntax());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
    }
    if parts.next().is_some() {
        return Err(syntax());
    }
    if bytes[0] & 1 == 1 {
        return Err(format!(
            "{text:?} is a multicast address (the first byte is odd); a NIC needs a unicast \
             one such as \"52:54:00:12:34:56\""
        ));
    }
    if bytes == [0; 6] {
        return Err(format!("{text:?} is all zeros; give a real address"));
    }
    Ok(bytes)
}

/// An absolute path without NUL (it becomes a command line argument).
fn check_path(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("is empty; give an absolute path".to_string());
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(format!("{path:?} contains a NUL character"));
    }
    if path.to_str().is_none() {
        return Err(format!(
            "{path:?} is not UTF-8; a definition is TOML text, which holds only UTF-8"
        ));
    }
    if !path.is_absolute() {
        return Err(format!(
            "{path:?} is relative; give an absolute path (the daemon does not run in your \
             directory)"
        ));
    }
    Ok(())
}

/// A QEMU type name (machine or device): `[A-Za-z0-9_.-]`, so nothing can be appended as an
/// option, and not `help`, which makes QEMU print a list and exit as if the guest had run.
fn check_device_name(name: &str, what: &str, example: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("is empty; give a {what} such as {example:?}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{name:?} contains {bad:?}; a {what} has only A-Z, a-z, 0-9, '_', '.' and '-'"
        ));
    }
    if name == "help" {
        return Err(format!(
            "\"help\" is not a {what} (QEMU would print a list and exit); run \
             `qemu-system-x86_64 -{} help` to see them",
            if what == "machine type" {
                "machine"
            } else {
                "device"
            }
        ));
    }
    Ok(())
}
