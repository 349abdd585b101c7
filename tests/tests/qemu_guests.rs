//! The qemu driver end to end: real `qemu-system-x86_64` guests under TCG, started,
//! supervised and stopped by the real daemon, their consoles captured through the gateway
//! by gtk-vnc's gvnccapture. A disk-less guest (SeaBIOS's "No bootable device" screen,
//! 720x400, which ignores the ACPI power button) serves the console and lifecycle tests;
//! a tiny Linux guest that powers off on the power button shows graceful shutdown and
//! reboot for real. The daemon is stopped, killed and restarted under running guests,
//! which it must find again (same QEMU pid, same id, working console); QEMU killed from
//! outside must be noticed. Every test checks that no QEMU process and no run directory
//! is left behind.
//!
//! Each test's daemon autoports from its own range of ports; every wait is a condition
//! with a deadline.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, time::Duration};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use vmgate_tests::{
    TestDaemon,
    console::{ConsolePki, gvnc_tools, tls_console_config},
    events::EventStream,
    guest_image::bootable_guest,
    is_qemu, require_tool,
    vnc::{GvncHome, display_port, gvnccapture, gvnccapture_as, png_size},
    wait_until,
};

/// How long QEMU may take to notice, stop or start something (TCG on a loaded host).
const GUEST_DEADLINE: Duration = Duration::from_secs(30);

/// How long the bootable guest may take to boot and honour the power button.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

/// SeaBIOS's screen when there is nothing to boot.
const SEABIOS_SCREEN: (u32, u32) = (720, 400);

fn qemu_present() -> bool {
    require_tool("qemu-system-x86_64", "qemu-system-x86")
}

/// A qemu-driver daemon autoporting consoles from this test's own range (`slot` unique per
/// test) with `extra` appended (further sections).
fn daemon(slot: u16, extra: &str) -> TestDaemon {
    let min = 21_000 + slot * 20;
    TestDaemon::start_qemu(&format!(
        "\n[vnc]\nremote_display_port_min = {min}\nremote_display_port_max = {}\n{extra}",
        min + 19
    ))
}

/// Defines `name` with `body` (top-level keys first, then tables).
fn define(d: &TestDaemon, name: &str, body: &str) {
    let path = d.file(
        &format!("{name}.toml"),
        &format!("name = \"{name}\"\n{body}"),
    );
    d.vmgate(&["define", path.to_str().expect("utf-8 path")])
        .ok();
}

/// A disk-less guest with a console.
fn diskless(d: &TestDaemon, name: &str, graphics: &str) {
    define(
        d,
        name,
        &format!("memory_mib = 64\n[graphics]\ntype = \"vnc\"\n{graphics}\n"),
    );
}

fn domstate(d: &TestDaemon, name: &str) -> String {
    d.vmgate(&["domstate", "--reason", name])
        .ok()
        .trim()
        .to_string()
}

#[track_caller]
fn wait_state(d: &TestDaemon, name: &str, want: &str, deadline: Duration) {
    let mut last = String::new();
    let reached = wait_until(deadline, || {
        last = domstate(d, name);
        last == want
    });
    assert!(
        reached,
        "{name} never became {want:?} (last {last:?}):\n{}",
        d.log()
    );
}

/// The pid QEMU wrote for `name`.
fn qemu_pid(d: &TestDaemon, name: &str) -> u32 {
    let text = fs::read_to_string(d.qemu_run_dir(name).join("qemu.pid")).expect("pidfile");
    text.trim().parse().expect("pid")
}

/// Nothing of a stopped guest remains: no QEMU process, no run directory.
#[track_caller]
fn assert_nothing_left(d: &TestDaemon, name: &str, pid: u32) {
    assert!(
        wait_until(GUEST_DEADLINE, || !is_qemu(pid)),
        "QEMU {pid} of {name} still runs"
    );
    assert!(
        !d.qemu_run_dir(name).exists(),
        "the run directory of {name} is left behind"
    );
}

/// Captures `target` with gvnccapture (as `home`'s user when given) until the frame is
/// SeaBIOS's screen: right after start the guest has not set a video mode yet.
#[track_caller]
fn capture_seabios(target: &str, png: &Path, password: Option<&str>, home: Option<&GvncHome>) {
    let mut transcript = String::new();
    let shown = wait_until(GUEST_DEADLINE, || {
        let _ = fs::remove_file(png);
        let cap = match home {
            Some(home) => gvnccapture_as(target, png, password, home),
            None => gvnccapture(target, png, password),
        };
        transcript = cap.transcript;
        cap.ok && png_size(png) == Some(SEABIOS_SCREEN)
    });
    assert!(
        shown,
        "never captured SeaBIOS's screen: {:?}\n{transcript}",
        png_size(png)
    );
}

