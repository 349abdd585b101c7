//! polkit in front of the API, at two levels, as libvirt has them.
//!
//! - The UNIX sockets (`auth_unix_rw`/`auth_unix_ro = "polkit"`): a connection may be used
//!   once polkit allows its process `org.vmgate.unix.manage` (read-write socket) or
//!   `org.vmgate.unix.monitor` (read-only). Asked at the connection's first call; a yes or
//!   a no is kept for the connection, an unreachable polkit is asked again next time.
//! - The access driver (`access_drivers = ["polkit"]`): every call is the action
//!   `org.vmgate.api.<object>.<permission>` with the details `connect_driver`, and for a
//!   domain's calls `domain_name` and `domain_uuid`, so a rule can allow a group to start
//!   some guests only. `rpc::authorize` asks: for calls on no domain in its layer, for a
//!   call on a domain once the request names it ([`CallAccess::domain`]), and for `list`
//!   the domains the caller may `getattr`. Only local processes can be judged: remote
//!   callers are refused under this driver. Answers are [`AccessError`]s, which
//!   `rpc::status` turns into gRPC statuses.
//!
//! A caller on a terminal may ask to authenticate interactively (the client runs a polkit
//! text agent for itself and sends [`INTERACTIVE_HEADER`]); polkit then waits for that
//! agent instead of answering "needs authentication".

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::{
    UnixPeer,
    permissions::Permission,
    polkit::{Polkit, PolkitError, UNIX_MANAGE, UNIX_MONITOR, Verdict, denial},
};

/// Request header by which a client on a terminal says it runs a polkit agent.
pub const INTERACTIVE_HEADER: &str = "vmgate-polkit-interactive";

/// Why polkit's answer is not a yes; `rpc::status` turns it into the call's status.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// polkit said no, or wants an authentication the caller cannot give.
    #[error("{0}")]
    Denied(String),
    /// polkit could not be asked.
    #[error("{0}")]
    Unavailable(String),
    /// A remote caller under the polkit access driver, which only judges local processes.
    #[error(
        "access_drivers = [\"polkit\"]: polkit can only judge local processes, so remote \
         (TCP and TLS) callers are refused; connect through the local UNIX socket, or \
         remove the polkit access driver"
    )]
    RemoteRefused,
}

fn polkit_verdict(action: &str, result: Result<Verdict, PolkitError>) -> Result<(), AccessError> {
    match result {
        Ok(Verdict::Allowed) => Ok(()),
        Ok(verdict) => Err(AccessError::Denied(denial(action, verdict))),
        Err(e) => Err(AccessError::Unavailable(e.to_string())),
    }
}

/// The polkit check a UNIX socket connection must pass (`auth_unix_* = "polkit"`).
pub struct ConnPolkit {
    polkit: Arc<Polkit>,
    action: &'static str,
    /// polkit's yes or no, once it gave one.
    verdict: OnceCell<Verdict>,
}

impl ConnPolkit {
    /// For a connection on the read-only socket or the read-write one.
    pub fn new(polkit: Arc<Polkit>, readonly: bool) -> ConnPolkit {
        ConnPolkit {
            polkit,
            action: if readonly { UNIX_MONITOR } else { UNIX_MANAGE },
            verdict: OnceCell::new(),
        }
    }

    /// Passes once polkit allows the connection's process.
    pub async fn check(&self, peer: &UnixPeer, interactive: bool) -> Result<(), AccessError> {
        if let Some(verdict) = self.verdict.get() {
            return polkit_verdict(self.action, Ok(*verdict));
        }
        let result = self.polkit.check(self.action, peer, &[], interactive).await;
        if let Ok(verdict @ (Verdict::Allowed | Verdict::Denied)) = result {
            let _ = self.verdict.set(verdict);
        }
        polkit_verdict(self.action, result)
    }
}

/// The access driver, shared by every call.
pub struct AccessDriver {
    pub polkit: Arc<Polkit>,
    /// The `connect_driver` detail: "QEMU" or "Test", as libvirt names its drivers.
    pub connect_driver: &'static str,
}

/// One call's access checks under the access driver, for its handler: present in the
/// request's extensions exactly when the driver is on.
#[derive(Clone)]
pub struct CallAccess {
    driver: Arc<AccessDriver>,
    peer: UnixPeer,
    interactive: bool,
    /// The call's own permission.
    pub permission: Permission,
}

impl CallAccess {
    pub fn new(
        driver: Arc<AccessDriver>,
        peer: UnixPeer,
        interactive: bool,
        permission: Permission,
    ) -> CallAccess {
        CallAccess {
            driver,
            peer,
            interactive,
            permission,
        }
    }

    /// Checks the call's permission on no domain in particular.
    pub async fn connect(&self) -> Result<(), AccessError> {
        self.check(self.permission, None).await
    }

    /// Checks the call's permission on the domain `name` with `uuid`.
    pub async fn domain(&self, name: &str, uuid: &str) -> Result<(), AccessError> {
        self.check(self.permission, Some((name, uuid))).await
    }

    /// Whether the caller may `permission` on the domain (for filtering lists); an
    /// unreachable polkit is an error, not a no.
    pub async fn allows(
        &self,
        permission: Permission,
        name: &str,
        uuid: &str,
    ) -> Result<bool, AccessError> {
        match self.check(permission, Some((name, uuid))).await {
            Ok(()) => Ok(true),
            Err(AccessError::Denied(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn check(
        &self,
        permission: Permission,
        domain: Option<(&str, &str)>,
    ) -> Result<(), AccessError> {
        let action = permission.action_id();
        let mut details = vec![("connect_driver", self.driver.connect_driver)];
        if let Some((name, uuid)) = domain {
            details.push(("domain_name", name));
            details.push(("domain_uuid", uuid));
        }
        let result = self
            .driver
            .polkit
            .check(&action, &self.peer, &details, self.interactive)
            .await;
        polkit_verdict(&action, result)
    }
}
