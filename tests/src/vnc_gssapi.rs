//! A Kerberos console client for the tests and the benchmark: RFB security type 20 (SASL,
//! no TLS) with the GSSAPI mechanism, driven by the CLI's own initiator
//! (`vmgate::login::gssapi`), then the RFB session through the confidentiality layer it
//! negotiated, with [`RfbClient`]'s code once the stream is wrapped.
//!
//! # Where the Kerberos client runs: a child process
//!
//! The initiator finds the user's ticket and the realm through `KRB5CCNAME` and
//! `KRB5_CONFIG`, which are process-wide. A test process cannot set them soundly: libtest
//! and tokio have started threads by then, `set_var` is `unsafe` in edition 2024 and the
//! workspace denies `unsafe_code`. So the Kerberos side always runs in a process of its
//! own that gets the variables on its `Command`, one per login scenario: the
//! `gss-rfb-client` binary for the tests (found with `CARGO_BIN_EXE_gss-rfb-client`), the
//! benchmark (`vmgate-bench`'s bench-kerberos) re-running itself with
//! [`process::CHILD_ARG`]. Both call [`process::child_main`]. The child times its own
//! logins and updates, so process start is not in the figures, and reports as one JSON line
//! ([`process::GssClient`] reads it).
//! Everything else (daemons, KDC, audit checks, the wire recorder in [`wire`]) stays in
//! the parent, which needs no Kerberos environment at all.
//!
//! # The wire format (as `daemon/src/vnc/gateway/login.rs` serves it)
//!
//! Server: `u32 len, mechlist`. Client: `u32 len, "GSSAPI"` (no NUL), then its first
//! token as `u32 len+1, token, 0`. Each server step is `u32 len, data + NUL` (or `u32 0`)
//! and a `u8` complete flag; the client answers every incomplete step in the same form
//! (`u32 0` for an empty message). After the last step: the SecurityResult in the clear,
//! then everything, ClientInit first, wrapped (`u32 len, token` per packet).
//! A server that refuses mid-exchange sends the failed SecurityResult where a step was due
//! (as QEMU does); its leading `u32 1` would be a step holding a lone NUL, which neither
//! QEMU nor vmgate ever sends (no data is `u32 0`), so it is read as the failure.

pub mod process;
pub mod wire;

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail, ensure};
use tokio::net::TcpStream;
use vmgate::login::gssapi::{CLIENT_MAX_BUFFER, ClientLayer, Initiator, LAYER_CONFIDENTIALITY};
use vmgated::{
    auth::sasl_layer::{LayerError, LayeredStream, SecurityLayer},
    vnc::rfb::{RfbError, SecurityResult, SecurityType, check_security_result, io::RfbStream},
};

use crate::vnc::{RFB_DEADLINE, RfbClient, choose_security};

/// The Kerberos service of consoles: tickets are for `vnc/<host>`.
pub const SERVICE: &str = "vnc";

/// The largest SASL message accepted from the server (the gateway's own limit).
const MAX_SASL_DATA: usize = 1 << 20;

/// A login may not take more server steps than this (GSSAPI needs three).
const MAX_STEPS: usize = 8;

/// The negotiated GSSAPI layer, as the daemon's `LayeredStream` wants it.
pub struct ClientGssLayer(ClientLayer);

impl SecurityLayer for ClientGssLayer {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, LayerError> {
        self.0.wrap(plain).map_err(LayerError::Wrap)
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, LayerError> {
        self.0.unwrap(token).map_err(LayerError::Unwrap)
    }

    fn peer_max(&self) -> usize {
        self.0.peer_max()
    }

