//! Console clients for the end-to-end tests and the gateway benchmarks: gtk-vnc's real
//! `gvnccapture` driven under `expect` (it only takes a password from a terminal prompt),
//! optionally with certificates in a [`GvncHome`], a PNG size check for what it saves, and
//! [`RfbClient`], a small async RFB client built on vmgated's own `rfb` codec that stays
//! connected, which gvnccapture cannot (it quits after one frame and always asks for
//! exclusive access). `RfbClient` also speaks VeNCrypt (X509None and X509Vnc) with a
//! rustls client, reporting what the TLS handshake agreed on, and goes on from a stream
//! another module authenticated ([`RfbClient::initialise`]). Also where a guest's console
//! is, read through the real CLI (`vmgate vncdisplay`).
//!
//! Nothing here decides whether a test passes: the helpers report what happened (exit
//! status and transcript, the error text of a refused handshake, whether the server closed)
//! and the tests assert on it. Every wait has a deadline.

use std::{
    ffi::OsString,
    fmt, fs,
    net::{Ipv4Addr, SocketAddr},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::{Pid, getgid, getuid},
};
use rustls::{
    RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tempfile::TempDir;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UnixStream},
};
use tokio_rustls::TlsConnector;
use vmgated::vnc::{
    rfb::{
        CHALLENGE_LEN, ClientConfig, ClientInit, ClientMessage, MAX_NAME_LEN, MAX_UPDATE_BYTES,
        ProtocolVersion, Rect, RectPayload, RfbError, SecurityOffer, SecurityResult, SecurityType,
        ServerInit, ServerMessage, check_security_result, decode_server_message, encoding,
        io::{RfbStream, client_handshake, read_security_offer},
        security_choice_bytes, vnc_auth_response,
    },
    vencrypt::{self, Subtype},
};

use crate::{
    TestDaemon,
    pki::{Issued, set_mode},
};

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

/// What a VeNCrypt client trusts and presents: the CA that signed the server's
/// certificate, a client certificate or none, and the name the server's certificate must
/// carry (a DNS name or an IP address).
#[derive(Clone)]
pub struct TlsCreds {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCreds")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsCreds {
    /// Trusts the CA certificate(s) in `ca`; presents `client` when given.
    pub fn new(ca: &Path, client: Option<&Issued>, server_name: &str) -> anyhow::Result<TlsCreds> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).context("add the CA certificate")?;
        }
        let builder =
            rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
        let config = match client {
            Some(c) => {
                let key = PrivateKeyDer::from_pem_file(&c.key)
                    .with_context(|| format!("read the key {}", c.key.display()))?;
                builder.with_client_auth_cert(read_certs(&c.cert)?, key)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsCreds {
            config: Arc::new(config),
            server_name: ServerName::try_from(server_name.to_owned())?,
        })
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("read certificates from {}", path.display()))
}

/// The DER bytes of the first certificate in the PEM file `path`, to compare with
/// [`TlsInfo::server_cert`].
pub fn cert_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    let certs = read_certs(path)?;
    let first = certs.first().context("no certificate in the file")?;
    Ok(first.to_vec())
}

/// What a VeNCrypt connection's TLS handshake agreed on.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub subtype: Subtype,
    /// As rustls names it: `TLSv1_3`.
    pub protocol: String,
    /// As rustls names it: `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The server's end-entity certificate (DER).
    pub server_cert: Vec<u8>,
}

/// A connected, initialised RFB client (it asks for Raw only).
pub struct RfbClient {
    conn: RfbStream<Box<dyn Io>>,
    server_init: ServerInit,
    security: SecurityType,
    local: Option<SocketAddr>,
    tls: Option<TlsInfo>,
}

