//! Connection URIs in libvirt's syntax, `driver[+transport]://[user@][host][:port]/path[?params]`:
//! parsing into a typed [`ConnectUri`], the checks that reject what vmgate does not serve (each
//! error names the bad part and the fix), and the canonical form given back by `Display`.
//! This module owns the syntax only; it never opens sockets or reads files (see `connect`).

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The URI used when neither `-c` nor [`DEFAULT_URI_ENV`] gives one.
pub const DEFAULT_URI: &str = "qemu:///system";
/// The environment variable holding the default URI (libvirt's is `LIBVIRT_DEFAULT_URI`).
pub const DEFAULT_URI_ENV: &str = "VMGATE_DEFAULT_URI";

const SERVED: &str = "vmgate serves qemu:///system and test:///default";
const SHAPE: &str = "driver[+transport]://[user@][host][:port]/path[?params]";

/// The hypervisor driver a URI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// Real QEMU guests, path `/system`.
    Qemu,
    /// The daemon's in-process test driver, path `/default`.
    Test,
}

impl Driver {
    /// The name used in URIs and in `VersionReply.driver`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Qemu => "qemu",
            Driver::Test => "test",
        }
    }

    /// The only path this driver serves.
    pub fn path(self) -> &'static str {
        match self {
            Driver::Qemu => "/system",
            Driver::Test => "/default",
        }
    }

    /// The driver with this URI name, if vmgate serves it.
    pub fn from_name(name: &str) -> Option<Driver> {
        match name {
            "qemu" => Some(Driver::Qemu),
            "test" => Some(Driver::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the client reaches the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A local UNIX socket (the default without a host).
    Unix,
    /// TLS with x509 client certificates (the default with a host).
    Tls,
    /// Plain TCP with SASL.
    Tcp,
}

impl Transport {
    /// The name used after `+` in URIs.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tls => "tls",
            Transport::Tcp => "tcp",
        }
    }

    fn from_name(name: &str) -> Option<Transport> {
        match name {
            "unix" => Some(Transport::Unix),
            "tls" => Some(Transport::Tls),
            "tcp" => Some(Transport::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed, checked connection URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUri {
    pub driver: Driver,
    pub transport: Transport,
    /// `user@`: the default SASL user name.
    pub user: Option<String>,
    /// The daemon's host (without brackets for IPv6 literals); `None` for UNIX sockets.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `?socket=`: the UNIX socket to use instead of the default one.
    pub socket: Option<PathBuf>,
    /// `?pkipath=`: the one directory holding the client's certificates.
    pub pkipath: Option<PathBuf>,
    /// `?no_verify=1`: do not verify the server's certificate.
    pub no_verify: bool,
}

/// Why a URI was refused. Each message names the offending part and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("{uri:?} is not a connection URI; expected {SHAPE}, e.g. qemu:///system")]
    Syntax { uri: String },
    #[error("driver {0:?} is not served; {SERVED}")]
    UnknownDriver(String),
    #[error("transport {0:?} is not supported; use unix, tls or tcp (e.g. qemu+tls://HOST/system)")]
    UnknownTransport(String),
    #[error("the URI has no path; {SERVED}")]
    MissingPath,
    #[error("path {path} is not served; {SERVED}")]
    BadPath { path: String },
    #[error("port {0:?} is not valid; give a number from 1 to 65535")]
    BadPort(String),
    #[error(
        "host {0:?} is not valid; write IPv6 addresses in brackets, e.g. qemu+tls://[::1]/system"
    )]
    BadHost(String),
    #[error(
        "the unix transport reaches a local socket and takes no host or port; use {driver}:///{path} \
         for this machine, or {driver}+tls://HOST/{path} for a remote one",
        path = &.driver.path()[1..]
    )]
    UnixWithHost { driver: Driver },
    #[error("the {transport} transport needs a host, e.g. {driver}+{transport}://HOST/{path}", path = &.driver.path()[1..])]
    MissingHost {
        driver: Driver,
        transport: Transport,
    },
    #[error("the user name before '@' is empty; write user@host or leave out the '@'")]
    EmptyUser,
    #[error("unknown URI parameter {0:?}; known parameters are socket, pkipath and no_verify")]
    UnknownParam(String),
    #[error("URI parameter {0} is given twice; give it once")]
    DuplicateParam(String),
    #[error("URI parameter {0} is empty; give a value, e.g. ?socket=/run/vmgate/vmgate-sock")]
    EmptyParam(String),
    #[error("URI parameter {name} applies to the {applies} transport only, not {transport}")]
    ParamNotForTransport {
        name: &'static str,
        applies: &'static str,
        transport: Transport,
    },
    #[error("no_verify={0:?} is not valid; use no_verify=0 or no_verify=1")]
    BadNoVerify(String),
    #[error("{0:?} has a bad percent escape; write a literal % as %25")]
    BadPercent(String),
    #[error("the user name {0:?} is not valid UTF-8 after percent-decoding")]
    BadUser(String),
    #[error("URI fragments ('#...') are not allowed; percent-encode '#' in a path as %23")]
    Fragment,
    #[error("{DEFAULT_URI_ENV}: {0}")]
    FromEnv(Box<UriError>),
}

