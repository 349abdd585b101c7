//! The connection a run of `vmgate` uses: opened on the first command that needs the daemon,
//! then kept for every later command of the shell or of stdin. Commands that need no daemon
//! (`uri`, `help`) never open it.

use vmgate::{ClientError, ConnectUri, Connection};

/// The URI and mode chosen on the command line, and the connection once it is open.
#[derive(Debug)]
pub struct Session {
    uri: ConnectUri,
    readonly: bool,
    conn: Option<Connection>,
}

impl Session {
    pub fn new(uri: ConnectUri, readonly: bool) -> Session {
        Session {
            uri,
            readonly,
            conn: None,
        }
    }

    pub fn uri(&self) -> &ConnectUri {
        &self.uri
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The open connection, opening it first if this is the first command that needs it. A
    /// failed open is not remembered: the next command tries again (the daemon may have been
    /// started meanwhile).
    pub async fn conn(&mut self) -> Result<&mut Connection, ClientError> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => Connection::open(&self.uri, self.readonly).await?,
        };
        Ok(self.conn.insert(conn))
    }
}