/// The first field of `dominfo`'s line `label:`.
fn info_field(info: &str, label: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|rest| rest.trim_start_matches(':').trim().to_string())
        .unwrap_or_else(|| panic!("no {label} in dominfo:\n{info}"))
}

#[test]
fn a_diskless_guest_shows_its_screen_and_obeys_every_operation() {
    if !(qemu_present() && gvnc_tools().is_some()) {
        return;
    }
    let d = daemon(0, "");
    diskless(&d, "g", "");
    d.vmgate(&["start", "g"]).ok();
    let pid = qemu_pid(&d, "g");
    let mode = fs::metadata(d.qemu_run_dir("g"))
        .expect("run dir")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "only the daemon and QEMU reach the sockets"
    );

    let png = d.dir().join("g.png");
    let port = display_port(&d, "g");
    capture_seabios(&format!("127.0.0.1:{}", port - 5900), &png, None, None);

    let info = d.vmgate(&["dominfo", "g"]).ok().to_string();
    assert_eq!(info_field(&info, "State"), "running");
    assert_eq!(info_field(&info, "Used memory"), "65536 KiB", "from QEMU");
    let cpu: f64 = info_field(&info, "CPU time")
        .trim_end_matches('s')
        .parse()
        .expect("CPU time");
    assert!(cpu > 0.0, "QEMU has used CPU time:\n{info}");

    d.vmgate(&["suspend", "g"]).ok();
    assert_eq!(domstate(&d, "g"), "paused (user)");
    d.vmgate(&["resume", "g"]).ok();
    assert_eq!(domstate(&d, "g"), "running (unpaused)");
    d.vmgate(&["reset", "g"]).ok();
    assert!(domstate(&d, "g").starts_with("running"));

    // SeaBIOS ignores the power button: a plain wait times out, --force destroys.
    let err = d
        .vmgate(&["shutdown", "g", "--wait", "--timeout", "1"])
        .err()
        .to_string();
    assert!(err.contains("did not power off within 1 s"), "{err}");
    assert!(domstate(&d, "g").starts_with("running"));
    let out = d
        .vmgate(&["shutdown", "g", "--wait", "--timeout", "1", "--force"])
        .ok()
        .to_string();
    assert!(out.contains("was destroyed"), "{out}");
    assert_eq!(domstate(&d, "g"), "shut off (destroyed)");
    assert_nothing_left(&d, "g", pid);

    d.vmgate(&["start", "g"]).ok();
    let second = qemu_pid(&d, "g");
    assert_ne!(second, pid, "a new QEMU for a new run");
    d.vmgate(&["destroy", "g"]).ok();
    assert_eq!(domstate(&d, "g"), "shut off (destroyed)");
    assert_nothing_left(&d, "g", second);
}

#[test]
fn vencrypt_and_the_vnc_password_guard_a_real_guest() {
    let Some(nss_wrapper) = gvnc_tools() else {
        return;
    };
    if !qemu_present() {
        return;
    }
    let Some(p) = ConsolePki::new() else { return };
    let d = TestDaemon::start_qemu(&tls_console_config(21_400, &p.cert_dir, ""));
    const PASSWORD: &str = "Qx7!pZ2w";
    diskless(&d, "g", &format!("passwd = \"{PASSWORD}\""));
    d.vmgate(&["start", "g"]).ok();
    let pid = qemu_pid(&d, "g");
    let target = format!("127.0.0.1:{}", display_port(&d, "g") - 5900);
    let home = GvncHome::new(&nss_wrapper, &p.ca.cert, Some(&p.client));
    let png = d.dir().join("g.png");

    capture_seabios(&target, &png, Some(PASSWORD), Some(&home));
    fs::remove_file(&png).expect("remove");
    let cap = gvnccapture_as(&target, &png, Some("wrong-pw"), &home);
    assert!(!cap.ok && !png.exists(), "a wrong password gets no frame");
    let no_cert = GvncHome::new(&nss_wrapper, &p.ca.cert, None);
    let cap = gvnccapture_as(&target, &png, Some(PASSWORD), &no_cert);
    assert!(!cap.ok && !png.exists(), "no client certificate, no frame");

    d.vmgate(&["destroy", "g"]).ok();
    assert_nothing_left(&d, "g", pid);
}

