//! Asking polkit: one connection to the system bus's `org.freedesktop.PolicyKit1`
//! authority, made at the first question and kept (made again after it breaks), and one
//! question per check: may this local process (pid, its start time read when the
//! connection was accepted, uid) do this action, with these details? polkit answers from
//! the actions' defaults and the administrator's rules. Anything but a clear answer (no
//! bus, no polkitd, an error) is an error the caller reports, never an allow.

use std::collections::HashMap;

use tokio::sync::Mutex;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::UnixPeer;

/// The action guarding the read-write UNIX socket (`auth_unix_rw = "polkit"`).
pub const UNIX_MANAGE: &str = "org.vmgate.unix.manage";
/// The action guarding the read-only UNIX socket (`auth_unix_ro = "polkit"`).
pub const UNIX_MONITOR: &str = "org.vmgate.unix.monitor";

/// polkit's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Allowed after authentication, which the subject has not done (no agent answered).
    NeedsAuthentication,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PolkitError {
    #[error(
        "polkit cannot be asked ({0}); is polkitd running and the system D-Bus reachable? \
         Access is refused until it is"
    )]
    Unreachable(String),
    #[error("the caller's process is unknown (no pid from the socket); polkit cannot judge it")]
    NoPid,
}

/// The daemon's polkit client.
#[derive(Default)]
pub struct Polkit {
    authority: Mutex<Option<AuthorityProxy<'static>>>,
}

impl Polkit {
    pub fn new() -> Polkit {
        Polkit::default()
    }

    /// Asks whether `peer` may do `action`; `details` go to the rules
    /// (`action.lookup("domain_name")`). With `interactive`, polkit may ask the caller's
    /// authentication agent and waits for it.
    pub async fn check(
        &self,
        action: &str,
        peer: &UnixPeer,
        details: &[(&str, &str)],
        interactive: bool,
    ) -> Result<Verdict, PolkitError> {
        let pid = peer
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(PolkitError::NoPid)?;
        let subject = Subject::new_for_pid(pid, peer.pid_start_time, Some(peer.uid))
            .map_err(|e| PolkitError::Unreachable(format!("subject for pid {pid}: {e}")))?;
        let details: HashMap<&str, &str> = details.iter().copied().collect();
        let flags = if interactive {
            CheckAuthorizationFlags::ALLOW_USER_INTERACTION
        } else {
            CheckAuthorizationFlags::empty()
        };
        let authority = self.authority().await?;
        let result = authority
            .check_authorization(&subject, action, &details, flags, "")
            .await;
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                // The connection may have broken (polkitd or the bus restarted): the next
                // question makes a new one.
                *self.authority.lock().await = None;
                return Err(PolkitError::Unreachable(e.to_string()));
            }
        };
        Ok(if answer.is_authorized {
            Verdict::Allowed
        } else if answer.is_challenge {
            Verdict::NeedsAuthentication
        } else {
            Verdict::Denied
        })
    }

    async fn authority(&self) -> Result<AuthorityProxy<'static>, PolkitError> {
        let mut slot = self.authority.lock().await;
        if let Some(proxy) = slot.as_ref() {
            return Ok(proxy.clone());
        }
        let unreachable = |e: zbus::Error| PolkitError::Unreachable(e.to_string());
        let bus = zbus::Connection::system().await.map_err(unreachable)?;
        let proxy = AuthorityProxy::new(&bus).await.map_err(unreachable)?;
        *slot = Some(proxy.clone());
        Ok(proxy)
    }
}

/// The words for a refusal: what was asked, and how to get it.
pub fn denial(action: &str, verdict: Verdict) -> String {
    match verdict {
        Verdict::NeedsAuthentication => format!(
            "polkit requires authentication for {action}; run the client on a terminal to \
             authenticate, or have an administrator add a polkit rule granting it"
        ),
        _ => format!("polkit denied {action}; an administrator can grant it with a polkit rule"),
    }
}
