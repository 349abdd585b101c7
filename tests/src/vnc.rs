//! Console clients for the end-to-end tests and the gateway benchmark: gtk-vnc's real
//! `gvnccapture` driven under `expect` (it only takes a password from a terminal prompt),
//! a PNG size check for what it saves, and [`RfbClient`], a small async RFB client built on
//! vmgated's own `rfb` codec that stays connected, which gvnccapture cannot (it quits after
//! one frame and always asks for exclusive access). Also where a guest's console is, read
//! through the real CLI (`vmgate vncdisplay`).
//!
//! Nothing here decides whether a test passes: the helpers report what happened (exit
//! status and transcript, the error text of a refused handshake, whether the server closed)
//! and the tests assert on it. Every wait has a deadline.

use std::{
    fmt, fs,
    net::{Ipv4Addr, SocketAddr},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UnixStream},
};
use vmgated::vnc::rfb::{
    ClientConfig, ClientMessage, MAX_NAME_LEN, MAX_UPDATE_BYTES, Rect, RectPayload, RfbError,
    SecurityType, ServerInit, ServerMessage, decode_server_message, encoding,
    io::{RfbStream, client_handshake},
};

use crate::TestDaemon;

/// How long gvnccapture may take from start to PNG saved.
pub const CAPTURE_DEADLINE: Duration = Duration::from_secs(30);
/// How long an [`RfbClient`] waits for the handshake or for one update.
pub const RFB_DEADLINE: Duration = Duration::from_secs(10);
/// The base of VNC display numbers: display N is TCP port 5900 + N.
pub const VNC_BASE_PORT: u16 = 5900;

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

/// The TCP port of `name`'s console, from `vmgate vncdisplay` (`HOST:DISPLAY` or
/// `HOST::PORT`).
#[track_caller]
pub fn display_port(d: &TestDaemon, name: &str) -> u16 {
    let out = d.vmgate(&["vncdisplay", name]);
    let text = out.ok().trim().to_owned();
    parse_display(&text).unwrap_or_else(|| panic!("vncdisplay printed {text:?}"))
}

/// The port of `HOST:DISPLAY` or `HOST::PORT`.
pub fn parse_display(text: &str) -> Option<u16> {
    if let Some((_, port)) = text.rsplit_once("::") {
        return port.parse().ok();
    }
    let (_, display) = text.rsplit_once(':')?;
    VNC_BASE_PORT.checked_add(display.parse().ok()?)
}