impl fmt::Debug for RfbClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RfbClient")
            .field("security", &self.security)
            .field("local", &self.local)
            .field("tls", &self.tls.as_ref().map(|t| t.subtype))
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
        Self::connect_with(addr.into(), password, shared, None).await
    }

    /// Like [`RfbClient::connect`], through VeNCrypt: TLS with `creds` and nothing more
    /// (X509None) or, with `password`, VNC authentication inside TLS (X509Vnc). A refusal
    /// in the TLS handshake reads as the alert rustls received ("CertificateRequired"...).
    pub async fn connect_tls(
        addr: impl Into<ConsoleAddr>,
        creds: &TlsCreds,
        password: Option<&str>,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        Self::connect_with(addr.into(), password, shared, Some(creds)).await
    }

    /// Like [`RfbClient::connect_tls`], logging in as `user` with VeNCrypt Plain
    /// (X509Plain), as TigerVNC does.
    pub async fn connect_plain(
        addr: impl Into<ConsoleAddr>,
        creds: &TlsCreds,
        user: &str,
        password: &str,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        let login = Inner::Plain { user, password };
        Self::connect_inner(addr.into(), login, shared, Some(creds)).await
    }

    async fn connect_with(
        addr: ConsoleAddr,
        password: Option<&str>,
        shared: bool,
        tls: Option<&TlsCreds>,
    ) -> anyhow::Result<RfbClient> {
        let inner = password.map_or(Inner::None, Inner::Vnc);
        Self::connect_inner(addr, inner, shared, tls).await
    }

    async fn connect_inner(
        addr: ConsoleAddr,
        inner: Inner<'_>,
        shared: bool,
        tls: Option<&TlsCreds>,
    ) -> anyhow::Result<RfbClient> {
        tokio::time::timeout(RFB_DEADLINE, Self::handshake(&addr, inner, shared, tls))
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
        inner: Inner<'_>,
        shared: bool,
        tls: Option<&TlsCreds>,
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
        let (server_init, security, tls) = match tls {
            None => {
                let password = match inner {
                    Inner::Vnc(p) => Some(p.as_bytes().to_vec()),
                    Inner::None => None,
                    Inner::Plain { .. } => bail!("VeNCrypt Plain needs TLS credentials"),
                };
                let config = ClientConfig { password, shared };
                // The RfbError itself, so that its text (the server's reason) is the error's.
                let session = client_handshake(&mut conn, &config).await?;
                (session.server_init, session.security, None)
            }
            Some(creds) => {
                let (inner, server_init, info) =
                    vencrypt_handshake(conn, creds, inner, shared).await?;
                conn = inner;
                (server_init, SecurityType::VeNCrypt, Some(info))
            }
        };
        Self::ready(conn, server_init, security, local, tls).await
    }

    /// Goes on from a stream whose security handshake is over, as a login this module does
    /// not speak leaves it (a GSSAPI login in `vnc_gssapi`, with its stream already
    /// wrapped in the security layer): ClientInit, ServerInit, then the same code paths as
    /// after [`RfbClient::connect`]. Within [`RFB_DEADLINE`].
    pub async fn initialise<S>(
        stream: S,
        security: SecurityType,
        local: Option<SocketAddr>,
        shared: bool,
    ) -> anyhow::Result<RfbClient>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut conn: RfbStream<Box<dyn Io>> = RfbStream::new(Box::new(stream), MAX_NAME_LEN + 64);
        let init = async {
            conn.send(&ClientInit { shared }.encode()).await?;
            conn.expect("the initialisation", ServerInit::decode).await
        };
        let server_init = tokio::time::timeout(RFB_DEADLINE, init)
            .await
            .map_err(|_| anyhow!("no ServerInit within {} s", RFB_DEADLINE.as_secs()))??;
        Self::ready(conn, server_init, security, local, None).await
    }

    /// The client after ServerInit: update-sized buffer, Raw asked for.
    async fn ready(
        mut conn: RfbStream<Box<dyn Io>>,
        server_init: ServerInit,
        security: SecurityType,
        local: Option<SocketAddr>,
        tls: Option<TlsInfo>,
    ) -> anyhow::Result<RfbClient> {
        conn.set_max(MAX_UPDATE_BYTES);
        let mut client = RfbClient {
            conn,
            server_init,
            security,
            local,
            tls,
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

    /// What TLS agreed on, for a VeNCrypt connection.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
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

/// The version exchange, then the security type `wanted` chosen from the server's offer;
/// returns the version agreed. A refusal's error is the server's reason.
pub async fn choose_security<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
    wanted: SecurityType,
) -> anyhow::Result<ProtocolVersion> {
    let (version, offer) = read_security_offer(conn).await?;
    match offer {
        SecurityOffer::Refused(reason) => return Err(RfbError::ConnectionRefused(reason).into()),
        SecurityOffer::Types(types) if !types.contains(&wanted) => {
            return Err(RfbError::NoCommonSecurityType(types).into());
        }
        SecurityOffer::Types(_) => {}
    }
    conn.send(&security_choice_bytes(version, wanted)).await?;
    Ok(version)
}

/// The client side of VeNCrypt as gtk-vnc speaks it to QEMU: security type 19, version
/// 0.2, the subtype (X509Vnc with a password, else X509None), TLS on the same stream, VNC
/// authentication inside it for X509Vnc, the SecurityResult, then ClientInit and
/// ServerInit. Returns the stream to go on with (the TLS one).
/// How a client authenticates after the security type (inside TLS for VeNCrypt).
#[derive(Clone, Copy)]
enum Inner<'a> {
    None,
    /// VNC authentication (X509Vnc inside VeNCrypt).
    Vnc(&'a str),
    /// VeNCrypt Plain: user name and password (X509Plain).
    Plain {
        user: &'a str,
        password: &'a str,
    },
}

async fn vencrypt_handshake(
    mut conn: RfbStream<Box<dyn Io>>,
    creds: &TlsCreds,
    inner: Inner<'_>,
    shared: bool,
) -> anyhow::Result<(RfbStream<Box<dyn Io>>, ServerInit, TlsInfo)> {
    let version = choose_security(&mut conn, SecurityType::VeNCrypt).await?;

    let theirs = conn.read_array::<2>("the VeNCrypt version").await?;
    ensure!(
        theirs == vencrypt::VERSION,
        "the server speaks VeNCrypt {}.{}, not 0.2",
        theirs[0],
        theirs[1]
    );
    conn.send(&vencrypt::VERSION).await?;
    let offered = conn
        .expect("the VeNCrypt subtypes", decode_subtypes)
        .await?;
    let wanted = match inner {
        Inner::Vnc(_) => Subtype::X509Vnc,
        Inner::Plain { .. } => Subtype::X509Plain,
        Inner::None => Subtype::X509None,
    };
    ensure!(
        offered.contains(&wanted.code()),
        "the server offers VeNCrypt subtypes {offered:?}, not {} ({})",
        wanted.code(),
        wanted.name()
    );
    conn.send(&wanted.code().to_be_bytes()).await?;
    let [ack] = conn.read_array::<1>("the VeNCrypt subtype choice").await?;
    if ack != 1 {
        bail!("the server refused VeNCrypt subtype {}", wanted.code());
    }

    let (stream, early) = conn.into_parts();
    ensure!(
        early.is_empty(),
        "the server sent data before the TLS handshake"
    );
    let stream = TlsConnector::from(creds.config.clone())
        .connect(creds.server_name.clone(), stream)
        .await
        .context("TLS handshake")?;
    let session = stream.get_ref().1;
    let info = TlsInfo {
        subtype: wanted,
        protocol: session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        cipher_suite: session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        server_cert: session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
    };
    let mut conn: RfbStream<Box<dyn Io>> = RfbStream::new(Box::new(stream), MAX_NAME_LEN + 64);
    match inner {
        Inner::Vnc(password) => {
            let challenge = conn
                .read_array::<CHALLENGE_LEN>("VNC authentication")
                .await?;
            conn.send(&vnc_auth_response(password.as_bytes(), &challenge))
                .await?;
        }
        Inner::Plain { user, password } => {
            let mut out = Vec::with_capacity(8 + user.len() + password.len());
            out.extend_from_slice(&u32::try_from(user.len())?.to_be_bytes());
            out.extend_from_slice(&u32::try_from(password.len())?.to_be_bytes());
            out.extend_from_slice(user.as_bytes());
            out.extend_from_slice(password.as_bytes());
            conn.send(&out).await?;
        }
        Inner::None => {}
    }
    // A server that refuses the client certificate says so with a TLS alert, which the
    // client reads here (TLS 1.3 lets it finish its side of the handshake first).
    let result = conn
        .expect("the security result", |b| {
            SecurityResult::decode(version, b)
        })
        .await?;
    check_security_result(result)?;
    conn.send(&ClientInit { shared }.encode()).await?;
    let server_init = conn
        .expect("the initialisation", ServerInit::decode)
        .await?;
    Ok((conn, server_init, info))
}

/// The server's answer to our VeNCrypt version: 0 (accepted), a count, then that many u32
/// subtypes.
fn decode_subtypes(b: &[u8]) -> Result<Option<(Vec<u32>, usize)>, RfbError> {
    match b.first() {
        None => return Ok(None),
        Some(0) => {}
        Some(_) => {
            let refused = "VeNCrypt 0.2 (the server refused it)";
            return Err(RfbError::Unsupported(refused.into()));
        }
    }
    let Some(&count) = b.get(1) else {
        return Ok(None);
    };
    let len = 2 + 4 * usize::from(count);
    let Some(body) = b.get(2..len) else {
        return Ok(None);
    };
    let subtypes = body
        .chunks_exact(4)
        .filter_map(|c| <[u8; 4]>::try_from(c).ok())
        .map(u32::from_be_bytes)
        .collect();
    Ok(Some((subtypes, len)))
}
