//! Console operations on running guests: their live sessions, cutting one, changing the
//! VNC password (live and in the stored definition), and reading the audit trail.

use time::OffsetDateTime;
use vmgate_config::{Secret, domain::ConnectedPolicy};

use super::{
    CoreError, Manager,
    inventory::{Slot, Target},
    views::SessionView,
};
use crate::{
    audit::AuditRecord,
    vnc::gateway::{GatewayError, PasswordChange},
};

/// The most audit records one query returns.
pub const MAX_AUDIT_RECORDS: u32 = 10_000;

/// A password change as the API asks for it.
#[derive(Clone, Debug)]
pub struct SetPassword {
    /// None removes the guest's own password.
    pub password: Option<Secret>,
    pub valid_to: Option<OffsetDateTime>,
    /// None: the guest's own `connected` setting.
    pub policy: Option<ConnectedPolicy>,
}

impl Manager {
    pub fn console_sessions(&self, target: &Target) -> Result<Vec<SessionView>, CoreError> {
        let slot = self.slot_of(target)?;
        with_gateway(&slot, |g| {
            Ok(g.sessions().into_iter().map(SessionView::from).collect())
        })
    }

    pub fn disconnect_session(&self, target: &Target, id: u64, by: &str) -> Result<(), CoreError> {
        let slot = self.slot_of(target)?;
        with_gateway(&slot, |g| g.disconnect(id, by).map_err(gateway_error))
    }

    /// Changes the stored password and, when the guest runs, the live one; returns how many
    /// sessions were cut.
    pub async fn set_password(
        &self,
        target: &Target,
        change: SetPassword,
        by: &str,
    ) -> Result<usize, CoreError> {
        if let Some(p) = &change.password
            && p.expose().len() > 8
        {
            return Err(CoreError::InvalidRequest(
                "VNC passwords are at most 8 bytes (the RFB DES challenge uses 8)".into(),
            ));
        }
        let slot = self.slot_of(target)?;
        let _op = slot.op.lock().await;
        let mut def = slot.data().def.clone();
        let Some(graphics) = def.graphics.as_mut() else {
            return Err(CoreError::NoConsole(def.name));
        };
        let policy = change.policy.unwrap_or(graphics.connected);
        graphics.passwd = change.password.clone();
        graphics.passwd_valid_to = change.valid_to;
        def.validate_stored()
            .map_err(|e| CoreError::InvalidRequest(e.to_string()))?;

        let running = slot
            .data()
            .run
            .as_ref()
            .is_some_and(|r| r.gateway.is_some());
        let cut = if running {
            let live = PasswordChange {
                password: change.password,
                valid_to: change.valid_to,
                policy,
            };
            with_gateway(&slot, |g| {
                g.change_password(live, by).map_err(gateway_error)
            })?
        } else {
            0
        };
        self.store
            .upsert_domain(&super::inventory::record(slot.uuid, &def, false))
            .await?;
        slot.data().def = def;
        Ok(cut)
    }

    /// The newest audit records (oldest first), of one domain or of all.
    pub async fn audit(
        &self,
        domain: Option<&Target>,
        since: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, CoreError> {
        let name = match domain {
            Some(target) => Some(self.slot_of(target)?.data().def.name.clone()),
            None => None,
        };
        let limit = if limit == 0 {
            1000
        } else {
            limit.min(MAX_AUDIT_RECORDS)
        };
        Ok(self
            .options
            .audit
            .query(name.as_deref(), since, limit)
            .await?)
    }
}

fn with_gateway<T>(
    slot: &Slot,
    f: impl FnOnce(&crate::vnc::gateway::Gateway) -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    let d = slot.data();
    match d.run.as_ref().and_then(|r| r.gateway.as_ref()) {
        Some(gateway) => f(gateway),
        None => Err(CoreError::NoConsole(d.def.name.clone())),
    }
}

fn gateway_error(e: GatewayError) -> CoreError {
    match e {
        GatewayError::NoSession(_) => CoreError::NoSession(e.to_string()),
        GatewayError::SessionsOpen(_) | GatewayError::FipsPassword => {
            CoreError::ConsoleState(e.to_string())
        }
        GatewayError::Listen(_) => CoreError::InvalidRequest(e.to_string()),
    }
}
