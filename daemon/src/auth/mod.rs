//! Who is calling and what they may do, with no transport in it: the `Peer` a transport
//! establishes for each connection and the `Identity` a request carries, SASL logins
//! (`login`, `sasl`, `scram`, Kerberos in `gssapi`, the security layers of `sasl_layer`)
//! against the user database (`users`), the one method -> permission table
//! (`permissions`), and polkit (`polkit`, `access`). On the API, `rpc::authorize` applies
//! it once per call before any handler runs, and handlers never check permissions by
//! hand; the console gateway (`vnc`) uses the same logins and user database.
//!
//! A TLS client is authenticated by its certificate, verified in the handshake (see
//! `rpc::tls_listen`); by the time a request is authorized it is trusted as a read-write
//! caller (`auth_tls = "none"`), as libvirtd trusts it.

pub mod access;
#[cfg(feature = "gssapi")]
pub mod gssapi;
pub mod login;
pub mod permissions;
pub mod polkit;
pub mod sasl;
pub mod sasl_layer;
pub mod scram;
pub mod users;

use std::{fmt, net::SocketAddr};

/// A caller on one of the UNIX sockets, as the kernel reported it at accept time.
#[derive(Clone, Debug)]
pub struct UnixPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// The pid's start time (field 22 of /proc/PID/stat), read at accept, so a later check
    /// (polkit) cannot be fooled by a recycled pid.
    pub pid_start_time: Option<u64>,
    /// Connected through the read-only socket.
    pub readonly: bool,
}

/// The other end of one API connection, as its transport established it.
#[derive(Clone, Debug)]
pub enum Peer {
    Unix(UnixPeer),
    /// A client that completed the TLS handshake; `dn` is its certificate's subject, absent
    /// only with `tls_no_verify_certificate` (no certificate was asked for).
    Tls {
        addr: SocketAddr,
        dn: Option<String>,
    },
    /// A plain TCP client (`listen_tcp`): nobody until it logs in with SASL.
    Tcp {
        addr: SocketAddr,
    },
}

/// How a caller reached the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tls,
    Tcp,
}

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Identity {
    pub peer: Peer,
    /// Limited to read-only permissions (the ro socket, or a client asking for it).
    pub readonly: bool,
    /// The SASL user the connection logged in as, when its transport asks for a login.
    pub user: Option<String>,
}

impl Identity {
    /// The identity a connection starts with before any client request flags: read-only
    /// when it came through the ro socket.
    pub fn of(peer: Peer) -> Identity {
        let readonly = matches!(&peer, Peer::Unix(p) if p.readonly);
        Identity {
            peer,
            readonly,
            user: None,
        }
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    pub fn transport(&self) -> Transport {
        match self.peer {
            Peer::Unix(_) => Transport::Unix,
            Peer::Tls { .. } => Transport::Tls,
            Peer::Tcp { .. } => Transport::Tcp,
        }
    }

    /// The client certificate's DN, for TLS callers that presented one.
    pub fn dn(&self) -> Option<&str> {
        match &self.peer {
            Peer::Tls { dn, .. } => dn.as_deref(),
            Peer::Unix(_) | Peer::Tcp { .. } => None,
        }
    }

    /// The UNIX peer credentials, for callers on the local sockets.
    pub fn unix(&self) -> Option<&UnixPeer> {
        match &self.peer {
            Peer::Unix(p) => Some(p),
            Peer::Tls { .. } | Peer::Tcp { .. } => None,
        }
    }
}

/// Who is asking, for logs and audit records: `uid 1000 (pid 4242)` or
/// `x509 C=GB,O=Example,CN=client1 from 192.0.2.7:50412`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "sasl {user} via ")?;
        }
        match &self.peer {
            Peer::Unix(p) => match p.pid {
                Some(pid) => write!(f, "uid {} (pid {pid})", p.uid),
                None => write!(f, "uid {}", p.uid),
            },
            Peer::Tls { addr, dn: Some(dn) } => write!(f, "x509 {dn} from {addr}"),
            Peer::Tls { addr, dn: None } => write!(f, "unverified TLS client from {addr}"),
            Peer::Tcp { addr } => write!(f, "TCP client {addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(readonly: bool) -> Peer {
        Peer::Unix(UnixPeer {
            uid: 1000,
            gid: 1000,
            pid: Some(42),
            pid_start_time: None,
            readonly,
        })
    }

    #[test]
    fn the_ro_socket_starts_read_only_and_tls_read_write() {
        assert!(Identity::of(unix(true)).readonly());
        assert!(!Identity::of(unix(false)).readonly());
        let tls = Identity::of(Peer::Tls {
            addr: SocketAddr::from(([192, 0, 2, 7], 50412)),
            dn: Some("O=Example,CN=client1".into()),
        });
        assert!(!tls.readonly());
        assert_eq!(tls.transport(), Transport::Tls);
        assert_eq!(tls.dn(), Some("O=Example,CN=client1"));
        assert_eq!(
            tls.to_string(),
            "x509 O=Example,CN=client1 from 192.0.2.7:50412"
        );
        assert_eq!(Identity::of(unix(false)).to_string(), "uid 1000 (pid 42)");
    }
}
