//! The server side of the RFB handshake as the gateway speaks it to clients: version
//! (3.3, 3.7 or 3.8), the security type this console offers (None, VNC password, or
//! VeNCrypt with its X509 subtypes when consoles use TLS: X509SASL and X509Plain for user
//! logins; SASL (type 20) without TLS, where only GSSAPI with its confidentiality layer
//! is offered), the authentication itself, the console ACL's verdict, and ClientInit. It
//! owns the stream because VeNCrypt replaces it with a TLS stream halfway, and a SASL
//! security layer wraps it after the SecurityResult.
//! It decides nothing about sessions or backends: it reports who the client proved to be,
//! or why it did not.

use std::time::Duration;

use tokio_rustls::{LazyConfigAcceptor, rustls::server::Acceptor};
use vmgate_config::acl::Principal;

use crate::{
    auth::{
        sasl::SaslServer,
        sasl_layer::{LayerPolicy, LayeredStream, SecurityLayer},
    },
    driver::ConsoleStream,
    tls,
    vnc::{
        gateway::{judge::Judge, login},
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

/// How long a VeNCrypt client has to send its TLS ClientHello once it chose a subtype.
pub const CLIENT_HELLO_DEADLINE: Duration = Duration::from_secs(5);

/// A client connection during the handshake.
pub type Conn = RfbStream<Box<dyn ConsoleStream>>;

/// What the client proved.
#[derive(Debug)]
pub struct Authenticated {
    /// "none", "vnc", "vencrypt-x509none", ...
    pub security: &'static str,
    pub credential: Credential,
    /// The user and the client certificate's DN, as far as the client proved them.
    pub principal: Principal,
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

/// What a console offers, from its settings and current password.
pub struct Offer<'a> {
    pub password: &'a PasswordState,
    pub tls: Option<&'a VencryptTls>,
    /// User logins (`vnc_sasl`): SASL and, inside TLS, VeNCrypt Plain.
    pub sasl: Option<&'a SaslServer>,
    /// Judges each credential under the lockout and counts the wrong ones.
    pub judge: &'a Judge<'a>,
}

impl Offer<'_> {
    /// The VeNCrypt subtypes offered when TLS is on, strongest first.
    /// X509Plain is a password login, so a Kerberos-only console does not offer it.
    fn subtypes(&self) -> Vec<Subtype> {
        match (self.sasl, self.password.is_set()) {
            (Some(sasl), _) if sasl.offers_passwords() => {
                vec![Subtype::X509Sasl, Subtype::X509Plain]
            }
            (Some(_), _) => vec![Subtype::X509Sasl],
            (None, true) => vec![Subtype::X509Vnc],
            (None, false) => vec![Subtype::X509None],
        }
    }

    fn security_type(&self) -> SecurityType {
        match (self.tls, self.sasl, self.password.is_set()) {
            (Some(_), _, _) => SecurityType::VeNCrypt,
            (None, Some(_), _) => SecurityType::Sasl,
            (None, None, true) => SecurityType::VncAuth,
            (None, None, false) => SecurityType::None,
        }
    }
}

/// The console ACL's verdict on who a client proved to be: Err carries the reason for the
/// audit trail (the client only hears that it is not allowed).
pub type Admit<'a> = &'a (dyn Fn(&Principal) -> Result<(), String> + Sync);

/// What a refused client is told: the rules are not its business.
pub const NOT_ALLOWED: &str = "not allowed to use this console (access list)";

/// Offers the console's security type, authenticates, asks the ACL, and reads ClientInit.
/// Returns the stream to go on with (a TLS stream after VeNCrypt).
pub async fn authenticate(
    mut conn: Conn,
    version: ProtocolVersion,
    offer: &Offer<'_>,
    admit: Admit<'_>,
) -> Result<(Authenticated, Conn), HandshakeError> {
    let offered = offer.security_type();
    // SCRAM and PLAIN have no security layer: without TLS the login and everything after
    // it would cross the network in the clear, so only GSSAPI is offered there.
    let without_tls = offer.sasl.map(SaslServer::offered_without_tls);
    if offered == SecurityType::Sasl && without_tls.as_ref().is_none_or(Vec::is_empty) {
        let reason = "this console's SASL mechanisms need TLS (vnc_tls) underneath";
        refuse(&mut conn, version, reason).await?;
        return Err(HandshakeError::Refused {
            security: Some("sasl"),
            reason: reason.into(),
        });
    }
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

    let mut layer = None;
    let judge = offer.judge;
    let (security, credential, principal, mut conn) = match (chosen, offer.tls) {
        (SecurityType::VeNCrypt, Some(tls)) => {
            let (mut conn, subtype, dn) = start_vencrypt(conn, &offer.subtypes(), tls).await?;
            let security = subtype.name();
            // QEMU sends the result after every VeNCrypt subtype, whatever the version.
            let version = ProtocolVersion::V3_8;
            let (credential, user) = match (subtype, offer.sasl) {
                (Subtype::X509Vnc, _) => {
                    vnc_auth(&mut conn, version, offer, security).await?;
                    let generation = offer.password.generation;
                    (Credential::Password { generation }, None)
                }
                (Subtype::X509Sasl, Some(sasl)) => {
                    let offered = sasl.offered();
                    let layers = LayerPolicy::Any;
                    let login =
                        login::sasl(&mut conn, version, sasl, offered, layers, security, judge)
                            .await?;
                    layer = login.layer;
                    (Credential::Login, Some(login.user))
                }
                (Subtype::X509Plain, Some(sasl)) => {
                    let users = sasl.users();
                    let user = login::plain(&mut conn, version, users, security, judge).await?;
                    (Credential::Login, Some(user))
                }
                _ => (Credential::Anonymous, None),
            };
            let principal = Principal { user, dn };
            admit_or_refuse(&mut conn, version, admit, &principal, security).await?;
            conn.send(&SecurityResult::Ok.encode(version)).await?;
            (security, credential, principal, conn)
        }
        (SecurityType::Sasl, None) => {
            let offered = without_tls.unwrap_or_default();
            let (principal, wrap) = sasl_without_tls(&mut conn, version, offer, &offered).await?;
            admit_or_refuse(&mut conn, version, admit, &principal, "sasl").await?;
            conn.send(&SecurityResult::Ok.encode(version)).await?;
            layer = Some(wrap);
            ("sasl", Credential::Login, principal, conn)
        }
        (SecurityType::VncAuth, _) => {
            vnc_auth(&mut conn, version, offer, "vnc").await?;
            conn.send(&SecurityResult::Ok.encode(version)).await?;
            let generation = offer.password.generation;
            let credential = Credential::Password { generation };
            ("vnc", credential, Principal::default(), conn)
        }
        _ => {
            if SecurityResult::follows(version, chosen) {
                conn.send(&SecurityResult::Ok.encode(version)).await?;
            }
            let security = security_name(chosen);
            (security, Credential::Anonymous, Principal::default(), conn)
        }
    };
    if let Some(layer) = layer {
        conn = wrap_in_layer(conn, layer);
    }
    let init = conn.read_array::<{ ClientInit::LEN }>("ClientInit").await?;
    let auth = Authenticated {
        security,
        credential,
        principal,
        shared: ClientInit::parse(init).shared,
    };
    Ok((auth, conn))
}

/// RFB type 20 without TLS: a login with `offered` (GSSAPI) that must end with a
/// confidentiality layer; returns who logged in and the layer.
async fn sasl_without_tls(
    conn: &mut Conn,
    version: ProtocolVersion,
    offer: &Offer<'_>,
    offered: &[String],
) -> Result<(Principal, Box<dyn SecurityLayer>), HandshakeError> {
    let unsupported = |what: &str| HandshakeError::from(RfbError::Unsupported(what.into()));
    let sasl = offer
        .sasl
        .ok_or_else(|| unsupported("SASL was chosen but is not set up"))?;
    let layers = LayerPolicy::Confidentiality;
    let login = login::sasl(conn, version, sasl, offered, layers, "sasl", offer.judge).await?;
    let layer = login
        .layer
        .ok_or_else(|| unsupported("a login without TLS ended without a security layer"))?;
    let principal = Principal {
        user: Some(login.user),
        dn: None,
    };
    Ok((principal, layer))
}

/// Everything after the SecurityResult crosses the wire wrapped by `layer`, including
/// what the client already sent.
fn wrap_in_layer(conn: Conn, layer: Box<dyn SecurityLayer>) -> Conn {
    let (stream, early) = conn.into_parts();
    RfbStream::new(
        Box::new(LayeredStream::new(stream, layer, early)),
        HANDSHAKE_BUFFER,
    )
}

/// Asks the ACL; a refusal is sent to the client and returned with its reason.
async fn admit_or_refuse(
    conn: &mut Conn,
    version: ProtocolVersion,
    admit: Admit<'_>,
    principal: &Principal,
    security: &'static str,
) -> Result<(), HandshakeError> {
    let Err(reason) = admit(principal) else {
        return Ok(());
    };
    conn.send(&SecurityResult::Failed(NOT_ALLOWED.into()).encode(version))
        .await?;
    Err(HandshakeError::Refused {
        security: Some(security),
        reason: format!("{NOT_ALLOWED}: {reason}"),
    })
}

/// The VeNCrypt exchange up to and including the TLS handshake; returns the TLS stream,
/// the subtype the client chose and the client certificate's DN (None without one).
async fn start_vencrypt(
    mut conn: Conn,
    offered: &[Subtype],
    tls: &VencryptTls,
) -> Result<(Conn, Subtype, Option<String>), HandshakeError> {
    conn.send(&vencrypt::VERSION).await?;
    let version = conn.read_array::<2>("the VeNCrypt version").await?;
    match vencrypt::version_reply(version, offered) {
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
    let chosen = vencrypt::parse_choice(choice, offered);
    conn.send(&vencrypt::choice_ack(chosen.is_some())).await?;
    let Some(subtype) = chosen else {
        let code = u32::from_be_bytes(choice);
        return Err(
            RfbError::Unsupported(format!("VeNCrypt subtype {code} was not offered")).into(),
        );
    };
    let (stream, early) = conn.into_parts();
    if !early.is_empty() {
        return Err(RfbError::Unsupported("data before the TLS handshake".into()).into());
    }
    let refused = |reason: String| HandshakeError::Refused {
        security: Some(subtype.name()),
        reason,
    };
    // The ClientHello has its own short deadline: a client that stalls before it is a
    // machine holding a slot, not a person typing.
    let hello = LazyConfigAcceptor::new(Acceptor::default(), stream);
    let start = tokio::time::timeout(CLIENT_HELLO_DEADLINE, hello)
        .await
        .map_err(|_| {
            let secs = CLIENT_HELLO_DEADLINE.as_secs();
            refused(format!("no TLS ClientHello within {secs} s"))
        })?
        .map_err(|e| refused(format!("TLS handshake failed: {e}")))?;
    let stream = start
        .into_stream(tls.config())
        .await
        .map_err(|e| refused(format!("TLS handshake failed: {e}")))?;
    let dn = tls::peer_dn(stream.get_ref().1.peer_certificates());
    Ok((
        RfbStream::new(Box::new(stream), HANDSHAKE_BUFFER),
        subtype,
        dn,
    ))
}

/// The DES challenge; on failure the client is told why before the error returns (a wrong
/// password is counted first, and the lockout is checked as the answer is judged).
async fn vnc_auth(
    conn: &mut Conn,
    version: ProtocolVersion,
    offer: &Offer<'_>,
    security: &'static str,
) -> Result<(), HandshakeError> {
    let password = offer.password;
    let challenge = generate_challenge();
    conn.send(&challenge).await?;
    let response = conn.read_array::<16>("VNC authentication").await?;
    let refusal = match offer.judge.turn().await {
        Err(locked_out) => HandshakeError::Refused {
            security: Some(security),
            reason: locked_out,
        },
        Ok(turn) => match password.usable(time::OffsetDateTime::now_utc()) {
            Err(Unusable::Expired) => HandshakeError::Refused {
                security: Some(security),
                reason: "password expired".into(),
            },
            Ok(Some(secret))
                if verify_vnc_auth(secret.expose().as_bytes(), &challenge, &response) =>
            {
                return Ok(());
            }
            Ok(_) => {
                turn.wrong();
                HandshakeError::BadCredentials {
                    security,
                    reason: "authentication failed".into(),
                }
            }
        },
    };
    conn.send(&SecurityResult::Failed(refusal.to_string()).encode(version))
        .await?;
    Err(refusal)
}
