//! One console client, from accept to close: the handshake under the timeout and the
//! pending bound (with the lockout check and failure counting), admission under the share
//! policy, the relay to the guest, and an audit record at every step.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use vmgate_config::acl::Principal;

use super::{
    Shared,
    handshake::{
        Authenticated, Conn, HANDSHAKE_BUFFER, HandshakeError, Offer, authenticate,
        exchange_versions, refuse,
    },
    relay::{RelayEnd, open_backend, relay},
};
use crate::{
    driver::ConsoleStream,
    vnc::{
        audit::{AuditEvent, AuditRecord},
        rfb::io::RfbStream,
        sessions::Joining,
        source::Source,
        throttle::FailureOutcome,
    },
};

/// Writes audit records about one client, with what is known of it so far.
struct ClientAudit<'a> {
    shared: &'a Shared,
    client: &'a str,
    security: &'a str,
    identity: &'a str,
}

impl ClientAudit<'_> {
    fn record(&self, event: AuditEvent, reason: &str) {
        let mut record = AuditRecord::new(event, &self.shared.domain);
        record.source = self.client.to_owned();
        record.security_type = self.security.to_owned();
        record.identity = self.identity.to_owned();
        record.reason = reason.to_owned();
        self.shared.services.audit.record(record);
    }
}

/// Why a connection ended before it became a session.
enum Ended {
    Handshake(HandshakeError),
    Timeout,
    Evicted,
    Stopped,
}

/// Serves one client until it leaves or is cut.
pub(super) async fn serve_client<S: ConsoleStream>(
    shared: Arc<Shared>,
    stream: S,
    client: String,
    source: Source,
    stop: CancellationToken,
) {
    let anonymous = ClientAudit {
        shared: &shared,
        client: &client,
        security: "",
        identity: "",
    };
    anonymous.record(AuditEvent::Connect, "");
    let (pending_id, evicted) = shared.enqueue_pending();
    let conn: Conn = RfbStream::new(Box::new(stream), HANDSHAKE_BUFFER);
    let timeout = shared.services.settings.handshake_timeout;
    // What counting a wrong credential did, for the audit trail once the handshake ends.
    let counted = Mutex::new(None);
    let outcome = tokio::select! {
        _ = evicted.cancelled() => Err(Ended::Evicted),
        _ = stop.cancelled() => Err(Ended::Stopped),
        r = tokio::time::timeout(timeout, handshake(&shared, conn, source, &counted)) => match r {
            Ok(r) => r.map_err(Ended::Handshake),
            Err(_) => Err(Ended::Timeout),
        },
    };
    shared.dequeue_pending(pending_id);
    let (auth, conn) = match outcome {
        Ok(done) => done,
        Err(ended) => {
            let counted = counted.into_inner().unwrap_or_else(PoisonError::into_inner);
            return end_handshake(&shared, ended, &client, source, counted);
        }
    };
    shared.services.throttle.record_success(source);
    let identity = auth.principal.to_string();
    let audit = ClientAudit {
        shared: &shared,
        client: &client,
        security: auth.security,
        identity: &identity,
    };
    audit.record(AuditEvent::AuthSuccess, "");

    let joining = Joining {
        client: client.clone(),
        security_type: auth.security,
        principal: auth.principal.clone(),
        credential: auth.credential.clone(),
        shared: auth.shared,
    };
    let member = match shared.sessions.join(joining) {
        Ok(member) => member,
        Err(refused) => return audit.record(AuditEvent::Disconnect, &refused.to_string()),
    };
    let (guest, server_init, guest_leftover) = match open_backend(shared.backend.as_ref()).await {
        Ok(parts) => parts,
        Err(e) => {
            let reason = format!("the guest's console did not answer: {e}");
            return audit.record(AuditEvent::Disconnect, &reason);
        }
    };
    let (stream, client_leftover) = conn.into_parts();
    let mut to_client = server_init;
    to_client.extend_from_slice(&guest_leftover);
    let end = relay(
        stream,
        guest,
        client_leftover,
        to_client,
        &member.counters,
        &member.cut,
    )
    .await;
    let (event, reason) = match end {
        RelayEnd::Cut => {
            let cut = member.cut.reason();
            let event = match &cut {
                Some(r) if r.revoked => AuditEvent::Revoked,
                _ => AuditEvent::Disconnect,
            };
            let reason = cut.map_or_else(|| "cut".to_owned(), |r| r.text);
            tracing::info!(domain = %shared.domain, session = member.id, %client, "console session cut: {reason}");
            (event, reason)
        }
        RelayEnd::ClientClosed => (
            AuditEvent::Disconnect,
            "client closed the connection".into(),
        ),
        RelayEnd::GuestClosed => (AuditEvent::Disconnect, "the guest's console closed".into()),
        RelayEnd::Error(e) => (AuditEvent::Disconnect, format!("connection error: {e}")),
    };
    audit.record(event, &reason);
}

