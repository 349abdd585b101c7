//! One GSSAPI login (RFC 4752, section 3.1), from the acceptor's side.
//!
//! 0. The acceptor credential is read from the keytab (at the first step, which the SASL
//!    code runs off the async threads).
//! 1. The client's Kerberos tokens go to `gss_accept_sec_context` until the context is
//!    established; its last output token (the AP-REP of mutual authentication) is sent
//!    and answered by an empty client message, as Cyrus SASL expects.
//! 2. The ticket must be for this service, the mechanism Kerberos 5, the client not
//!    anonymous, and a context that will carry a layer must detect replayed and missing
//!    packets (sequence checking), so nobody on the wire can repeat a keystroke.
//! 3. The server sends its offer, wrapped without encryption: a byte of layer bits and
//!    the largest packet it accepts (3 bytes, big-endian; 0 when it offers no layer).
//! 4. The client answers, wrapped, with the one layer it chose, the largest packet it
//!    accepts, and an optional authorization id, which must name the client itself.

use libgssapi::{
    context::{CtxFlags, SecurityContext, ServerCtx},
    oid::GSS_MECH_KRB5,
};

use super::{
    GssLayer, GssapiService, LayerPolicy, Layers, MAX_INCOMING, MIN_PEER_BUFFER, principal_name,
};

/// One step's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct GssStep {
    /// Data for the client; None when there is nothing to send.
    pub output: Option<Vec<u8>>,
    /// The login succeeded: read [`GssExchange::user`].
    pub done: bool,
}

enum State {
    /// Nothing read yet, not even the keytab.
    Start,
    Accepting(ServerCtx),
    /// The last context token was sent; the client's empty answer is due.
    Established(ServerCtx),
    /// The offer was sent; the client's choice is due.
    Offered(ServerCtx),
    Done {
        user: String,
        layer: Option<GssLayer>,
    },
    Failed,
}

/// One login in progress.
pub struct GssExchange {
    service: GssapiService,
    policy: LayerPolicy,
    state: State,
    principal: Option<String>,
    /// The established context's flags.
    flags: CtxFlags,
}

/// The principal of anonymous Kerberos (RFC 8062), whoever is behind it.
const ANONYMOUS: &str = "WELLKNOWN/ANONYMOUS@WELLKNOWN:ANONYMOUS";

impl GssExchange {
    pub(super) fn new(service: GssapiService, policy: LayerPolicy) -> GssExchange {
        GssExchange {
            service,
            policy,
            state: State::Start,
            principal: None,
            flags: CtxFlags::empty(),
        }
    }

