//! Who a console client is, as far as the network can tell: an IP address for TCP
//! consoles, the peer uid for UNIX-socket consoles. Lockout counts failures per source.

use std::{fmt, net::IpAddr};

/// The unit the brute-force lockout counts failures for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Ip(IpAddr),
    Uid(u32),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::Uid(uid) => write!(f, "uid {uid}"),
        }
    }
}