impl ConnectUri {
    /// Parses and checks a URI.
    pub fn parse(text: &str) -> Result<ConnectUri, UriError> {
        let syntax = || UriError::Syntax {
            uri: text.to_owned(),
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(syntax)?;
        let (driver_name, transport_name) = match scheme.split_once('+') {
            Some((d, t)) => (d, Some(t)),
            None => (scheme, None),
        };
        if driver_name.is_empty() {
            return Err(syntax());
        }
        let driver = Driver::from_name(driver_name)
            .ok_or_else(|| UriError::UnknownDriver(driver_name.to_owned()))?;
        let explicit = transport_name
            .map(|t| {
                Transport::from_name(t).ok_or_else(|| UriError::UnknownTransport(t.to_owned()))
            })
            .transpose()?;

        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        let (user, host, port) = parse_authority(authority)?;

        let transport = explicit.unwrap_or(if host.is_some() {
            Transport::Tls
        } else {
            Transport::Unix
        });
        match transport {
            Transport::Unix if host.is_some() || port.is_some() => {
                return Err(UriError::UnixWithHost { driver });
            }
            Transport::Tls | Transport::Tcp if host.is_none() => {
                return Err(UriError::MissingHost { driver, transport });
            }
            _ => {}
        }

        if path.is_empty() {
            return Err(UriError::MissingPath);
        }
        if path != driver.path() {
            return Err(UriError::BadPath {
                path: path.to_owned(),
            });
        }

        let mut uri = ConnectUri {
            driver,
            transport,
            user,
            host,
            port,
            socket: None,
            pkipath: None,
            no_verify: false,
        };
        if let Some(query) = query {
            uri.apply_query(query)?;
        }
        Ok(uri)
    }

    /// The URI from [`DEFAULT_URI_ENV`] when it is set and not empty, else [`DEFAULT_URI`].
    pub fn from_env_or_default() -> Result<ConnectUri, UriError> {
        match std::env::var(DEFAULT_URI_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                ConnectUri::parse(v.trim()).map_err(|e| UriError::FromEnv(Box::new(e)))
            }
            _ => ConnectUri::parse(DEFAULT_URI),
        }
    }

    /// `text` when given (a `-c` argument), else [`ConnectUri::from_env_or_default`].
    pub fn resolve(text: Option<&str>) -> Result<ConnectUri, UriError> {
        match text {
            Some(t) => ConnectUri::parse(t),
            None => ConnectUri::from_env_or_default(),
        }
    }

