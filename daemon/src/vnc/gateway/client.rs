//! One console client, from accept to close: the handshake under the timeout and the
//! pending bound (with the lockout check and failure counting), admission under the share
//! policy, the relay to the guest, and an audit record at every step.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use vmgate_config::acl::Principal;

use super::{
    Shared,
    handshake::{
        Authenticated, Conn, HANDSHAKE_BUFFER, HandshakeError, Offer, authenticate,
        exchange_versions, refuse,
    },
    judge::Judge,
    relay::{RelayEnd, open_backend, relay},
};
use crate::{
    audit::{AuditEvent, AuditRecord},
    driver::ConsoleStream,
    vnc::{
        rfb::{ProtocolVersion, encode_security_failure, io::RfbStream},
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
    let Some((pending_id, evicted)) = shared.enqueue_pending(source) else {
        let reason = "refused: every pending connection of this console is the only one of its \
                      source (vnc_max_pending)";
        return anonymous.record(AuditEvent::Disconnect, reason);
    };
    let conn: Conn = RfbStream::new(Box::new(stream), HANDSHAKE_BUFFER);
    let timeout = shared.services.settings.handshake_timeout;
    let services = &shared.services;
    let judge = Judge::new(&services.throttle, &services.gates, source);
    let outcome = tokio::select! {
        _ = evicted.cancelled() => Err(Ended::Evicted),
        _ = stop.cancelled() => Err(Ended::Stopped),
        r = tokio::time::timeout(timeout, handshake(&shared, conn, &judge)) => match r {
            Ok(r) => r.map_err(Ended::Handshake),
            Err(_) => Err(Ended::Timeout),
        },
    };
    shared.dequeue_pending(pending_id);
    let (auth, conn) = match outcome {
        Ok(done) => done,
        Err(ended) => return end_handshake(&shared, ended, &client, source, judge.counted()),
    };
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
    // Not kept for the session: its capacity is whatever the guest handshake reserved.
    to_client.extend(guest_leftover);
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

/// Version, lockout check, authentication, ClientInit. Each credential is judged under the
/// lockout by `judge`, which counts a wrong one before the client hears of it, so that it
/// cannot try again ahead of the count.
async fn handshake(
    shared: &Shared,
    mut conn: Conn,
    judge: &Judge<'_>,
) -> Result<(Authenticated, Conn), HandshakeError> {
    let version = exchange_versions(&mut conn).await?;
    if let Some(reason) = judge.locked_out() {
        refuse(&mut conn, version, &reason).await?;
        return Err(HandshakeError::Refused {
            security: None,
            reason,
        });
    }
    let password = shared.password.borrow().clone();
    let offer = Offer {
        password: &password,
        tls: shared.services.vencrypt.as_deref(),
        sasl: shared.services.sasl.as_deref(),
        judge,
    };
    let admit = |who: &Principal| shared.sessions.admits(who);
    authenticate(conn, version, &offer, &admit).await
}

/// Refuses a client over the daemon's console limit (`vnc_max_sessions`) with an RFB 3.3
/// refusal it can show, written without waiting for its version (a 3.3 server speaks
/// first and its clients answer in 3.3). A few refusals linger a second so the client reads
/// the reason before the close; the rest are closed at once.
pub(super) fn refuse_busy<S: ConsoleStream>(shared: &Arc<Shared>, stream: S, client: &str) {
    const REASON: &str =
        "too many console sessions on this host (vnc_max_sessions); try again later";
    let mut record = AuditRecord::new(AuditEvent::Disconnect, &shared.domain);
    record.source = client.to_owned();
    record.reason = format!("refused: {REASON}");
    shared.services.audit.record(record);
    let Ok(permit) = shared.refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let refusal = encode_busy_refusal(REASON);
        let linger = async {
            stream.write_all(&refusal).await?;
            stream.flush().await?;
            let mut version = [0; ProtocolVersion::LEN];
            stream.read_exact(&mut version).await.map(drop)
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), linger).await;
        drop(permit);
    });
}

/// `RFB 003.003`, then security type 0 (failed) with the reason.
fn encode_busy_refusal(reason: &str) -> Vec<u8> {
    let mut out = ProtocolVersion::V3_3.encode().to_vec();
    out.extend_from_slice(&encode_security_failure(ProtocolVersion::V3_3, reason));
    out
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