    /// Feeds the client's message (None when it sent none). An Err is the reason for the
    /// log and audit; the client only hears that authentication failed.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<GssStep, String> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Start => {
                let cred = self.service.credential()?;
                self.state = State::Accepting(ServerCtx::new(Some(cred)));
                self.step(input)
            }
            State::Accepting(mut ctx) => {
                let token = input.filter(|t| !t.is_empty()).ok_or("no Kerberos token")?;
                let reply = ctx
                    .step(token, None)
                    .map_err(|e| format!("Kerberos: {e}"))?;
                if !ctx.is_complete() {
                    let reply = reply.ok_or("Kerberos asked for more without a token")?;
                    self.state = State::Accepting(ctx);
                    return Ok(more(reply.to_vec()));
                }
                self.accept_context(&mut ctx)?;
                match reply.filter(|r| !r.is_empty()) {
                    Some(reply) => {
                        self.state = State::Established(ctx);
                        Ok(more(reply.to_vec()))
                    }
                    None => self.offer(ctx),
                }
            }
            State::Established(ctx) => {
                if input.is_some_and(|i| !i.is_empty()) {
                    return Err("data where an empty message was due".into());
                }
                self.offer(ctx)
            }
            State::Offered(mut ctx) => {
                let wrapped = input.ok_or("no answer to the security layer offer")?;
                let choice = ctx
                    .unwrap(wrapped)
                    .map_err(|e| format!("Kerberos (layer choice): {e}"))?;
                self.choose(ctx, &choice)
            }
            State::Done { .. } | State::Failed => Err("the exchange is already over".into()),
        }
    }

    /// Checks the established context: Kerberos 5, for our service, with the protection
    /// the policy needs; records the client's principal.
    fn accept_context(&mut self, ctx: &mut ServerCtx) -> Result<(), String> {
        let mechanism = ctx.mechanism().map_err(|e| format!("Kerberos: {e}"))?;
        if mechanism != GSS_MECH_KRB5 {
            return Err(format!("mechanism {mechanism} is not Kerberos 5"));
        }
        let target = ctx
            .target_name()
            .and_then(|n| n.display_name())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("Kerberos: {e}"))?;
        if !self.service.is_our_service(&target) {
            return Err(format!(
                "the ticket is for {target}, not a {}/ service principal",
                self.service.service()
            ));
        }
        let flags = ctx.flags().map_err(|e| format!("Kerberos: {e}"))?;
        let needs =
            CtxFlags::GSS_C_CONF_FLAG | CtxFlags::GSS_C_INTEG_FLAG | CtxFlags::GSS_C_SEQUENCE_FLAG;
        if self.policy == LayerPolicy::Confidentiality && !flags.contains(needs) {
            return Err(format!(
                "the Kerberos context ({flags:?}) cannot encrypt with sequence checking, and \
                 this console needs a confidentiality layer (no TLS underneath)"
            ));
        }
        let source = ctx
            .source_name()
            .and_then(|n| n.display_name())
            .map_err(|e| format!("Kerberos: {e}"))?;
        let principal = String::from_utf8_lossy(&source).into_owned();
        if flags.contains(CtxFlags::GSS_C_ANON_FLAG) || principal == ANONYMOUS {
            return Err("anonymous Kerberos logins are not accepted".into());
        }
        self.principal = Some(principal);
        self.flags = flags;
        Ok(())
    }

    fn offer(&mut self, mut ctx: ServerCtx) -> Result<GssStep, String> {
        let layers = Layers::allowed_by(self.policy);
        let max = if layers == Layers::NONE {
            0
        } else {
            MAX_INCOMING
        };
        let token = encode_sizes(layers.bits(), max);
        let wrapped = ctx
            .wrap(false, &token)
            .map_err(|e| format!("Kerberos (layer offer): {e}"))?;
        self.state = State::Offered(ctx);
        Ok(more(wrapped.to_vec()))
    }

    fn choose(&mut self, ctx: ServerCtx, choice: &[u8]) -> Result<GssStep, String> {
        let Some((&bits, rest)) = choice.split_first() else {
            return Err("empty security layer choice".into());
        };
        let (size, authzid) = rest
            .split_at_checked(3)
            .ok_or("short security layer choice")?;
        let offered = Layers::allowed_by(self.policy);
        let chosen = Layers::single(bits)
            .filter(|l| offered.contains(*l))
            .ok_or_else(|| {
                format!(
                    "the client chose security layers {bits:#04x}, not one of {:#04x}",
                    offered.bits()
                )
            })?;
        let principal = self.principal.take().ok_or("no principal")?;
        let user = principal_name(&principal, self.service.local_realm());
        // Acting as someone else is not supported; naming oneself is harmless (Cyrus
        // clients send whatever user name they were given).
        if !authzid.is_empty() && authzid != principal.as_bytes() && authzid != user.as_bytes() {
            return Err(format!(
                "{principal} asked to act as {:?}, which is not allowed",
                String::from_utf8_lossy(authzid)
            ));
        }
        let peer_max =
            usize::from(size[0]) << 16 | usize::from(size[1]) << 8 | usize::from(size[2]);
        let layer = if chosen == Layers::NONE {
            None
        } else if !self.flags.contains(CtxFlags::GSS_C_SEQUENCE_FLAG) {
            return Err(format!(
                "the client chose a {} layer without sequence checking, which would let \
                 packets be replayed or dropped unnoticed",
                chosen.name()
            ));
        } else {
            if peer_max < MIN_PEER_BUFFER {
                return Err(format!(
                    "the client's receive buffer of {peer_max} bytes is below {MIN_PEER_BUFFER}"
                ));
            }
            let encrypt = chosen == Layers::CONFIDENTIALITY;
            Some(GssLayer::new(ctx, encrypt, peer_max, MAX_INCOMING))
        };
        self.state = State::Done { user, layer };
        Ok(GssStep {
            output: None,
            done: true,
        })
    }

    /// The authenticated user, once the login succeeded.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Done { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The security layer to wrap the connection in, taken once; None without one.
    pub fn take_layer(&mut self) -> Option<GssLayer> {
        match &mut self.state {
            State::Done { layer, .. } => layer.take(),
            _ => None,
        }
    }
}

fn more(output: Vec<u8>) -> GssStep {
    GssStep {
        output: Some(output),
        done: false,
    }
}

/// The four bytes of an offer or a choice: layer bits and a 24-bit size.
pub(crate) fn encode_sizes(bits: u8, max: usize) -> [u8; 4] {
    let max = max.min(0xFF_FFFF);
    [bits, (max >> 16) as u8, (max >> 8) as u8, max as u8]
}
