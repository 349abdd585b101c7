//! The client side of a Kerberos (GSSAPI, RFC 4752) login: the user's ticket from the
//! credential cache (`kinit`; `KRB5CCNAME` picks another cache), a service ticket for
//! `<service>/<host>`, then the security layer negotiation.
//!
//! The API needs no layer (TLS or a UNIX socket protects it), so [`Initiator`] for it
//! accepts the server's offer of "none". A console without TLS offers confidentiality
//! only; the initiator then hands back a [`ClientLayer`] to wrap the RFB stream in.

use libgssapi::{
    context::{ClientCtx, CtxFlags, SecurityContext},
    credential::{Cred, CredUsage},
    name::Name,
    oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, OidSet},
};

/// RFC 4752's layer bits.
pub const LAYER_NONE: u8 = 1;
pub const LAYER_INTEGRITY: u8 = 2;
pub const LAYER_CONFIDENTIALITY: u8 = 4;

/// The largest packet this client accepts under a layer (advertised to the server).
pub const CLIENT_MAX_BUFFER: usize = 64 * 1024;

/// The user's Kerberos ticket, when the credential cache holds a valid one; the error
/// says what is wrong and to run `kinit`.
pub fn user_credential() -> Result<Cred, String> {
    let mut krb5 = OidSet::new();
    krb5.add(GSS_MECH_KRB5).map_err(|e| e.to_string())?;
    Cred::acquire(None, None, CredUsage::Initiate, Some(&krb5))
        .map_err(|e| format!("no usable Kerberos ticket ({e}); run kinit"))
}

enum State {
    /// Context tokens are being exchanged.
    Context,
    /// The context is up; the server's wrapped offer is due.
    Offer,
    Done,
}

/// One login in progress.
pub struct Initiator {
    ctx: ClientCtx,
    state: State,
    /// The layer wanted: NONE for the API, CONFIDENTIALITY for a console without TLS.
    want: u8,
    peer_max: usize,
}

impl Initiator {
    /// A login to `service` on `host` with the user's ticket, ending in layer `want`.
    pub fn new(service: &str, host: &str, want: u8) -> Result<Initiator, String> {
        let cred = user_credential()?;
        let target = Name::new(
            format!("{service}@{host}").as_bytes(),
            Some(GSS_NT_HOSTBASED_SERVICE),
        )
        .map_err(|e| format!("bad service name {service}@{host}: {e}"))?;
        let flags = CtxFlags::GSS_C_MUTUAL_FLAG
            | CtxFlags::GSS_C_INTEG_FLAG
            | CtxFlags::GSS_C_CONF_FLAG
            | CtxFlags::GSS_C_SEQUENCE_FLAG
            | CtxFlags::GSS_C_REPLAY_FLAG;
        Ok(Initiator {
            ctx: ClientCtx::new(Some(cred), target, flags, Some(GSS_MECH_KRB5)),
            state: State::Context,
            want,
            peer_max: 0,
        })
    }

    /// The next message for the server, given its last one (None at the start). Ok(None)
    /// is an empty message.
    pub fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
        match self.state {
            State::Context => {
                let server = server.filter(|s| !s.is_empty());
                let token = self
                    .ctx
                    .step(server, None)
                    .map_err(|e| format!("Kerberos: {e}"))?;
                if self.ctx.is_complete() {
                    self.state = State::Offer;
                }
                Ok(token.filter(|t| !t.is_empty()).map(|t| t.to_vec()))
            }
            State::Offer => {
                let wrapped = server.ok_or("the server sent no security layer offer")?;
                let offer = self
                    .ctx
                    .unwrap(wrapped)
                    .map_err(|e| format!("Kerberos (layer offer): {e}"))?;
                let [layers, a, b, c] = offer[..] else {
                    return Err(format!("a layer offer of {} bytes, not 4", offer.len()));
                };
                if layers & self.want == 0 {
                    return Err(format!(
                        "the server offers security layers {layers:#04x}, not {:#04x}",
                        self.want
                    ));
                }
                self.peer_max = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                let max = if self.want == LAYER_NONE {
                    0
                } else {
                    CLIENT_MAX_BUFFER
                };
                let choice = [self.want, (max >> 16) as u8, (max >> 8) as u8, max as u8];
                let token = self
                    .ctx
                    .wrap(false, &choice)
                    .map_err(|e| format!("Kerberos (layer choice): {e}"))?;
                self.state = State::Done;
                Ok(Some(token.to_vec()))
            }
            State::Done => Err("the login is already over".into()),
        }
    }

    /// Whether the login is over on this side: the server proved itself and the layer
    /// choice was sent.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The negotiated layer once the login is over; None when it is "none".
    pub fn into_layer(self) -> Option<ClientLayer> {
        (matches!(self.state, State::Done) && self.want != LAYER_NONE).then(|| ClientLayer {
            ctx: self.ctx,
            encrypt: self.want == LAYER_CONFIDENTIALITY,
            peer_max: self.peer_max,
        })
    }
}

/// A client's security layer: wraps what it sends, unwraps what it receives.
pub struct ClientLayer {
    ctx: ClientCtx,
    encrypt: bool,
    peer_max: usize,
}

impl ClientLayer {
    pub fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        self.ctx
            .wrap(self.encrypt, plain)
            .map(|t| t.to_vec())
            .map_err(|e| e.to_string())
    }

    pub fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, String> {
        self.ctx
            .unwrap(token)
            .map(|t| t.to_vec())
            .map_err(|e| e.to_string())
    }

    /// The largest token the server accepts.
    pub fn peer_max(&self) -> usize {
        self.peer_max
    }
}