#[test]
fn a_stopped_or_killed_daemon_finds_its_guests_again() {
    if !(qemu_present() && gvnc_tools().is_some()) {
        return;
    }
    let mut d = daemon(1, "");
    diskless(&d, "g", "");
    diskless(&d, "h", "");
    d.vmgate(&["start", "g"]).ok();
    d.vmgate(&["start", "h"]).ok();
    let pid = qemu_pid(&d, "g");
    let list_before = d.vmgate(&["list"]).ok().to_string();

    // A daemon that stops leaves its guests running, and the next one re-attaches.
    assert!(d.stop(), "vmgated stops cleanly:\n{}", d.log());
    assert!(is_qemu(pid), "QEMU outlives the daemon");
    d.restart();
    assert_eq!(
        d.vmgate(&["list"]).ok(),
        list_before,
        "same ids, same states"
    );
    assert_eq!(qemu_pid(&d, "g"), pid);
    let png = d.dir().join("g.png");
    let port = display_port(&d, "g");
    let target = format!("127.0.0.1:{}", port - 5900);
    capture_seabios(&target, &png, None, None);

    // Killed, with g paused and h's QEMU killed while no daemon watched.
    d.vmgate(&["suspend", "g"]).ok();
    let h_pid = qemu_pid(&d, "h");
    d.kill9();
    kill(Pid::from_raw(h_pid as i32), Signal::SIGKILL).expect("kill h's QEMU");
    assert!(wait_until(GUEST_DEADLINE, || !is_qemu(h_pid)));
    d.restart();
    assert_eq!(domstate(&d, "g"), "paused (user)");
    assert_eq!(qemu_pid(&d, "g"), pid, "the same QEMU");
    assert_eq!(domstate(&d, "h"), "shut off (crashed)");
    assert!(!d.qemu_run_dir("h").exists());
    d.vmgate(&["resume", "g"]).ok();
    assert_eq!(
        display_port(&d, "g"),
        port,
        "the console comes back on its port"
    );
    capture_seabios(&target, &png, None, None);

    // QEMU killed from outside under a watching daemon is noticed as a crash.
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill g's QEMU");
    wait_state(&d, "g", "shut off (crashed)", GUEST_DEADLINE);
    assert_nothing_left(&d, "g", pid);
    assert!(d.log().contains("QEMU ended unexpectedly"), "logged");
}

#[test]
fn start_errors_name_the_problem_and_leave_nothing_behind() {
    if !qemu_present() {
        return;
    }
    let d = daemon(2, "");
    define(
        &d,
        "nodisk",
        "memory_mib = 64\n[[disk]]\npath = \"/nonexistent/root.qcow2\"\nformat = \"qcow2\"\n",
    );
    let err = d.vmgate(&["start", "nodisk"]).err().to_string();
    assert!(
        err.contains("disk[0].path") && err.contains("/nonexistent/root.qcow2"),
        "{err}"
    );
    assert!(domstate(&d, "nodisk").starts_with("shut off"));
    assert!(!d.qemu_run_dir("nodisk").exists());

    // A file QEMU itself refuses: its own words reach the operator.
    let raw = d.file("raw.img", &"\0".repeat(65_536));
    define(
        &d,
        "badformat",
        &format!(
            "memory_mib = 64\n[[disk]]\npath = \"{}\"\nformat = \"qcow2\"\n",
            raw.display()
        ),
    );
    let err = d.vmgate(&["start", "badformat"]).err().to_string();
    assert!(err.contains("qcow2"), "QEMU's complaint is quoted: {err}");
    assert!(domstate(&d, "badformat").starts_with("shut off"));
    assert!(!d.qemu_run_dir("badformat").exists());
    assert!(d.qemu_pids().is_empty());

    let missing = daemon(
        3,
        "\n[qemu]\nemulator = \"/nonexistent/qemu-system-x86_64\"\n",
    );
    diskless(&missing, "g", "");
    let err = missing.vmgate(&["start", "g"]).err().to_string();
    assert!(
        err.contains("/nonexistent/qemu-system-x86_64") && err.contains("qemu-system-x86"),
        "{err}"
    );
    assert!(!missing.qemu_run_dir("g").exists());
}

