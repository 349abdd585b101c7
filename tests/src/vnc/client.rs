//! [`RfbClient`]: a small async RFB client built on vmgated's own `rfb` codec that stays
//! connected, which gvnccapture cannot (it quits after one frame and always asks for
//! exclusive access). It connects with None, VNC authentication or VeNCrypt (`security`),
//! or goes on from a stream another module authenticated ([`RfbClient::initialise`]); then
//! asks for Raw only, reads whole framebuffer updates and counts their pixel bytes, and
//! tells whether the server closed the connection. Every wait has a deadline.

use std::{fmt, net::SocketAddr, time::Duration};

use anyhow::{anyhow, bail};
use tokio::io::{AsyncRead, AsyncWrite};
use vmgated::vnc::rfb::{
    ClientConfig, ClientInit, ClientMessage, MAX_NAME_LEN, MAX_UPDATE_BYTES, Rect, RectPayload,
    RfbError, SecurityType, ServerInit, ServerMessage, decode_server_message, encoding,
    io::{RfbStream, client_handshake},
};

use super::{
    ConsoleAddr, Io, TlsCreds, TlsInfo,
    security::{Inner, vencrypt_handshake},
};

/// How long an [`RfbClient`] waits for the handshake or for one update.
pub const RFB_DEADLINE: Duration = Duration::from_secs(10);

/// A connected, initialised RFB client (it asks for Raw only).
pub struct RfbClient {
    conn: RfbStream<Box<dyn Io>>,
    server_init: ServerInit,
    security: SecurityType,
    local: Option<SocketAddr>,
    tls: Option<TlsInfo>,
}

impl fmt::Debug for RfbClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RfbClient")
            .field("security", &self.security)
            .field("local", &self.local)
            .field("tls", &self.tls.as_ref().map(|t| t.subtype))
            .finish_non_exhaustive()
    }
}

impl RfbClient {
    /// Connects and runs the whole client handshake (VNC authentication when `password`
    /// is given and offered, else None) up to ServerInit, within [`RFB_DEADLINE`]. A
    /// refusal's error text is the server's reason (e.g. "locked out ...").
    pub async fn connect(
        addr: impl Into<ConsoleAddr>,
        password: Option<&str>,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        Self::connect_with(addr.into(), password, shared, None).await
    }

    /// Like [`RfbClient::connect`], through VeNCrypt: TLS with `creds` and nothing more
    /// (X509None) or, with `password`, VNC authentication inside TLS (X509Vnc). A refusal
    /// in the TLS handshake reads as the alert rustls received ("CertificateRequired"...).
    pub async fn connect_tls(
        addr: impl Into<ConsoleAddr>,
        creds: &TlsCreds,
        password: Option<&str>,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        Self::connect_with(addr.into(), password, shared, Some(creds)).await
    }

    /// Like [`RfbClient::connect_tls`], logging in as `user` with VeNCrypt Plain
    /// (X509Plain), as TigerVNC does.
    pub async fn connect_plain(
        addr: impl Into<ConsoleAddr>,
        creds: &TlsCreds,
        user: &str,
        password: &str,
        shared: bool,
    ) -> anyhow::Result<RfbClient> {
        let login = Inner::Plain { user, password };
        Self::connect_inner(addr.into(), login, shared, Some(creds)).await
    }

    async fn connect_with(
        addr: ConsoleAddr,
        password: Option<&str>,
        shared: bool,
        tls: Option<&TlsCreds>,
    ) -> anyhow::Result<RfbClient> {
        let inner = password.map_or(Inner::None, Inner::Vnc);
        Self::connect_inner(addr, inner, shared, tls).await
    }

    async fn connect_inner(
        addr: ConsoleAddr,
        inner: Inner<'_>,
        shared: bool,
        tls: Option<&TlsCreds>,
    ) -> anyhow::Result<RfbClient> {
        tokio::time::timeout(RFB_DEADLINE, Self::handshake(&addr, inner, shared, tls))
            .await
            .map_err(|_| {
                anyhow!(
                    "no ServerInit from {addr} within {} s",
                    RFB_DEADLINE.as_secs()
                )
            })?
    }

    async fn handshake(
        addr: &ConsoleAddr,
        inner: Inner<'_>,
        shared: bool,
        tls: Option<&TlsCreds>,
    ) -> anyhow::Result<RfbClient> {
        let (stream, local) = addr.dial().await?;
        let mut conn = RfbStream::new(stream, MAX_NAME_LEN + 64);
        let (server_init, security, tls) = match tls {
            None => {
                let password = match inner {
                    Inner::Vnc(p) => Some(p.as_bytes().to_vec()),
                    Inner::None => None,
                    Inner::Plain { .. } => bail!("VeNCrypt Plain needs TLS credentials"),
                };
                let config = ClientConfig { password, shared };
                // The RfbError itself, so that its text (the server's reason) is the error's.
                let session = client_handshake(&mut conn, &config).await?;
                (session.server_init, session.security, None)
            }
            Some(creds) => {
                let (inner, server_init, info) =
                    vencrypt_handshake(conn, creds, inner, shared).await?;
                conn = inner;
                (server_init, SecurityType::VeNCrypt, Some(info))
            }
        };
        Self::ready(conn, server_init, security, local, tls).await
    }