    fn own_max(&self) -> usize {
        CLIENT_MAX_BUFFER
    }
}

/// A login's first step, taken before connecting: the initiator and its first token. With
/// the ticket from this process's `KRB5CCNAME`, for `vnc/host`.
pub struct FirstStep {
    initiator: Initiator,
    token: Option<Vec<u8>>,
}

impl FirstStep {
    /// `layer` is the one to ask for: RFC 4752's bit, confidentiality unless a test asks
    /// for another to see it refused.
    pub fn new(host: &str, layer: Option<u8>) -> anyhow::Result<FirstStep> {
        let layer = layer.unwrap_or(LAYER_CONFIDENTIALITY);
        let mut initiator = Initiator::new(SERVICE, host, layer).map_err(|e| anyhow!(e))?;
        let token = initiator.step(None).map_err(|e| anyhow!(e))?;
        Ok(FirstStep { initiator, token })
    }
}

/// Logs in to the console at `addr` with `first` (see [`FirstStep`]) and returns the
/// client after ServerInit, its stream wrapped in the confidentiality layer. Within
/// [`RFB_DEADLINE`] up to the SecurityResult, and as long again for ServerInit. A refusal's
/// error text is the server's reason ("Authentication failed").
pub async fn login(addr: SocketAddr, first: FirstStep, shared: bool) -> anyhow::Result<RfbClient> {
    let exchange = tokio::time::timeout(RFB_DEADLINE, sasl_exchange(addr, first));
    let (stream, layer, early, local) = exchange
        .await
        .map_err(|_| anyhow!("no SecurityResult from {addr} within {RFB_DEADLINE:?}"))??;
    let layered = LayeredStream::new(stream, Box::new(ClientGssLayer(layer)), early);
    RfbClient::initialise(layered, SecurityType::Sasl, local, shared).await
}

/// Logs in as [`login`] does but keeps only the negotiated layer, closing the connection
/// before ClientInit: to time the layer's wrapping by itself.
pub async fn login_layer(addr: SocketAddr, first: FirstStep) -> anyhow::Result<ClientGssLayer> {
    let exchange = tokio::time::timeout(RFB_DEADLINE, sasl_exchange(addr, first));
    let (_, layer, _, _) = exchange
        .await
        .map_err(|_| anyhow!("no SecurityResult from {addr} within {RFB_DEADLINE:?}"))??;
    Ok(ClientGssLayer(layer))
}

/// Version, security type 20, the SASL exchange and the SecurityResult; returns the raw
/// stream, the layer, any bytes read past the result, and the local address.
async fn sasl_exchange(
    addr: SocketAddr,
    first: FirstStep,
) -> anyhow::Result<(TcpStream, ClientLayer, Vec<u8>, Option<SocketAddr>)> {
    let FirstStep {
        mut initiator,
        token,
    } = first;
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr().ok();
    let mut conn = RfbStream::new(stream, MAX_SASL_DATA + 16);

    let version = choose_security(&mut conn, SecurityType::Sasl).await?;

    let mechlist = conn
        .expect("the SASL mechanism list", decode_mechlist)
        .await?;
    ensure!(
        mechlist.split(',').any(|m| m == "GSSAPI"),
        "the server offers SASL mechanisms {mechlist:?}, not GSSAPI"
    );
    let mut out = 6_u32.to_be_bytes().to_vec();
    out.extend_from_slice(b"GSSAPI");
    out.extend_from_slice(&encode_client_data(token.as_deref()));
    conn.send(&out).await?;

    for _ in 0..MAX_STEPS {
        let step = conn.expect("a SASL step", decode_server_step).await?;
        let (data, complete) = match step {
            ServerStep::Step { data, complete } => (data, complete),
            ServerStep::Failed => {
                let result = conn
                    .expect("the security result", |b| {
                        SecurityResult::decode(version, b)
                    })
                    .await?;
                check_security_result(result)?;
                bail!("the server sent a SASL step holding only a NUL");
            }
        };
        if complete {
            ensure!(data.is_none(), "the server's last SASL step carries data");
            let result = conn
                .expect("the security result", |b| {
                    SecurityResult::decode(version, b)
                })
                .await?;
            check_security_result(result)?;
            let layer = initiator
                .into_layer()
                .context("the login ended without a security layer")?;
            let (stream, early) = conn.into_parts();
            return Ok((stream, layer, early, local));
        }
        let reply = initiator.step(data.as_deref()).map_err(|e| anyhow!(e))?;
        conn.send(&encode_client_data(reply.as_deref())).await?;
    }
    bail!("the SASL exchange went on for more than {MAX_STEPS} steps")
}

/// A client SASL message: `u32 len+1, data, NUL`, or `u32 0` for none.
pub fn encode_client_data(data: Option<&[u8]>) -> Vec<u8> {
    let Some(data) = data else {
        return 0_u32.to_be_bytes().to_vec();
    };
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    out.push(0);
    out
}

/// `u32 len, mechlist`.
fn decode_mechlist(b: &[u8]) -> Result<Option<(String, usize)>, RfbError> {
    let Some(header) = b.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_SASL_DATA {
        return Err(too_long("SASL mechanism list", len));
    }
    Ok(b.get(4..4 + len)
        .map(|list| (String::from_utf8_lossy(list).into_owned(), 4 + len)))
}

/// One server message where a SASL step is due.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerStep {
    /// Data without its NUL (None: no data) and the complete flag.
    Step {
        data: Option<Vec<u8>>,
        complete: bool,
    },
    /// The `u32 1` of a failed SecurityResult, left unread for its decoder.
    Failed,
}

