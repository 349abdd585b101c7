//! Socket activation as sd_listen_fds_with_names(3) defines it: when `LISTEN_PID` is this
//! process, descriptors 3 to 3 + `LISTEN_FDS` - 1 are listening sockets, named in order by
//! the colon-separated `LISTEN_FDNAMES` (the socket units' `FileDescriptorName=`).
//!
//! vmgated knows four names, one per socket unit:
//!
//! | name         | unit                 | socket                                   |
//! |--------------|----------------------|------------------------------------------|
//! | `vmgate`     | `vmgated.socket`     | the read-write UNIX socket               |
//! | `vmgate-ro`  | `vmgated-ro.socket`  | the read-only UNIX socket                |
//! | `vmgate-tls` | `vmgated-tls.socket` | the TLS listener (TCP)                   |
//! | `vmgate-tcp` | `vmgated-tcp.socket` | the plain TCP listener (SASL login)      |
//!
//! Read-only or read-write comes from the name alone, never from the socket's path. Each
//! descriptor is checked to be what its name says (a listening UNIX stream socket, or a
//! listening TCP socket) before anything serves it; an unknown name or a mismatch stops the
//! daemon with an error that names the descriptor, its name and what was expected.
//!
//! As libvirtd does, a passed socket is served as it is: the socket unit decides its
//! address, mode and owner, so `listen_addr`, `tls_port`, `tcp_port`, `unix_sock_group`
//! and `unix_sock_*_perms` are ignored for it (logged once at start), and the daemon never
//! unlinks it. A name that was not passed is bound from the config as usual, so a unit set
//! may activate some sockets and leave the rest to the daemon.
//!
//! A passed `vmgate-tls` or `vmgate-tcp` turns its listener on, as `listen_tls = true` or
//! `listen_tcp = true` would ([`Activated::apply_to`], before the config is validated), so
//! the rules for that listener hold as usual: TLS needs `key_file`, `cert_file` and
//! `ca_file` (a passed socket alone cannot serve TLS), and plain TCP is judged by
//! `auth_tcp` and `tcp_min_ssf` (with the default `auth_tcp = "sasl"`, `tcp_min_ssf` must be
//! 0, as no SASL security layer can wrap the API's HTTP/2). libvirtd too serves
//! whatever sockets it is passed, whatever `listen_tls` says.

use std::{
    fmt,
    net::TcpListener,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixListener,
    },
};

use nix::{
    errno::Errno,
    fcntl::{FcntlArg, FdFlag, fcntl},
    sys::socket::{
        AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
    },
};
use vmgate_config::DaemonConfig;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

/// More descriptors than this are a broken environment, not a socket unit set: vmgated has
/// four names, each with a few addresses at most.
pub const MAX_FDS: usize = 64;