/// Version, lockout check, authentication, ClientInit. A wrong credential is counted
/// towards the lockout (into `counted`) before the client hears of it, so that it cannot
/// try again ahead of the count.
async fn handshake(
    shared: &Shared,
    mut conn: Conn,
    source: Source,
    counted: &Mutex<Option<FailureOutcome>>,
) -> Result<(Authenticated, Conn), HandshakeError> {
    let version = exchange_versions(&mut conn).await?;
    if let Err(remaining) = shared.services.throttle.check(source) {
        let reason = format!(
            "locked out: too many failed logins from {source}; try again in {} s",
            remaining.as_secs().max(1)
        );
        refuse(&mut conn, version, &reason).await?;
        return Err(HandshakeError::Refused {
            security: None,
            reason,
        });
    }
    let password = shared.password.borrow().clone();
    let count_failure = || {
        let outcome = shared.services.throttle.record_failure(source);
        *counted.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    };
    let offer = Offer {
        password: &password,
        tls: shared.services.vencrypt.as_deref(),
        sasl: shared.services.sasl.as_deref(),
        count_failure: &count_failure,
    };
    let admit = |who: &Principal| shared.sessions.admits(who);
    authenticate(conn, version, &offer, &admit).await
}

/// Records how a connection that never became a session ended; `counted` is what
/// counting its wrong credential did, if it had one.
fn end_handshake(
    shared: &Shared,
    ended: Ended,
    client: &str,
    source: Source,
    counted: Option<FailureOutcome>,
) {
    let security = match &ended {
        Ended::Handshake(e) => e.security().unwrap_or_default(),
        _ => "",
    };
    let audit = ClientAudit {
        shared,
        client,
        security,
        identity: "",
    };
    let (event, reason) = match ended {
        Ended::Handshake(e) if e.counts_as_failure() => {
            audit.record(AuditEvent::AuthFailure, &e.to_string());
            if let Some(FailureOutcome::LockedOut(d)) = counted {
                let lock = format!(
                    "too many failed logins from {source}; locked out for {} s",
                    d.as_secs()
                );
                tracing::warn!(domain = %shared.domain, %client, "{lock}");
                audit.record(AuditEvent::Lockout, &lock);
            }
            return;
        }
        Ended::Handshake(e @ HandshakeError::Refused { .. }) => {
            (AuditEvent::AuthFailure, e.to_string())
        }
        Ended::Handshake(e) => (AuditEvent::Disconnect, format!("handshake failed: {e}")),
        Ended::Timeout => (AuditEvent::Disconnect, "handshake timed out".to_owned()),
        Ended::Evicted => (
            AuditEvent::Disconnect,
            "evicted: too many unauthenticated connections (vnc_max_pending)".to_owned(),
        ),
        Ended::Stopped => (AuditEvent::Disconnect, "the guest stopped".to_owned()),
    };
    audit.record(event, &reason);
}
