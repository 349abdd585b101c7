//! The server side of the RFB handshake as the gateway speaks it to clients: version
//! (3.3, 3.7 or 3.8), the security types this console offers, the authentication itself,
//! and ClientInit. It decides nothing about sessions or backends; it reports who the
//! client proved to be, or why it did not.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::vnc::{
    password::{PasswordState, Unusable},
    rfb::{
        ClientInit, ProtocolVersion, RfbError, SecurityResult, SecurityType,
        encode_security_failure, encode_security_type_v3_3, encode_security_types,
        generate_challenge, io::RfbStream, parse_security_choice, verify_vnc_auth,
    },
    sessions::Credential,
};

/// What the client proved.
#[derive(Debug)]
pub struct Authenticated {
    pub security: SecurityType,
    pub credential: Credential,
    pub identity: String,
    pub shared: bool,
}

/// Why a handshake ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Wrong credentials: counts towards the lockout.
    #[error("{0}")]
    BadCredentials(String),
    /// Refused for a reason that is not the client's guess (expired password, lockout):
    /// does not count.
    #[error("{0}")]
    Refused(String),
    /// The client broke the protocol or went away: does not count.
    #[error(transparent)]
    Protocol(#[from] RfbError),
}

impl HandshakeError {
    pub fn counts_as_failure(&self) -> bool {
        matches!(self, HandshakeError::BadCredentials(_))
    }
}

/// The security type names used in sessions and audit records.
pub fn security_name(t: SecurityType) -> &'static str {
    match t {
        SecurityType::None => "none",
        SecurityType::VncAuth => "vnc",
        SecurityType::VeNCrypt => "vencrypt",
        SecurityType::Sasl => "sasl",
        SecurityType::Other(_) => "other",
    }
}

/// Sends our version and reads the client's.
pub async fn exchange_versions<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
) -> Result<ProtocolVersion, HandshakeError> {
    conn.send(&ProtocolVersion::V3_8.encode()).await?;
    let theirs = conn
        .read_array::<{ ProtocolVersion::LEN }>("the version exchange")
        .await?;
    Ok(ProtocolVersion::parse(&theirs)?)
}

/// Refuses the client before any security type is offered, with `reason`.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
    version: ProtocolVersion,
    reason: &str,
) -> Result<(), HandshakeError> {
    conn.send(&encode_security_failure(version, reason)).await?;
    Ok(())
}

/// Offers the console's security type, authenticates, and reads ClientInit.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
    version: ProtocolVersion,
    password: &PasswordState,
) -> Result<Authenticated, HandshakeError> {
    let offered = if password.is_set() {
        SecurityType::VncAuth
    } else {
        SecurityType::None
    };
    let chosen = if version.has_security_list() {
        conn.send(&encode_security_types(&[offered])?).await?;
        let [choice] = conn.read_array::<1>("the security type choice").await?;
        parse_security_choice(choice, &[offered])?
    } else {
        conn.send(&encode_security_type_v3_3(offered)?).await?;
        offered
    };

    let credential = match chosen {
        SecurityType::VncAuth => {
            let outcome = check_vnc_password(conn, password).await?;
            if let Err(err) = outcome {
                let reason = err.to_string();
                conn.send(&SecurityResult::Failed(reason).encode(version))
                    .await?;
                return Err(err);
            }
            Credential::Password {
                generation: password.generation,
            }
        }
        _ => Credential::Anonymous,
    };
    if SecurityResult::follows(version, chosen) {
        conn.send(&SecurityResult::Ok.encode(version)).await?;
    }
    let init = conn.read_array::<{ ClientInit::LEN }>("ClientInit").await?;
    Ok(Authenticated {
        security: chosen,
        credential,
        identity: String::new(),
        shared: ClientInit::parse(init).shared,
    })
}

/// The DES challenge: Ok(Err(..)) is a refusal to report to the client.
async fn check_vnc_password<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
    password: &PasswordState,
) -> Result<Result<(), HandshakeError>, HandshakeError> {
    let challenge = generate_challenge();
    conn.send(&challenge).await?;
    let response = conn.read_array::<16>("VNC authentication").await?;
    Ok(match password.usable(time::OffsetDateTime::now_utc()) {
        Err(Unusable::Expired) => Err(HandshakeError::Refused("password expired".into())),
        Ok(Some(secret)) if verify_vnc_auth(secret.expose().as_bytes(), &challenge, &response) => {
            Ok(())
        }
        Ok(_) => Err(HandshakeError::BadCredentials(
            "authentication failed".into(),
        )),
    })
}
