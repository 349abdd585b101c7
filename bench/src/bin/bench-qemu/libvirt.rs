//! The libvirtd peer: libvirtd 9 with its qemu driver, run privileged as a child of the
//! benchmark in a private mount namespace (overlays on /etc, /var and /run whose upper
//! layers are in a temporary directory), driven with `virsh` and, for the API figures,
//! python3-libvirt. Nothing on the host changes; dropping it kills libvirtd, its guests and
//! the namespace's holder.

use std::{
    fs,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, ensure};
use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, geteuid},
};
use tempfile::TempDir;
use vmgate_bench::Sample;
use vmgate_tests::{
    command_line, is_qemu, on_path,
    peer::{EMULATOR, free_port},
    wait_until,
};

use crate::{API_FOR, DEADLINE, Manager, PEER_PORTS, checked, read_pid, sample};

/// `9.0.0` from `libvirtd --version`, when installed.
pub fn libvirt_version() -> Option<String> {
    on_path("libvirtd").then_some(())?;
    command_line("libvirtd", &["--version"])?
        .split_whitespace()
        .last()
        .map(str::to_owned)
}

/// libvirtd 9 with its qemu driver, privileged, in a private mount namespace (see the
/// module doc); killed with its guests and the namespace's holder when dropped.
pub struct Libvirt {
    dir: TempDir,
    holder: Option<Child>,
    daemon: Option<Child>,
    /// The console ports given to the guests defined so far.
    ports: Vec<u16>,
}

/// Overlay upper and work directories, and the sockets' directory, in the temp dir.
const LIBVIRT_DIRS: [&str; 7] = [
    "etc-up", "etc-work", "var-up", "var-work", "run-up", "run-work", "sock",
];

/// Run by `sh` in the new mount namespace (`{W}` is the temp dir): the overlays, qemu.conf,
/// the account libvirtd's qemu driver looks up at start even when told to run QEMU as root,
/// then a `sleep` that holds the namespace.
const LIBVIRT_SETUP: &str = "set -e
for d in etc var run; do
  mount -t overlay overlay -o lowerdir=/$d,upperdir={W}/$d-up,workdir={W}/$d-work /$d
done
mkdir -p /etc/libvirt
cp {W}/qemu.conf /etc/libvirt/qemu.conf
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd --system --gid libvirt-qemu \\
  --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
touch {W}/ready
exec sleep infinity
";

const QEMU_CONF: &str = "user = \"root\"\ngroup = \"root\"\nsecurity_driver = \"none\"
namespaces = [ ]\ncgroup_controllers = [ ]\nstdio_handler = \"file\"\nvnc_listen = \"127.0.0.1\"\n";

