//! The security-type step of the client handshakes this harness speaks itself: choosing a
//! type from the server's offer ([`choose_security`], also the first step of the SCRAM and
//! GSSAPI clients elsewhere), and VeNCrypt's client side with its inner logins (none, VNC
//! authentication, Plain), as gtk-vnc and TigerVNC speak them. None and plain VNC
//! authentication without TLS are `vmgate-rfb`'s own `client_handshake`.

use anyhow::{bail, ensure};
use tokio::io::{AsyncRead, AsyncWrite};
use vmgated::vnc::{
    rfb::{
        CHALLENGE_LEN, ClientInit, MAX_NAME_LEN, ProtocolVersion, RfbError, SecurityOffer,
        SecurityResult, SecurityType, ServerInit, check_security_result,
        io::{RfbStream, read_security_offer},
        security_choice_bytes, vnc_auth_response,
    },
    vencrypt::{self, Subtype},
};

use super::{Io, TlsCreds, TlsInfo};

/// The version exchange, then the security type `wanted` chosen from the server's offer;
/// returns the version agreed. A refusal's error is the server's reason.
pub async fn choose_security<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut RfbStream<S>,
    wanted: SecurityType,
) -> anyhow::Result<ProtocolVersion> {
    let (version, offer) = read_security_offer(conn).await?;
    match offer {
        SecurityOffer::Refused(reason) => return Err(RfbError::ConnectionRefused(reason).into()),
        SecurityOffer::Types(types) if !types.contains(&wanted) => {
            return Err(RfbError::NoCommonSecurityType(types).into());
        }
        SecurityOffer::Types(_) => {}
    }
    conn.send(&security_choice_bytes(version, wanted)).await?;
    Ok(version)
}

/// How a client authenticates after the security type (inside TLS for VeNCrypt).
#[derive(Clone, Copy)]
pub(super) enum Inner<'a> {
    None,
    /// VNC authentication (X509Vnc inside VeNCrypt).
    Vnc(&'a str),
    /// VeNCrypt Plain: user name and password (X509Plain).
    Plain {
        user: &'a str,
        password: &'a str,
    },
}

/// The client side of VeNCrypt as gtk-vnc speaks it to QEMU: security type 19, version
/// 0.2, the subtype (X509Vnc with a password, X509Plain with a user name, else X509None),
/// TLS on the same stream, the inner login inside it, the SecurityResult, then ClientInit
/// and ServerInit. Returns the stream to go on with (the TLS one).
pub(super) async fn vencrypt_handshake(
    mut conn: RfbStream<Box<dyn Io>>,
    creds: &TlsCreds,
    inner: Inner<'_>,
    shared: bool,
) -> anyhow::Result<(RfbStream<Box<dyn Io>>, ServerInit, TlsInfo)> {
    let version = choose_security(&mut conn, SecurityType::VeNCrypt).await?;

    let theirs = conn.read_array::<2>("the VeNCrypt version").await?;
    ensure!(
        theirs == vencrypt::VERSION,
        "the server speaks VeNCrypt {}.{}, not 0.2",
        theirs[0],
        theirs[1]
    );
    conn.send(&vencrypt::VERSION).await?;
    let offered = conn
        .expect("the VeNCrypt subtypes", decode_subtypes)
        .await?;
    let wanted = match inner {
        Inner::Vnc(_) => Subtype::X509Vnc,
        Inner::Plain { .. } => Subtype::X509Plain,
        Inner::None => Subtype::X509None,
    };
    ensure!(
        offered.contains(&wanted.code()),
        "the server offers VeNCrypt subtypes {offered:?}, not {} ({})",
        wanted.code(),
        wanted.name()
    );
    conn.send(&wanted.code().to_be_bytes()).await?;
    let [ack] = conn.read_array::<1>("the VeNCrypt subtype choice").await?;
    if ack != 1 {
        bail!("the server refused VeNCrypt subtype {}", wanted.code());
    }

    let (stream, early) = conn.into_parts();
    ensure!(
        early.is_empty(),
        "the server sent data before the TLS handshake"
    );
    let (stream, info) = creds.handshake(stream, wanted).await?;
    let mut conn: RfbStream<Box<dyn Io>> = RfbStream::new(Box::new(stream), MAX_NAME_LEN + 64);
    match inner {
        Inner::Vnc(password) => {
            let challenge = conn
                .read_array::<CHALLENGE_LEN>("VNC authentication")
                .await?;
            conn.send(&vnc_auth_response(password.as_bytes(), &challenge))
                .await?;
        }
        Inner::Plain { user, password } => {
            let mut out = Vec::with_capacity(8 + user.len() + password.len());
            out.extend_from_slice(&u32::try_from(user.len())?.to_be_bytes());
            out.extend_from_slice(&u32::try_from(password.len())?.to_be_bytes());
            out.extend_from_slice(user.as_bytes());
            out.extend_from_slice(password.as_bytes());
            conn.send(&out).await?;
        }
        Inner::None => {}
    }
    // A server that refuses the client certificate says so with a TLS alert, which the
    // client reads here (TLS 1.3 lets it finish its side of the handshake first).
    let result = conn
        .expect("the security result", |b| {
            SecurityResult::decode(version, b)
        })
        .await?;
    check_security_result(result)?;
    conn.send(&ClientInit { shared }.encode()).await?;
    let server_init = conn
        .expect("the initialisation", ServerInit::decode)
        .await?;
    Ok((conn, server_init, info))
}

/// The server's answer to our VeNCrypt version: 0 (accepted), a count, then that many u32
/// subtypes.
fn decode_subtypes(b: &[u8]) -> Result<Option<(Vec<u32>, usize)>, RfbError> {
    match b.first() {
        None => return Ok(None),
        Some(0) => {}
        Some(_) => {
            let refused = "VeNCrypt 0.2 (the server refused it)";
            return Err(RfbError::Unsupported(refused.into()));
        }
    }
    let Some(&count) = b.get(1) else {
        return Ok(None);
    };
    let len = 2 + 4 * usize::from(count);
    let Some(body) = b.get(2..len) else {
        return Ok(None);
    };
    let subtypes = body
        .chunks_exact(4)
        .filter_map(|c| <[u8; 4]>::try_from(c).ok())
        .map(u32::from_be_bytes)
        .collect();
    Ok(Some((subtypes, len)))
}