/// Where an [`RfbClient`] connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ConsoleAddr {
    /// `127.0.0.1:port`.
    pub fn local(port: u16) -> ConsoleAddr {
        ConsoleAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

impl fmt::Display for ConsoleAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleAddr::Tcp(addr) => write!(f, "{addr}"),
            ConsoleAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl From<u16> for ConsoleAddr {
    fn from(port: u16) -> ConsoleAddr {
        ConsoleAddr::local(port)
    }
}

impl From<SocketAddr> for ConsoleAddr {
    fn from(addr: SocketAddr) -> ConsoleAddr {
        ConsoleAddr::Tcp(addr)
    }
}

impl From<&Path> for ConsoleAddr {
    fn from(path: &Path) -> ConsoleAddr {
        ConsoleAddr::Unix(path.to_owned())
    }
}

impl From<PathBuf> for ConsoleAddr {
    fn from(path: PathBuf) -> ConsoleAddr {
        ConsoleAddr::Unix(path)
    }
}

/// A TCP or UNIX stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connected, initialised RFB client (it asks for Raw only).
pub struct RfbClient {
    conn: RfbStream<Box<dyn Io>>,
    server_init: ServerInit,
    security: SecurityType,
    local: Option<SocketAddr>,
}

impl fmt::Debug for RfbClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RfbClient")
            .field("security", &self.security)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl RfbClient {
    /// Connects and runs the whole client handshake (VNC authentication when `password`
    /// is given and offered, else None) up to ServerInit, within [`RFB_DEADLINE`]. A
    /// refusal's error text is the server's reason (e.g. "locked out ...").
    pub async fn connect(
        addr: impl Into<ConsoleAddr>,
        password: Option<&str>,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        let addr = addr.into();
        tokio::time::timeout(RFB_DEADLINE, Self::handshake(&addr, password, shared))
            .await
            .map_err(|_| {
                anyhow!(
                    "no ServerInit from {addr} within {} s",
                    RFB_DEADLINE.as_secs()
                )
            })?
    }

    async fn handshake(
        addr: &ConsoleAddr,
        password: Option<&str>,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        let (stream, local): (Box<dyn Io>, _) = match addr {
            ConsoleAddr::Tcp(a) => {
                let s = TcpStream::connect(a)
                    .await
                    .with_context(|| format!("connect to {a}"))?;
                s.set_nodelay(true)?;
                let local = s.local_addr().ok();
                (Box::new(s), local)
            }
            ConsoleAddr::Unix(p) => {
                let s = UnixStream::connect(p)
                    .await
                    .with_context(|| format!("connect to {}", p.display()))?;
                (Box::new(s), None)
            }
        };
        let mut conn = RfbStream::new(stream, MAX_NAME_LEN + 64);
        let config = ClientConfig {
            password: password.map(|p| p.as_bytes().to_vec()),
            shared,
        };
        // The RfbError itself, so that its text (the server's reason) is the error's.
        let session = client_handshake(&mut conn, &config).await?;
        conn.set_max(MAX_UPDATE_BYTES);
        let mut client = RfbClient {
            conn,
            server_init: session.server_init,
            security: session.security,
            local,
        };
        client
            .send(&ClientMessage::SetEncodings(vec![encoding::RAW]))
            .await?;
        Ok(client)
    }

    pub fn server_init(&self) -> &ServerInit {
        &self.server_init
    }

    pub fn security(&self) -> SecurityType {
        self.security
    }

    /// This end's address (TCP only), as the gateway lists it in `console-sessions`.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    async fn send(&mut self, msg: &ClientMessage) -> Result<(), RfbError> {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes)?;
        self.conn.send(&bytes).await
    }

    /// Asks for the whole screen, non-incremental.
    pub async fn request_full_update(&mut self) -> anyhow::Result<()> {
        let rect = Rect::full(self.server_init.width, self.server_init.height);
        let msg = ClientMessage::FramebufferUpdateRequest {
            incremental: false,
            rect,
        };
        Ok(self.send(&msg).await?)
    }

    /// Reads until the next FramebufferUpdate (within [`RFB_DEADLINE`]) and returns how many
    /// bytes of Raw pixel data it carried.
    pub async fn read_update(&mut self) -> anyhow::Result<usize> {
        tokio::time::timeout(RFB_DEADLINE, self.next_update())
            .await
            .map_err(|_| anyhow!("no update within {} s", RFB_DEADLINE.as_secs()))?
    }

    async fn next_update(&mut self) -> anyhow::Result<usize> {
        let pf = self.server_init.pixel_format;
        loop {
            let msg = self
                .conn
                .expect("a framebuffer update", |b| decode_server_message(b, &pf))
                .await?;
            if let ServerMessage::FramebufferUpdate(rects) = msg {
                return Ok(rects
                    .iter()
                    .map(|r| match &r.payload {
                        RectPayload::Raw(pixels) => pixels.len(),
                        _ => 0,
                    })
                    .sum());
            }
        }
    }

    /// [`RfbClient::request_full_update`] then [`RfbClient::read_update`].
    pub async fn full_update(&mut self) -> anyhow::Result<usize> {
        self.request_full_update().await?;
        self.read_update().await
    }

    /// Waits up to `deadline` for the server to close the connection (EOF or an error),
    /// reading and dropping whole messages meanwhile; true when it closed.
    pub async fn wait_closed(&mut self, deadline: Duration) -> bool {
        let pf = self.server_init.pixel_format;
        let drain = async {
            loop {
                match self.conn.next(|b| decode_server_message(b, &pf)).await {
                    Ok(Some(_)) => continue,
                    Ok(None)
                    | Err(RfbError::Io(_) | RfbError::UnexpectedEof | RfbError::Closed(_)) => {
                        return true;
                    }
                    // Bytes we cannot parse are not a close.
                    Err(_) => return false,
                }
            }
        };
        tokio::time::timeout(deadline, drain).await.unwrap_or(false)
    }
}