impl Libvirt {
    pub fn start() -> anyhow::Result<Libvirt> {
        ensure!(
            geteuid().is_root(),
            "needs root: its qemu driver runs privileged here"
        );
        for (tool, package) in [
            ("libvirtd", "libvirt-daemon-driver-qemu"),
            ("virsh", "libvirt-clients"),
            ("unshare", "util-linux"),
            ("nsenter", "util-linux"),
        ] {
            ensure!(on_path(tool), "{tool} is not on PATH (Debian {package})");
        }
        let dir = tempfile::Builder::new().prefix("bench-libvirt").tempdir()?;
        let w = dir.path();
        for sub in LIBVIRT_DIRS {
            fs::create_dir(w.join(sub))?;
        }
        let sock = w.join("sock").display().to_string();
        fs::write(
            w.join("libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{sock}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n"
            ),
        )?;
        fs::write(w.join("qemu.conf"), QEMU_CONF)?;
        let setup = LIBVIRT_SETUP.replace("{W}", &w.display().to_string());
        fs::write(w.join("setup.sh"), setup)?;
        let log = fs::File::create(w.join("holder.log"))?;
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh"])
            .arg(w.join("setup.sh"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("unshare")?;
        let mut lv = Libvirt {
            dir,
            holder: Some(holder),
            daemon: None,
            ports: Vec::new(),
        };
        let end = Instant::now() + DEADLINE;
        while !lv.dir.path().join("ready").exists() {
            let holder = lv.holder.as_mut().context("no holder")?;
            let exited = holder.try_wait().ok().flatten().is_some();
            ensure!(
                !exited && Instant::now() < end,
                "the private mount namespace was not set up: {}",
                fs::read_to_string(lv.dir.path().join("holder.log"))
                    .unwrap_or_default()
                    .trim()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        lv.spawn_daemon()?;
        Ok(lv)
    }

    fn uri(&self) -> String {
        let sock = self.dir.path().join("sock/libvirt-sock");
        format!("qemu+unix:///system?socket={}", sock.display())
    }

    /// Where libvirtd keeps its guests' pidfiles (/run/libvirt/qemu in its namespace).
    fn pid_dir(&self) -> String {
        self.dir
            .path()
            .join("run-up/libvirt/qemu")
            .display()
            .to_string()
    }

    /// Starts libvirtd in the namespace; returns once its socket accepts connections.
    fn spawn_daemon(&mut self) -> anyhow::Result<()> {
        let w = self.dir.path();
        let holder = self.holder.as_ref().context("no namespace")?.id();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.join("libvirtd.log"))?;
        // nsenter execs libvirtd: the child's pid is libvirtd's.
        let child = Command::new("nsenter")
            .args([
                "-t",
                &holder.to_string(),
                "-m",
                "--",
                "libvirtd",
                "--config",
            ])
            .arg(w.join("libvirtd.conf"))
            .arg("--pid-file")
            .arg(w.join("libvirtd.pid"))
            .env_remove("LIBVIRT_DRIVER_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("nsenter libvirtd")?;
        let child = self.daemon.insert(child);
        let sock = w.join("sock/libvirt-sock");
        let end = Instant::now() + DEADLINE;
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            let exited = child.try_wait().ok().flatten().is_some();
            ensure!(
                !exited && Instant::now() < end,
                "libvirtd did not come up; see {}",
                w.join("libvirtd.log").display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn virsh(&self) -> Command {
        let mut cmd = Command::new("virsh");
        cmd.arg("-c")
            .arg(self.uri())
            .env_remove("LIBVIRT_DEFAULT_URI");
        cmd
    }
}

impl Manager for Libvirt {
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .virsh()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("virsh")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let what = format!("virsh {}", args.join(" "));
        checked(
            &what,
            out.status.success(),
            stdout,
            &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn cli_stdin(&self, script: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = self
            .virsh()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().context("virsh's stdin")?;
        stdin.write_all(script.as_bytes())?;
        drop(stdin);
        ensure!(child.wait()?.success(), "virsh's stdin mode failed");
        Ok(())
    }

    /// Like vmgated's guest: its console on a fixed port of [`PEER_PORTS`].
    fn define(&mut self, name: &str) -> anyhow::Result<()> {
        let port = free_port(PEER_PORTS, &self.ports)?;
        self.ports.push(port);
        let emulator = command_line("sh", &["-c", &format!("command -v {EMULATOR}")])
            .filter(|p| !p.is_empty())
            .context("the emulator's path")?;
        let xml = format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>\
             <devices><emulator>{emulator}</emulator>\
             <graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'/>\
             <video><model type='vga'/></video><controller type='usb' model='none'/>\
             <memballoon model='none'/></devices></domain>"
        );
        let path = self.dir.path().join(format!("{name}.xml"));
        fs::write(&path, xml)?;
        self.cli(&["define", &path.to_string_lossy()]).map(drop)
    }

    fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    fn qemu_pids(&self) -> Vec<u32> {
        let entries = fs::read_dir(self.pid_dir()).into_iter().flatten();
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pid"))
            .filter_map(|p| read_pid(&p))
            .filter(|&pid| is_qemu(pid))
            .collect()
    }

    fn restart(&mut self, signal: Signal) -> anyhow::Result<Instant> {
        let mut child = self.daemon.take().context("libvirtd is not running")?;
        kill(Pid::from_raw(child.id() as i32), signal)?;
        let end = Instant::now() + DEADLINE;
        while child.try_wait()?.is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("libvirtd did not exit on {signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let spawned = Instant::now();
        self.spawn_daemon()?;
        Ok(spawned)
    }

    fn list_rates(&self) -> anyhow::Result<Vec<Sample>> {
        let budget = API_FOR.as_secs_f64().to_string();
        let lines = python_libvirt(&["list", &self.uri(), &budget])?;
        lines
            .iter()
            .map(|line| {
                let (wall, latencies) = line.split_first().context("no figures")?;
                let latencies = latencies.iter().map(|&s| Duration::from_secs_f64(s));
                let wall = Duration::from_secs_f64(*wall);
                Ok(Sample {
                    latencies: latencies.collect(),
                    wall,
                })
            })
            .collect()
    }

    fn kills_noticed(&self, names: &[String]) -> anyhow::Result<Sample> {
        let (uri, pid_dir) = (self.uri(), self.pid_dir());
        let mut args = vec!["kill", &uri, &pid_dir];
        args.extend(names.iter().map(String::as_str));
        let lines = python_libvirt(&args)?;
        let seconds = lines.iter().flatten().map(|&s| Duration::from_secs_f64(s));
        Ok(sample(seconds.collect()))
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let guests = self.qemu_pids();
        for &pid in &guests {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        wait_until(DEADLINE, || !guests.iter().any(|&pid| is_qemu(pid)));
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// The libvirt side of the API figures, through python3-libvirt (C bindings):
/// `list URI SECONDS` prints a line for `listAllDomains` (ids, names, UUIDs) and one for
/// `getAllDomainStats(STATE)` (the same with states, as vmgated's List), each the wall time
/// then each call's seconds; `kill URI PIDDIR NAME...` SIGKILLs each guest's QEMU and polls
/// `state()` until shut off, printing the seconds each took.
const LIBVIRT_PY: &str = r#"
import os, sys, time, libvirt
mode, uri = sys.argv[1], sys.argv[2]
conn = libvirt.open(uri)
if mode == "list":
    budget = float(sys.argv[3])
    for call in [lambda: conn.listAllDomains(0),
                 lambda: conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)]:
        lat, start = [], time.perf_counter()
        while time.perf_counter() - start < budget or len(lat) < 20:
            t = time.perf_counter()
            call()
            lat.append(time.perf_counter() - t)
        print(time.perf_counter() - start, *lat)
else:
    for name in sys.argv[4:]:
        dom = conn.lookupByName(name)
        with open(os.path.join(sys.argv[3], name + ".pid")) as f:
            pid = int(f.read().strip())
        t = time.perf_counter()
        os.kill(pid, 9)
        while dom.state()[0] != libvirt.VIR_DOMAIN_SHUTOFF:
            if time.perf_counter() - t > 60:
                sys.exit(name + ": the end of its QEMU was not noticed")
        print(time.perf_counter() - t)
"#;

/// What the script printed: the figures (seconds) of each line.
fn python_libvirt(args: &[&str]) -> anyhow::Result<Vec<Vec<f64>>> {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(LIBVIRT_PY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("/usr/bin/python3")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "python3-libvirt: {}", stderr.trim());
    let parse = |line: &str| -> anyhow::Result<Vec<f64>> {
        let figures = line.split_whitespace().map(str::parse::<f64>);
        figures
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("{e}: {line:?}"))
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(parse)
        .collect()
}
