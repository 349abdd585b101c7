//! The server side of the RFB handshake as the gateway speaks it to clients: version
//! (3.3, 3.7 or 3.8), the security type this console offers (None, VNC password, or
//! VeNCrypt with its X509 subtypes when consoles use TLS), the authentication itself, and
//! ClientInit. It owns the stream because VeNCrypt replaces it with a TLS stream halfway.
//! It decides nothing about sessions or backends: it reports who the client proved to be,
//! or why it did not.

use tokio_rustls::TlsAcceptor;

use crate::{
    driver::ConsoleStream,
    tls,
    vnc::{
        password::{PasswordState, Unusable},
        rfb::{
            ClientInit, ProtocolVersion, RfbError, SecurityResult, SecurityType,
            encode_security_failure, encode_security_type_v3_3, encode_security_types,
            generate_challenge, io::RfbStream, parse_security_choice, verify_vnc_auth,
        },
        sessions::Credential,
        vencrypt::{self, Subtype, VencryptTls},
    },
};

/// The most a client may send before it is authenticated (version, choice, response).
pub const HANDSHAKE_BUFFER: usize = 4096;

/// A client connection during the handshake.
pub type Conn = RfbStream<Box<dyn ConsoleStream>>;

/// What the client proved.
#[derive(Debug)]
pub struct Authenticated {
    /// "none", "vnc", "vencrypt-x509none", ...
    pub security: &'static str,
    pub credential: Credential,
    /// The client certificate's DN, when it sent one.
    pub identity: String,
    pub shared: bool,
}

/// Why a handshake ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Wrong credentials: counts towards the lockout.
    #[error("{reason}")]
    BadCredentials {
        security: &'static str,
        reason: String,
    },
    /// Refused for a reason that is not a guess at a secret (expired password, lockout,
    /// a certificate the CA does not vouch for): does not count.
    #[error("{reason}")]
    Refused {
        security: Option<&'static str>,
        reason: String,
    },
    /// The client broke the protocol or went away: does not count.
    #[error(transparent)]
    Protocol(#[from] RfbError),
}

impl HandshakeError {
    pub fn counts_as_failure(&self) -> bool {
        matches!(self, HandshakeError::BadCredentials { .. })
    }