/// The variables sd_listen_fds(3) reads, removed once read.
const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The sockets vmgated takes from systemd, by `FileDescriptorName=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketName {
    /// `vmgate`: the read-write UNIX socket.
    Rw,
    /// `vmgate-ro`: the read-only UNIX socket.
    Ro,
    /// `vmgate-tls`: the TLS listener.
    Tls,
    /// `vmgate-tcp`: the plain TCP listener.
    Tcp,
}

/// What a name's socket must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unix,
    Tcp,
}

impl SocketName {
    pub const ALL: [SocketName; 4] = [
        SocketName::Rw,
        SocketName::Ro,
        SocketName::Tls,
        SocketName::Tcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SocketName::Rw => "vmgate",
            SocketName::Ro => "vmgate-ro",
            SocketName::Tls => "vmgate-tls",
            SocketName::Tcp => "vmgate-tcp",
        }
    }

    pub fn from_name(name: &str) -> Option<SocketName> {
        SocketName::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// The socket unit that passes it.
    pub fn unit(self) -> &'static str {
        match self {
            SocketName::Rw => "vmgated.socket",
            SocketName::Ro => "vmgated-ro.socket",
            SocketName::Tls => "vmgated-tls.socket",
            SocketName::Tcp => "vmgated-tcp.socket",
        }
    }

    fn kind(self) -> Kind {
        match self {
            SocketName::Rw | SocketName::Ro => Kind::Unix,
            SocketName::Tls | SocketName::Tcp => Kind::Tcp,
        }
    }

    /// The config keys that say how to bind this socket, moot when systemd passes it.
    fn ignored_keys(self) -> &'static [&'static str] {
        match self {
            SocketName::Rw => &["unix_sock_rw_perms", "unix_sock_group"],
            SocketName::Ro => &["unix_sock_ro_perms", "unix_sock_group"],
            SocketName::Tls => &["listen_addr", "tls_port"],
            SocketName::Tcp => &["listen_addr", "tcp_port"],
        }
    }
}

impl fmt::Display for SocketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn known_names() -> String {
    SocketName::ALL.map(SocketName::as_str).join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("Socket activation: {var}={value:?} is not a number")]
    NotANumber { var: &'static str, value: String },
    #[error("Socket activation: LISTEN_FDS={0} is more than vmgated can use (at most {MAX_FDS})")]
    TooMany(usize),
    #[error(
        "Socket activation: LISTEN_FDS={fds} but LISTEN_FDNAMES={value:?} has {names} names; \
         they must match"
    )]
    NameCount {
        fds: usize,
        names: usize,
        value: String,
    },
    #[error("Socket activation: fd {fd} ({name}) is not open")]
    NotOpen { fd: RawFd, name: String },
    #[error(
        "Socket activation: fd {fd} is named {name:?}, which vmgated does not know; \
         FileDescriptorName= must be one of {}",
        known_names()
    )]
    UnknownName { fd: RawFd, name: String },
    #[error(
        "Socket activation: fd {fd} ({name}) is {found}, but {name} must be {}; check \
         ListenStream= and Accept=no in {}", expected(.name), .name.unit()
    )]
    Mismatch {
        fd: RawFd,
        name: SocketName,
        found: String,
    },
    #[error("Socket activation: cannot inspect fd {fd} ({name}): {source}")]
    Inspect {
        fd: RawFd,
        name: String,
        #[source]
        source: Errno,
    },
}

fn expected(name: &SocketName) -> &'static str {
    match name.kind() {
        Kind::Unix => "a listening UNIX stream socket",
        Kind::Tcp => "a listening TCP socket",
    }
}

/// The descriptors the environment says were passed to process `pid`, with their names,
/// read as sd_listen_fds_with_names(3) reads them: none unless `LISTEN_PID` is `pid` and
/// `LISTEN_FDS` is set; numbered from [`FIRST_FD`]; named `unknown` when `LISTEN_FDNAMES`
/// is unset. Touches nothing.
pub fn parse(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
) -> Result<Vec<(RawFd, String)>, ActivationError> {
    let Some(listen_pid) = listen_pid else {
        return Ok(Vec::new());
    };
    if number::<u32>("LISTEN_PID", listen_pid)? != pid {
        return Ok(Vec::new());
    }
    let Some(listen_fds) = listen_fds else {
        return Ok(Vec::new());
    };
    let count = number::<usize>("LISTEN_FDS", listen_fds)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > MAX_FDS {
        return Err(ActivationError::TooMany(count));
    }
    let names: Vec<String> = match listen_fdnames {
        Some(value) => {
            let names: Vec<String> = value.split(':').map(str::to_owned).collect();
            if names.len() != count {
                return Err(ActivationError::NameCount {
                    fds: count,
                    names: names.len(),
                    value: value.to_owned(),
                });
            }
            names
        }
        None => vec!["unknown".to_owned(); count],
    };
    Ok((FIRST_FD..).zip(names).collect())
}

fn number<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, ActivationError> {
    value.parse().map_err(|_| ActivationError::NotANumber {
        var,
        value: value.to_owned(),
    })
}

/// Takes the passed sockets: reads the variables, removes them (whether or not they were
/// meant for this process, as sd_listen_fds(3) with `unset_environment` does), marks each
/// descriptor close-on-exec and checks it against its name.
///
/// # Safety
///
/// Call it once, while the process has a single thread (it changes the environment), and
/// before anything else owns the descriptors from [`FIRST_FD`] on.
#[allow(unsafe_code)]
pub unsafe fn take_from_env() -> Result<Activated, ActivationError> {
    let var = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let parsed = parse(
        std::process::id(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
    );
    for name in VARS {
        // SAFETY: the caller guarantees that no other thread reads or writes the
        // environment.
        unsafe { std::env::remove_var(name) };
    }
    let mut fds = Vec::new();
    for (fd, name) in parsed? {
        // SAFETY: fcntl(F_GETFD) only asks whether the number is open; the borrow ends
        // with the call. This is how sd_listen_fds(3) checks them too.
        let open = fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_ok();
        if !open {
            return Err(ActivationError::NotOpen { fd, name });
        }
        // SAFETY: the descriptor is open, systemd passed it to this process for it to own,
        // and the caller guarantees nothing else in the process has taken it; the
        // variables are gone, so nothing can take it again.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|source| {
            ActivationError::Inspect {
                fd,
                name: name.clone(),
                source,
            }
        })?;
        fds.push((owned, name));
    }
    Activated::from_fds(fds)
}

/// One passed socket, checked against its name.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn kind(&self) -> Kind {
        match self {
            Listener::Unix(_) => Kind::Unix,
            Listener::Tcp(_) => Kind::Tcp,
        }
    }
}

/// The sockets systemd passed, checked, until the listeners take them.
#[derive(Default)]
pub struct Activated {
    sockets: Vec<(SocketName, Listener)>,
}

impl fmt::Debug for Activated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sockets.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Activated {
    /// Checks each descriptor against its name: a known name, and the kind of socket that
    /// name needs.
    pub fn from_fds(fds: Vec<(OwnedFd, String)>) -> Result<Activated, ActivationError> {
        let mut sockets = Vec::with_capacity(fds.len());
        for (fd, name) in fds {
            let raw = fd.as_raw_fd();
            let Some(socket) = SocketName::from_name(&name) else {
                return Err(ActivationError::UnknownName { fd: raw, name });
            };
            let found = Found::inspect(&fd).map_err(|source| ActivationError::Inspect {
                fd: raw,
                name: name.clone(),
                source,
            })?;
            let listener = match (found.kind(), socket.kind()) {
                (Some(Kind::Unix), Kind::Unix) => Listener::Unix(UnixListener::from(fd)),
                (Some(Kind::Tcp), Kind::Tcp) => Listener::Tcp(TcpListener::from(fd)),
                _ => {
                    return Err(ActivationError::Mismatch {
                        fd: raw,
                        name: socket,
                        found: found.to_string(),
                    });
                }
            };
            sockets.push((socket, listener));
        }
        Ok(Activated { sockets })
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    pub fn contains(&self, name: SocketName) -> bool {
        self.sockets.iter().any(|(n, _)| *n == name)
    }

    /// The passed names, each once, in the order they came.
    pub fn names(&self) -> Vec<SocketName> {
        let mut names = Vec::new();
        for (name, _) in &self.sockets {
            if !names.contains(name) {
                names.push(*name);
            }
        }
        names
    }

    /// Takes the UNIX sockets passed as `name` (none for a TCP name).
    pub fn take_unix(&mut self, name: SocketName) -> Vec<UnixListener> {
        self.take(name, Kind::Unix)
            .filter_map(|l| match l {
                Listener::Unix(l) => Some(l),
                Listener::Tcp(_) => None,
            })
            .collect()
    }

    /// Takes the TCP sockets passed as `name` (none for a UNIX name).
    pub fn take_tcp(&mut self, name: SocketName) -> Vec<TcpListener> {
        self.take(name, Kind::Tcp)
            .filter_map(|l| match l {
                Listener::Tcp(l) => Some(l),
                Listener::Unix(_) => None,
            })
            .collect()
    }

    fn take(&mut self, name: SocketName, kind: Kind) -> impl Iterator<Item = Listener> {
        let (taken, kept) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition::<Vec<_>, _>(|(n, l)| *n == name && l.kind() == kind);
        self.sockets = kept;
        taken.into_iter().map(|(_, l)| l)
    }

    /// Closes, with a warning each, the sockets no listener took.
    pub fn close_unused(self) {
        for (name, _) in &self.sockets {
            tracing::warn!(
                "socket activation: systemd passed {name}, but nothing serves it; closing it"
            );
        }
    }

    /// Turns on the listeners whose sockets were passed (`listen_tls`, `listen_tcp`), so
    /// the config is validated for them, and says once which keys the passed sockets make
    /// moot. Call it before validating `daemon`.
    pub fn apply_to(&self, daemon: &mut DaemonConfig) {
        let names = self.names();
        if names.is_empty() {
            return;
        }
        let mut ignored: Vec<&str> = Vec::new();
        for key in names.iter().flat_map(|n| n.ignored_keys()) {
            if !ignored.contains(key) {
                ignored.push(key);
            }
        }
        let shown: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        tracing::info!(
            "socket activation: serving {} as systemd passed them; their socket units set \
             their addresses, modes and owners, so {} are ignored for them",
            shown.join(", "),
            ignored.join(", ")
        );
        for (name, key, on) in [
            (SocketName::Tls, "listen_tls", &mut daemon.listen_tls),
            (SocketName::Tcp, "listen_tcp", &mut daemon.listen_tcp),
        ] {
            if names.contains(&name) && !*on {
                *on = true;
                tracing::info!(
                    "socket activation: {name} was passed, so {key} is on (to turn it off, \
                     stop and disable {})",
                    name.unit()
                );
            }
        }
    }
}

/// What a descriptor turned out to be.
enum Found {
    NotASocket,
    Socket {
        family: Option<AddressFamily>,
        ty: Option<SockType>,
        listening: bool,
    },
}

impl Found {
    fn inspect(fd: &OwnedFd) -> Result<Found, Errno> {
        let ty = match getsockopt(fd, sockopt::SockType) {
            Ok(ty) => Some(ty),
            Err(Errno::ENOTSOCK) => return Ok(Found::NotASocket),
            // A type nix has no name for.
            Err(Errno::EINVAL) => None,
            Err(e) => return Err(e),
        };
        let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())?.family();
        let listening = getsockopt(fd, sockopt::AcceptConn)?;
        Ok(Found::Socket {
            family,
            ty,
            listening,
        })
    }

    /// The kind of listener this can serve as, if any.
    fn kind(&self) -> Option<Kind> {
        match self {
            Found::Socket {
                family: Some(family),
                ty: Some(SockType::Stream),
                listening: true,
            } => match family {
                AddressFamily::Unix => Some(Kind::Unix),
                AddressFamily::Inet | AddressFamily::Inet6 => Some(Kind::Tcp),
                _ => None,
            },
            _ => None,
        }
    }
}

/// "a UNIX datagram socket", "an IPv4 TCP socket that is not listening", ...
impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Found::Socket {
            family,
            ty,
            listening,
        } = self
        else {
            return f.write_str("not a socket");
        };
        let inet = matches!(family, Some(AddressFamily::Inet | AddressFamily::Inet6));
        let family = match family {
            Some(AddressFamily::Unix) => "a UNIX".to_owned(),
            Some(AddressFamily::Inet) => "an IPv4".to_owned(),
            Some(AddressFamily::Inet6) => "an IPv6".to_owned(),
            Some(other) => format!("a {other:?}"),
            None => "an unknown-family".to_owned(),
        };
        let ty = match ty {
            Some(SockType::Stream) if inet => "TCP",
            Some(SockType::Datagram) if inet => "UDP",
            Some(SockType::Stream) => "stream",
            Some(SockType::Datagram) => "datagram",
            Some(SockType::SeqPacket) => "seqpacket",
            _ => "raw",
        };
        write!(f, "{family} {ty} socket")?;
        if !listening {
            f.write_str(" that is not listening")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::{UnixDatagram, UnixStream};

    use super::*;

    #[test]
    fn names_follow_the_fds_from_3() {
        let parsed = parse(
            42,
            Some("42"),
            Some("3"),
            Some("vmgate:vmgate-ro:vmgate-tcp"),
        );
        let expected = [(3, "vmgate"), (4, "vmgate-ro"), (5, "vmgate-tcp")]
            .map(|(fd, n)| (fd, n.to_owned()))
            .to_vec();
        assert_eq!(parsed.expect("parsed"), expected);
    }

    #[test]
    fn another_pid_or_no_variables_pass_nothing() {
        for (pid, fds) in [
            (Some("41"), Some("2")),
            (None, Some("2")),
            (Some("42"), None),
            (Some("42"), Some("0")),
        ] {
            let parsed = parse(42, pid, fds, Some("vmgate:vmgate-ro"));
            assert!(parsed.expect("parsed").is_empty(), "{pid:?} {fds:?}");
        }
    }

    #[test]
    fn unset_names_are_unknown() {
        let parsed = parse(7, Some("7"), Some("2"), None).expect("parsed");
        assert_eq!(
            parsed,
            [(3, "unknown".to_owned()), (4, "unknown".to_owned())]
        );
    }

    #[test]
    fn a_name_count_that_differs_from_the_fd_count_is_refused() {
        for names in ["vmgate", "vmgate:vmgate-ro:vmgate-tls", ""] {
            let err = parse(7, Some("7"), Some("2"), Some(names)).expect_err(names);
            assert!(
                matches!(err, ActivationError::NameCount { fds: 2, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("LISTEN_FDS=2"), "{err}");
        }
    }

    #[test]
    fn garbage_and_absurd_counts_are_refused() {
        let err = parse(7, Some("seven"), Some("1"), None).expect_err("pid");
        assert!(err.to_string().contains("LISTEN_PID=\"seven\""), "{err}");
        let err = parse(7, Some("7"), Some("-1"), None).expect_err("fds");
        assert!(err.to_string().contains("LISTEN_FDS=\"-1\""), "{err}");
        let err = parse(7, Some("7"), Some("100000"), None).expect_err("too many");
        assert!(matches!(err, ActivationError::TooMany(100000)), "{err}");
    }

    fn unix_listener(dir: &tempfile::TempDir, name: &str) -> OwnedFd {
        UnixListener::bind(dir.path().join(name))
            .expect("bind")
            .into()
    }

    fn tcp_listener() -> OwnedFd {
        TcpListener::bind("127.0.0.1:0").expect("bind").into()
    }

    #[test]
    fn sockets_that_match_their_names_are_handed_out_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut activated = Activated::from_fds(vec![
            (unix_listener(&dir, "a"), "vmgate-ro".into()),
            (tcp_listener(), "vmgate-tcp".into()),
            (tcp_listener(), "vmgate-tcp".into()),
            (unix_listener(&dir, "b"), "vmgate".into()),
        ])
        .expect("checked");
        assert_eq!(
            activated.names(),
            [SocketName::Ro, SocketName::Tcp, SocketName::Rw]
        );
        let ro = activated.take_unix(SocketName::Ro);
        assert_eq!(ro.len(), 1);
        let path = ro[0].local_addr().expect("addr");
        assert_eq!(path.as_pathname(), Some(dir.path().join("a").as_path()));
        assert!(activated.take_tcp(SocketName::Tls).is_empty());
        assert!(activated.take_unix(SocketName::Tcp).is_empty());
        assert_eq!(activated.take_tcp(SocketName::Tcp).len(), 2);
        assert_eq!(activated.take_unix(SocketName::Rw).len(), 1);
        assert!(activated.is_empty());
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        let err = Activated::from_fds(vec![(tcp_listener(), "vmgated.socket".into())])
            .expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains("\"vmgated.socket\""), "{text}");
        assert!(
            text.contains("vmgate, vmgate-ro, vmgate-tls, vmgate-tcp"),
            "{text}"
        );
    }

    #[test]
    fn sockets_of_the_wrong_kind_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (connected, _peer) = UnixStream::pair().expect("pair");
        let datagram = UnixDatagram::bind(dir.path().join("d")).expect("bind");
        let file = std::fs::File::open("/dev/null").expect("open");
        let cases: Vec<(OwnedFd, &str, &str, &str)> = vec![
            (
                tcp_listener(),
                "vmgate",
                "an IPv4 TCP socket",
                "UNIX stream",
            ),
            (
                unix_listener(&dir, "u"),
                "vmgate-tls",
                "a UNIX stream socket",
                "TCP",
            ),
            (
                connected.into(),
                "vmgate-ro",
                "that is not listening",
                "UNIX stream",
            ),
            (datagram.into(), "vmgate", "a UNIX datagram socket", "UNIX"),
            (file.into(), "vmgate-tcp", "not a socket", "TCP"),
        ];
        for (fd, name, found, expected) in cases {
            let err = Activated::from_fds(vec![(fd, name.into())]).expect_err(name);
            let text = err.to_string();
            assert!(
                matches!(err, ActivationError::Mismatch { .. }),
                "{name}: {text}"
            );
            assert!(text.contains(&format!("({name})")), "{text}");
            assert!(text.contains(found), "{text}");
            assert!(
                text.contains(&format!("must be a listening {expected}")),
                "{text}"
            );
        }
    }

    #[test]
    fn passed_tcp_and_tls_turn_their_listeners_on() {
        let mut daemon = vmgate_config::Config::default().daemon;
        assert!(!daemon.listen_tls && !daemon.listen_tcp);
        let activated =
            Activated::from_fds(vec![(tcp_listener(), "vmgate-tcp".into())]).expect("checked");
        activated.apply_to(&mut daemon);
        assert!(daemon.listen_tcp && !daemon.listen_tls);
        activated.close_unused();
    }
}