    fn apply_query(&mut self, query: &str) -> Result<(), UriError> {
        let mut seen_no_verify = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = String::from_utf8(percent_decode(raw_name)?)
                .map_err(|_| UriError::UnknownParam(raw_name.to_owned()))?;
            let value = percent_decode(raw_value)?;
            let (key, applies, ok) = match name.as_str() {
                "socket" => ("socket", "unix", self.transport == Transport::Unix),
                "pkipath" => ("pkipath", "tls", self.transport == Transport::Tls),
                "no_verify" => ("no_verify", "tls", self.transport == Transport::Tls),
                _ => return Err(UriError::UnknownParam(name)),
            };
            if !ok {
                return Err(UriError::ParamNotForTransport {
                    name: key,
                    applies,
                    transport: self.transport,
                });
            }
            if value.is_empty() {
                return Err(UriError::EmptyParam(name));
            }
            let duplicate = match key {
                "socket" => self.socket.replace(bytes_to_path(value)).is_some(),
                "pkipath" => self.pkipath.replace(bytes_to_path(value)).is_some(),
                _ => {
                    self.no_verify = match value.as_slice() {
                        b"0" => false,
                        b"1" => true,
                        _ => {
                            return Err(UriError::BadNoVerify(
                                String::from_utf8_lossy(&value).into_owned(),
                            ));
                        }
                    };
                    std::mem::replace(&mut seen_no_verify, true)
                }
            };
            if duplicate {
                return Err(UriError::DuplicateParam(name));
            }
        }
        Ok(())
    }
}

impl FromStr for ConnectUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectUri::parse(s)
    }
}

/// The canonical form: `+unix` is left out (it is the default without a host), `+tls` and
/// `+tcp` are always written, parameters come in the order socket, pkipath, no_verify, and
/// `no_verify` only when set. Parsing the output gives back an equal `ConnectUri`.
impl fmt::Display for ConnectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.driver.name())?;
        if self.transport != Transport::Unix {
            write!(f, "+{}", self.transport)?;
        }
        f.write_str("://")?;
        if let Some(user) = &self.user {
            write!(f, "{}@", percent_encode(user.as_bytes(), b""))?;
        }
        if let Some(host) = &self.host {
            if host.contains(':') {
                write!(f, "[{host}]")?;
            } else {
                f.write_str(host)?;
            }
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(self.driver.path())?;
        let mut sep = '?';
        let mut param = |f: &mut fmt::Formatter<'_>, name: &str, value: &str| {
            let r = write!(f, "{sep}{name}={value}");
            sep = '&';
            r
        };
        if let Some(s) = &self.socket {
            param(f, "socket", &percent_encode_path(s))?;
        }
        if let Some(p) = &self.pkipath {
            param(f, "pkipath", &percent_encode_path(p))?;
        }
        if self.no_verify {
            param(f, "no_verify", "1")?;
        }
        Ok(())
    }
}

type Authority = (Option<String>, Option<String>, Option<u16>);

fn parse_authority(authority: &str) -> Result<Authority, UriError> {
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, hp)) => {
            if u.is_empty() {
                return Err(UriError::EmptyUser);
            }
            let user = String::from_utf8(percent_decode(u)?)
                .map_err(|_| UriError::BadUser(u.to_owned()))?;
            (Some(user), hp)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (h, after) = bracketed
            .split_once(']')
            .ok_or_else(|| UriError::BadHost(hostport.to_owned()))?;
        if h.is_empty() {
            return Err(UriError::BadHost(hostport.to_owned()));
        }
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(UriError::BadHost(hostport.to_owned())),
            },
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            Some(_) => return Err(UriError::BadHost(hostport.to_owned())),
            None => (hostport, None),
        }
    };
    if host.contains(|c: char| c.is_whitespace() || "/?#[]".contains(c)) {
        return Err(UriError::BadHost(host.to_owned()));
    }
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(UriError::BadPort(p.to_owned())),
        })
        .transpose()?;
    let host = (!host.is_empty()).then(|| host.to_owned());
    Ok((user, host, port))
}

/// Decodes `%XX` escapes. `+` stays a plus sign: URIs are not HTML form data.
fn percent_decode(text: &str) -> Result<Vec<u8>, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UriError::BadPercent(text.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Escapes every byte except ASCII letters, digits, `-._~` and the bytes in `keep`.
fn percent_encode(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_encode_path(path: &Path) -> String {
    percent_encode(path.as_os_str().as_bytes(), b"/,+")
}

fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(test)]
#[path = "uri_tests.rs"]
mod tests;
