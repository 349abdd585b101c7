//! Who is calling and what they may do. Transports produce a `Peer` for each connection;
//! the `AuthLayer` turns it into an `Identity`, looks the method up in the one permission
//! table, and refuses before any handler runs. Handlers never check permissions by hand.

mod layer;
pub mod permissions;

pub use layer::{AuthLayer, READONLY_HEADER};

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

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Identity {
    pub peer: UnixPeer,
}

impl Identity {
    pub fn readonly(&self) -> bool {
        self.peer.readonly
    }
}
