//! gtk-vnc's real `gvnccapture` (gtk-vnc is virt-manager's and virt-viewer's VNC client) as
//! a new process: run under `expect`, which answers its user name and password prompts (it
//! reads a password only from a terminal), optionally as a user whose passwd home
//! ([`GvncHome`]) holds its certificates for VeNCrypt, with a deadline; and a PNG size check
//! for the frame it saves. It reports what happened (exit status, transcript, time); the
//! tests decide what that means.

use std::{
    ffi::OsString,
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::{Pid, getgid, getuid},
};
use tempfile::TempDir;

use crate::pki::{Issued, set_mode};

/// How long gvnccapture may take from start to PNG saved.
pub const CAPTURE_DEADLINE: Duration = Duration::from_secs(30);

/// The expect script around gvnccapture. gvnccapture prints "Password: " and only then
/// turns echo off with `TCSAFLUSH`, which throws away anything typed before: so the
/// password is sent a moment after the prompt, and typed again if nothing happens (a
/// second line after a successful login is never read). The password comes from the
/// environment, never from a command line. The harness enforces the overall deadline.
const CAPTURE_SCRIPT: &str = r#"
set timeout 2
set typed 0
spawn -noecho {*}$argv
expect {
  "Username: " {
    send -- "$env(VNC_USERNAME)\r"
    exp_continue
  }
  "Password: " {
    sleep 0.03
    send -- "$env(VNC_PASSWORD)\r"
    set typed 1
    exp_continue
  }
  timeout {
    if {$typed > 0 && $typed < 5} {
      incr typed
      send -- "$env(VNC_PASSWORD)\r"
    }
    exp_continue
  }
  eof
}
lassign [wait] pid spawnid oserr rc
exit $rc
"#;

/// What a gvnccapture run did.
#[derive(Debug)]
pub struct Capture {
    /// gvnccapture exited 0 and the PNG exists.
    pub ok: bool,
    /// Everything gvnccapture and expect printed (plus a line if the deadline killed it).
    pub transcript: String,
    /// From start to exit.
    pub elapsed: Duration,
}

/// Runs `gvnccapture TARGET OUT` under `expect`, answering its password prompt with
/// `password` (or an empty line). `target` is `HOST:DISPLAY` as `vmgate vncdisplay` prints it.
pub fn gvnccapture(target: &str, out: &Path, password: Option<&str>) -> Capture {
    capture(target, out, None, password, None, &[])
}

/// [`gvnccapture`] with `env` added: a Kerberos ticket cache and config for GSSAPI,
/// where gtk-vnc asks for nothing (any user name prompt is answered with an empty line).
pub fn gvnccapture_env(
    target: &str,
    out: &Path,
    home: Option<&GvncHome>,
    env: &[(String, String)],
) -> Capture {
    capture(target, out, None, None, home, env)
}

/// [`gvnccapture`] as the user whose home is `home`, with its certificates (VeNCrypt).
pub fn gvnccapture_as(
    target: &str,
    out: &Path,
    password: Option<&str>,
    home: &GvncHome,
) -> Capture {
    capture(target, out, None, password, Some(home), &[])
}

/// [`gvnccapture_as`] logging in as `user` (VeNCrypt X509SASL: gtk-vnc prompts for the
/// user name, then the password).
pub fn gvnccapture_login(
    target: &str,
    out: &Path,
    user: &str,
    password: &str,
    home: &GvncHome,
) -> Capture {
    capture(target, out, Some(user), Some(password), Some(home), &[])
}

fn capture(
    target: &str,
    out: &Path,
    user: Option<&str>,
    password: Option<&str>,
    home: Option<&GvncHome>,
    env: &[(String, String)],
) -> Capture {
    let start = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("gvnccapture")
        .tempdir()
        .expect("temp dir for gvnccapture");
    let script = dir.path().join("capture.exp");
    fs::write(&script, CAPTURE_SCRIPT).expect("write the expect script");
    let log_path = dir.path().join("transcript");
    let log = fs::File::create(&log_path).expect("transcript file");
    let _ = fs::remove_file(out);
    let mut child = Command::new("expect")
        .arg("-f")
        .arg(&script)
        .arg("gvnccapture")
        .arg(target)
        .arg(out)
        .env("VNC_PASSWORD", password.unwrap_or_default())
        .env("VNC_USERNAME", user.unwrap_or_default())
        .envs(home.map(GvncHome::env).unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("transcript fd"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("spawn expect (Debian package expect)");
    let deadline = start + CAPTURE_DEADLINE;
    let (status, timed_out) = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break (Some(status), false);
        }
        if Instant::now() > deadline {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            break (child.wait().ok(), true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let mut transcript = fs::read_to_string(&log_path).unwrap_or_default();
    if timed_out {
        transcript.push_str(&format!(
            "\n[harness: killed after {} s]\n",
            CAPTURE_DEADLINE.as_secs()
        ));
    }
    let ok = !timed_out && status.is_some_and(|s| s.success()) && out.exists();
    Capture {
        ok,
        transcript,
        elapsed,
    }
}

/// A passwd home for gtk-vnc, which takes certificates only from under the home that
/// `getpwuid()` reports (`$HOME` is ignored): `.pki/CA/cacert.pem`,
/// `.pki/gvnccapture/clientcert.pem` and `.pki/gvnccapture/private/clientkey.pem`.
/// gvnccapture runs with nss_wrapper preloaded and a passwd file that gives the current
/// uid this temporary directory as its home, so nothing outside it is read.
pub struct GvncHome {
    dir: TempDir,
    nss_wrapper: PathBuf,
}

impl GvncHome {
    /// A home trusting `ca_cert` and presenting `client` when given. `nss_wrapper` is
    /// `libnss_wrapper.so` (see [`crate::require_library`]).
    pub fn new(nss_wrapper: &Path, ca_cert: &Path, client: Option<&Issued>) -> GvncHome {
        let dir = tempfile::Builder::new()
            .prefix("gvnchome")
            .tempdir()
            .expect("temp dir for a gvnccapture home");
        let pki = dir.path().join(".pki");
        let copy = |from: &Path, to: PathBuf| {
            fs::create_dir_all(to.parent().expect("a parent")).expect("create the .pki layout");
            fs::copy(from, &to).expect("copy into the .pki layout");
            to
        };
        copy(ca_cert, pki.join("CA/cacert.pem"));
        if let Some(client) = client {
            copy(&client.cert, pki.join("gvnccapture/clientcert.pem"));
            let key = copy(&client.key, pki.join("gvnccapture/private/clientkey.pem"));
            set_mode(&key, 0o600);
        }
        let (uid, gid) = (getuid(), getgid());
        let entry = format!(
            "harness:x:{uid}:{gid}:harness:{}:/bin/sh\n",
            dir.path().display()
        );
        fs::write(dir.path().join("passwd"), entry).expect("write the passwd file");
        fs::write(dir.path().join("group"), format!("harness:x:{gid}:\n"))
            .expect("write the group file");
        GvncHome {
            dir,
            nss_wrapper: nss_wrapper.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("LD_PRELOAD", self.nss_wrapper.clone().into()),
            ("NSS_WRAPPER_PASSWD", self.path().join("passwd").into()),
            ("NSS_WRAPPER_GROUP", self.path().join("group").into()),
        ]
    }
}

/// The (width, height) of a PNG file from its IHDR chunk; None if it is not a PNG.
pub fn png_size(path: &Path) -> Option<(u32, u32)> {
    let bytes = fs::read(path).ok()?;
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.get(..8)? != SIGNATURE || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    Some((be(16..20)?, be(20..24)?))
}