/// Decodes a server step (see the module doc for [`ServerStep::Failed`]).
pub fn decode_server_step(b: &[u8]) -> Result<Option<(ServerStep, usize)>, RfbError> {
    let Some(header) = b.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len == 1 {
        return Ok(Some((ServerStep::Failed, 0)));
    }
    if len > MAX_SASL_DATA {
        return Err(too_long("SASL server data", len));
    }
    let Some(&flag) = b.get(4 + len) else {
        return Ok(None);
    };
    let data = match len {
        0 => None,
        _ if b[3 + len] != 0 => {
            return Err(RfbError::Unsupported(
                "SASL server data without its NUL".into(),
            ));
        }
        _ => Some(b[4..3 + len].to_vec()),
    };
    let complete = flag == 1;
    Ok(Some((ServerStep::Step { data, complete }, 5 + len)))
}

fn too_long(what: &'static str, len: usize) -> RfbError {
    RfbError::TooLong {
        what,
        len: len as u64,
        max: MAX_SASL_DATA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_data_carries_its_nul_and_none_is_an_empty_length() {
        assert_eq!(encode_client_data(Some(b"ab")), [0, 0, 0, 3, b'a', b'b', 0]);
        assert_eq!(encode_client_data(None), [0, 0, 0, 0]);
    }

    #[test]
    fn server_steps_drop_their_nul_and_a_lone_one_is_a_failure() {
        let step = [0, 0, 0, 3, b'o', b'k', 0, 0, 0xff];
        let (got, used) = decode_server_step(&step).expect("valid").expect("whole");
        let data = Some(b"ok".to_vec());
        assert_eq!(
            (got, used),
            (
                ServerStep::Step {
                    data,
                    complete: false
                },
                8
            )
        );
        let (got, used) = decode_server_step(&[0, 0, 0, 0, 1])
            .expect("ok")
            .expect("whole");
        let done = ServerStep::Step {
            data: None,
            complete: true,
        };
        assert_eq!((got, used), (done, 5));
        assert_eq!(decode_server_step(&[0, 0, 0, 3, b'o']).expect("ok"), None);
        let failed = decode_server_step(&[0, 0, 0, 1, 0, 0]).expect("ok");
        assert_eq!(failed, Some((ServerStep::Failed, 0)));
        assert!(decode_server_step(&[0, 0, 0, 2, b'x', b'y', 0]).is_err());
        assert!(decode_server_step(&[0xff, 0, 0, 0]).is_err());
    }
}
