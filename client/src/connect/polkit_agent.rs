//! A polkit text agent for this process, as virsh runs one: when the daemon answers that
//! polkit wants the caller to authenticate and this process has a terminal, the client
//! starts `pkttyagent --process <own pid>`, waits until it has registered with polkit, and
//! connects again telling the daemon it may let polkit ask (the daemon then passes
//! polkit's allow-user-interaction flag, and polkit prompts through the agent on this
//! terminal). The agent lives as long as the connection.

use std::{
    io::{IsTerminal, Read},
    process::{Child, Command, Stdio},
};

/// The text the daemon's refusal carries when polkit would allow after authentication.
pub const NEEDS_AUTHENTICATION: &str = "polkit requires authentication";

/// A running `pkttyagent` registered for this process.
pub struct TtyAgent {
    child: Child,
}

impl std::fmt::Debug for TtyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtyAgent")
            .field("pid", &self.child.id())
            .finish()
    }
}

impl TtyAgent {
    /// Starts the agent when stdin is a terminal and `pkttyagent` runs; None otherwise.
    /// Returns once it has registered (it closes its notify descriptor, here its stdout).
    pub fn start() -> Option<TtyAgent> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let mut child = Command::new("pkttyagent")
            .args(["--process", &std::process::id().to_string()])
            // Not --fallback: polkit consults a fallback agent only for a subject in a
            // login session, and a client without logind has none.
            .args(["--notify-fd", "1"])
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let mut notify = child.stdout.take()?;
        // EOF once the agent registered and closed the descriptor (or exited).
        let mut sink = Vec::new();
        let _ = notify.read_to_end(&mut sink);
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        Some(TtyAgent { child })
    }
}

impl Drop for TtyAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
