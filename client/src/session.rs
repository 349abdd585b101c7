//! The connection a run of `vmgate` uses: opened on the first command that needs the daemon,
//! then kept for every later command of the shell or of stdin. Commands that need no daemon
//! (`uri`, `help`) never open it. When the commands come from stdin, the session also owns
//! that script, so that a command reading "stdin" (`vnc-passwd --password-stdin`) takes the
//! script's next line, as a command in a shell script reads the script's following lines.

use std::fmt;
use std::io::BufRead;

use vmgate::{ClientError, ConnectUri, Connection};

/// The URI and mode chosen on the command line, and the connection once it is open.
#[derive(Debug)]
pub struct Session {
    uri: ConnectUri,
    readonly: bool,
    script: Option<Script>,
    conn: Option<Connection>,
}

/// Commands read from stdin, one per line.
struct Script(Box<dyn BufRead>);

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Script")
    }
}

impl Session {
    pub fn new(uri: ConnectUri, readonly: bool) -> Session {
        Session {
            uri,
            readonly,
            script: None,
            conn: None,
        }
    }

    pub fn uri(&self) -> &ConnectUri {
        &self.uri
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Takes the commands from `input`, one per line, from now on.
    pub fn set_script(&mut self, input: Box<dyn BufRead>) {
        self.script = Some(Script(input));
    }

    /// Whether the commands come from stdin: then there is no one at a terminal to answer a
    /// prompt, and stdin's next line is the script's.
    pub fn reads_script(&self) -> bool {
        self.script.is_some()
    }

    /// The script's next line without its line ending; `None` at its end or without a script.
    pub fn script_line(&mut self) -> Option<std::io::Result<String>> {
        let Script(input) = self.script.as_mut()?;
        input.lines().next()
    }

    /// The script itself, for a command that reads stdin; `None` without a script.
    pub fn script_input(&mut self) -> Option<&mut dyn BufRead> {
        match &mut self.script {
            Some(Script(input)) => Some(input.as_mut()),
            None => None,
        }
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