#[test]
fn the_bootable_guest_reboots_and_powers_off_when_asked() {
    if !qemu_present() {
        return;
    }
    let guest = match bootable_guest() {
        Ok(guest) => guest,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "{e}");
            vmgate_tests::skip(&format!("no bootable test guest: {e}"));
            return;
        }
    };
    let d = daemon(4, "");
    define(
        &d,
        "linux",
        &format!(
            "memory_mib = 128\nkernel = \"{}\"\ninitrd = \"{}\"\ncmdline = \"{}\"\n",
            guest.kernel.display(),
            guest.initrd.display(),
            guest.cmdline
        ),
    );
    d.vmgate(&["start", "linux"]).ok();
    let pid = qemu_pid(&d, "linux");
    let mut events = EventStream::open(&d, "linux");

    // The guest honours the button once its init runs; press until it does.
    let rebooted = wait_until(BOOT_DEADLINE, || {
        d.vmgate(&["reboot", "linux"]).ok();
        events
            .find(Duration::from_secs(2), |e| e.family == "reboot")
            .is_some()
    });
    assert!(rebooted, "the guest never rebooted:\n{}", d.log());
    assert_eq!(
        qemu_pid(&d, "linux"),
        pid,
        "a reboot keeps the QEMU process"
    );
    assert_eq!(domstate(&d, "linux"), "running (booted)");

    let powered_off = wait_until(BOOT_DEADLINE, || {
        d.vmgate(&["shutdown", "linux"]).ok();
        wait_until(Duration::from_secs(2), || {
            domstate(&d, "linux").starts_with("shut off")
        })
    });
    assert!(powered_off, "the guest never powered off:\n{}", d.log());
    assert_eq!(domstate(&d, "linux"), "shut off (shutdown)");
    assert_nothing_left(&d, "linux", pid);
    let stopped = events
        .find(GUEST_DEADLINE, |e| e.event == "Stopped")
        .expect("a stop event");
    assert_eq!(stopped.detail, "Shutdown");
    drop(events);

    // Powered off while no daemon watched: `-no-shutdown` keeps QEMU, stopped; the next
    // daemon finds it so, lets it exit, and reports a shutdown.
    let mut d = d;
    d.vmgate(&["start", "linux"]).ok();
    let pid = qemu_pid(&d, "linux");
    d.kill9();
    power_off_over_qmp(&d.qemu_run_dir("linux").join("qmp.sock"));
    assert!(
        is_qemu(pid),
        "QEMU waits, stopped, after the guest powered off"
    );
    d.restart();
    assert_eq!(domstate(&d, "linux"), "shut off (shutdown)");
    assert_nothing_left(&d, "linux", pid);
}

/// Presses the power button over QMP until QEMU reports the guest's own shutdown.
fn power_off_over_qmp(socket: &Path) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("QMP socket");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("greeting");
    writer
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .expect("negotiate");
    let shut_down = wait_until(BOOT_DEADLINE, || {
        let _ = writer.write_all(b"{\"execute\":\"system_powerdown\"}\n");
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return false,
                Ok(_) if line.contains("\"SHUTDOWN\"") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    });
    assert!(shut_down, "the guest never powered off over QMP");
}

#[test]
fn as_root_qemu_runs_as_the_configured_account() {
    if !(qemu_present() && gvnc_tools().is_some()) {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        vmgate_tests::skip("running QEMU as another account needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd lookup")
        .expect("the nobody account");
    let d = daemon(5, "\n[qemu]\nuser = \"nobody\"\n");
    diskless(&d, "g", "");
    d.vmgate(&["start", "g"]).ok();
    let pid = qemu_pid(&d, "g");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("uid"))
        .collect();
    assert!(uids.iter().all(|&u| u == nobody.uid.as_raw()), "{uid_line}");
    let run_dir = fs::metadata(d.qemu_run_dir("g")).expect("run dir");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (run_dir.uid(), run_dir.mode() & 0o777),
        (nobody.uid.as_raw(), 0o700)
    );

    let png = d.dir().join("g.png");
    let target = format!("127.0.0.1:{}", display_port(&d, "g") - 5900);
    capture_seabios(&target, &png, None, None);
    d.vmgate(&["destroy", "g"]).ok();
    assert_nothing_left(&d, "g", pid);
}