    /// Goes on from a stream whose security handshake is over, as a login that `vnc` does
    /// not speak leaves it (a GSSAPI login in `vnc_gssapi`, with its stream already
    /// wrapped in the security layer): ClientInit, ServerInit, then the same code paths as
    /// after [`RfbClient::connect`]. Within [`RFB_DEADLINE`].
    pub async fn initialise<S>(
        stream: S,
        security: SecurityType,
        local: Option<SocketAddr>,
        shared: bool,
    ) -> anyhow::Result<RfbClient>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut conn: RfbStream<Box<dyn Io>> = RfbStream::new(Box::new(stream), MAX_NAME_LEN + 64);
        let init = async {
            conn.send(&ClientInit { shared }.encode()).await?;
            conn.expect("the initialisation", ServerInit::decode).await
        };
        let server_init = tokio::time::timeout(RFB_DEADLINE, init)
            .await
            .map_err(|_| anyhow!("no ServerInit within {} s", RFB_DEADLINE.as_secs()))??;
        Self::ready(conn, server_init, security, local, None).await
    }

    /// The client after ServerInit: update-sized buffer, Raw asked for.
    async fn ready(
        mut conn: RfbStream<Box<dyn Io>>,
        server_init: ServerInit,
        security: SecurityType,
        local: Option<SocketAddr>,
        tls: Option<TlsInfo>,
    ) -> anyhow::Result<RfbClient> {
        conn.set_max(MAX_UPDATE_BYTES);
        let mut client = RfbClient {
            conn,
            server_init,
            security,
            local,
            tls,
        };
        client
            .send(&ClientMessage::SetEncodings(vec![encoding::RAW]))
            .await?;
        Ok(client)
    }

    pub fn server_init(&self) -> &ServerInit {
        &self.server_init
    }

    pub fn security(&self) -> SecurityType {
        self.security
    }

    /// What TLS agreed on, for a VeNCrypt connection.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// This end's address (TCP only), as the gateway lists it in `console-sessions`.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    async fn send(&mut self, msg: &ClientMessage) -> Result<(), RfbError> {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes)?;
        self.conn.send(&bytes).await
    }

    /// Asks for the whole screen, non-incremental.
    pub async fn request_full_update(&mut self) -> anyhow::Result<()> {
        let rect = Rect::full(self.server_init.width, self.server_init.height);
        let msg = ClientMessage::FramebufferUpdateRequest {
            incremental: false,
            rect,
        };
        Ok(self.send(&msg).await?)
    }

    /// Reads until the next FramebufferUpdate (within [`RFB_DEADLINE`]) and returns how many
    /// bytes of Raw pixel data it carried.
    pub async fn read_update(&mut self) -> anyhow::Result<usize> {
        tokio::time::timeout(RFB_DEADLINE, self.next_update())
            .await
            .map_err(|_| anyhow!("no update within {} s", RFB_DEADLINE.as_secs()))?
    }

    async fn next_update(&mut self) -> anyhow::Result<usize> {
        let pf = self.server_init.pixel_format;
        loop {
            let msg = self
                .conn
                .expect("a framebuffer update", |b| decode_server_message(b, &pf))
                .await?;
            if let ServerMessage::FramebufferUpdate(rects) = msg {
                return Ok(rects
                    .iter()
                    .map(|r| match &r.payload {
                        RectPayload::Raw(pixels) => pixels.len(),
                        _ => 0,
                    })
                    .sum());
            }
        }
    }

    /// [`RfbClient::request_full_update`] then [`RfbClient::read_update`].
    pub async fn full_update(&mut self) -> anyhow::Result<usize> {
        self.request_full_update().await?;
        self.read_update().await
    }

    /// Waits up to `deadline` for the server to close the connection (EOF or an error),
    /// reading and dropping whole messages meanwhile; true when it closed.
    pub async fn wait_closed(&mut self, deadline: Duration) -> bool {
        let pf = self.server_init.pixel_format;
        let drain = async {
            loop {
                match self.conn.next(|b| decode_server_message(b, &pf)).await {
                    Ok(Some(_)) => continue,
                    Ok(None)
                    | Err(RfbError::Io(_) | RfbError::UnexpectedEof | RfbError::Closed(_)) => {
                        return true;
                    }
                    // Bytes we cannot parse are not a close.
                    Err(_) => return false,
                }
            }
        };
        tokio::time::timeout(deadline, drain).await.unwrap_or(false)
    }
}