    /// The security type the client was refused under, when it got that far.
    pub fn security(&self) -> Option<&'static str> {
        match self {
            HandshakeError::BadCredentials { security, .. } => Some(security),
            HandshakeError::Refused { security, .. } => *security,
            HandshakeError::Protocol(_) => None,
        }
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
pub async fn exchange_versions(conn: &mut Conn) -> Result<ProtocolVersion, HandshakeError> {
    conn.send(&ProtocolVersion::V3_8.encode()).await?;
    let theirs = conn
        .read_array::<{ ProtocolVersion::LEN }>("the version exchange")
        .await?;
    Ok(ProtocolVersion::parse(&theirs)?)
}

/// Refuses the client before any security type is offered, with `reason`.
pub async fn refuse(
    conn: &mut Conn,
    version: ProtocolVersion,
    reason: &str,
) -> Result<(), HandshakeError> {
    conn.send(&encode_security_failure(version, reason)).await?;
    Ok(())
}

/// Offers the console's security type, authenticates, and reads ClientInit. Returns the
/// stream to go on with (a TLS stream after VeNCrypt).
pub async fn authenticate(
    mut conn: Conn,
    version: ProtocolVersion,
    password: &PasswordState,
    tls: Option<&VencryptTls>,
) -> Result<(Authenticated, Conn), HandshakeError> {
    let offered = match (tls, password.is_set()) {
        (Some(_), _) => SecurityType::VeNCrypt,
        (None, true) => SecurityType::VncAuth,
        (None, false) => SecurityType::None,
    };
    if offered == SecurityType::VeNCrypt && !version.has_security_list() {
        let reason = "this console needs VeNCrypt (TLS), which RFB 3.3 clients cannot use";
        refuse(&mut conn, version, reason).await?;
        return Err(HandshakeError::Refused {
            security: None,
            reason: reason.into(),
        });
    }
    let chosen = if version.has_security_list() {
        conn.send(&encode_security_types(&[offered])?).await?;
        let [choice] = conn.read_array::<1>("the security type choice").await?;
        parse_security_choice(choice, &[offered])?
    } else {
        conn.send(&encode_security_type_v3_3(offered)?).await?;
        offered
    };

    let (security, credential, identity, mut conn) = match (chosen, tls) {
        (SecurityType::VeNCrypt, Some(tls)) => {
            let subtype = if password.is_set() {
                Subtype::X509Vnc
            } else {
                Subtype::X509None
            };
            let (mut conn, identity) = start_vencrypt(conn, subtype, tls).await?;
            let credential = match subtype {
                Subtype::X509Vnc => {
                    vnc_auth(&mut conn, version, password, subtype.name()).await?;
                    Credential::Password {
                        generation: password.generation,
                    }
                }
                _ => Credential::Anonymous,
            };
            // QEMU sends the result after every VeNCrypt subtype, whatever the version.
            conn.send(&SecurityResult::Ok.encode(ProtocolVersion::V3_8))
                .await?;
            (subtype.name(), credential, identity, conn)
        }
        (SecurityType::VncAuth, _) => {
            vnc_auth(&mut conn, version, password, "vnc").await?;
            conn.send(&SecurityResult::Ok.encode(version)).await?;
            (
                "vnc",
                Credential::Password {
                    generation: password.generation,
                },
                String::new(),
                conn,
            )
        }
        _ => {
            if SecurityResult::follows(version, chosen) {
                conn.send(&SecurityResult::Ok.encode(version)).await?;
            }
            (
                security_name(chosen),
                Credential::Anonymous,
                String::new(),
                conn,
            )
        }
    };
    let init = conn.read_array::<{ ClientInit::LEN }>("ClientInit").await?;
    let auth = Authenticated {
        security,
        credential,
        identity,
        shared: ClientInit::parse(init).shared,
    };
    Ok((auth, conn))
}

/// The VeNCrypt exchange up to and including the TLS handshake; returns the TLS stream
/// and the client certificate's DN (empty without one).
async fn start_vencrypt(
    mut conn: Conn,
    subtype: Subtype,
    tls: &VencryptTls,
) -> Result<(Conn, String), HandshakeError> {
    conn.send(&vencrypt::VERSION).await?;
    let version = conn.read_array::<2>("the VeNCrypt version").await?;
    match vencrypt::version_reply(version, &[subtype]) {
        Ok(reply) => conn.send(&reply).await?,
        Err(reject) => {
            conn.send(&reject).await?;
            let reason = format!(
                "VeNCrypt version {}.{} is not supported (0.2 is)",
                version[0], version[1]
            );
            return Err(RfbError::Unsupported(reason).into());
        }
    }
    let choice = conn.read_array::<4>("the VeNCrypt subtype").await?;
    let accepted = vencrypt::parse_choice(choice, &[subtype]).is_some();
    conn.send(&vencrypt::choice_ack(accepted)).await?;
    if !accepted {
        let code = u32::from_be_bytes(choice);
        return Err(
            RfbError::Unsupported(format!("VeNCrypt subtype {code} was not offered")).into(),
        );
    }
    let (stream, early) = conn.into_parts();
    if !early.is_empty() {
        return Err(RfbError::Unsupported("data before the TLS handshake".into()).into());
    }
    let stream = TlsAcceptor::from(tls.config())
        .accept(stream)
        .await
        .map_err(|e| HandshakeError::Refused {
            security: Some(subtype.name()),
            reason: format!("TLS handshake failed: {e}"),
        })?;
    let identity = tls::peer_dn(stream.get_ref().1.peer_certificates()).unwrap_or_default();
    Ok((RfbStream::new(Box::new(stream), HANDSHAKE_BUFFER), identity))
}

/// The DES challenge; on failure the client is told why before the error returns.
async fn vnc_auth(
    conn: &mut Conn,
    version: ProtocolVersion,
    password: &PasswordState,
    security: &'static str,
) -> Result<(), HandshakeError> {
    let challenge = generate_challenge();
    conn.send(&challenge).await?;
    let response = conn.read_array::<16>("VNC authentication").await?;
    let refusal = match password.usable(time::OffsetDateTime::now_utc()) {
        Err(Unusable::Expired) => HandshakeError::Refused {
            security: Some(security),
            reason: "password expired".into(),
        },
        Ok(Some(secret)) if verify_vnc_auth(secret.expose().as_bytes(), &challenge, &response) => {
            return Ok(());
        }
        Ok(_) => HandshakeError::BadCredentials {
            security,
            reason: "authentication failed".into(),
        },
    };
    conn.send(&SecurityResult::Failed(refusal.to_string()).encode(version))
        .await?;
    Err(refusal)
}
