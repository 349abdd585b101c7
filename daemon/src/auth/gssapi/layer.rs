//! The Kerberos security layer of a finished GSSAPI login: `gss_wrap` and `gss_unwrap`
//! on the established context, encrypting when confidentiality was chosen. The framing
//! (a length before each token) and the buffering are [`LayeredStream`]'s.
//!
//! [`LayeredStream`]: crate::auth::sasl_layer::LayeredStream

use libgssapi::context::{SecurityContext, ServerCtx};

use crate::auth::sasl_layer::{LayerError, SecurityLayer};

/// A negotiated layer on one connection.
pub struct GssLayer {
    ctx: ServerCtx,
    encrypt: bool,
    peer_max: usize,
    own_max: usize,
}

impl GssLayer {
    pub(super) fn new(ctx: ServerCtx, encrypt: bool, peer_max: usize, own_max: usize) -> Self {
        GssLayer {
            ctx,
            encrypt,
            peer_max,
            own_max,
        }
    }
}

impl SecurityLayer for GssLayer {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, LayerError> {
        self.ctx
            .wrap(self.encrypt, plain)
            .map(|token| token.to_vec())
            .map_err(|e| LayerError::Wrap(e.to_string()))
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, LayerError> {
        self.ctx
            .unwrap(token)
            .map(|plain| plain.to_vec())
            .map_err(|e| LayerError::Unwrap(e.to_string()))
    }

    fn peer_max(&self) -> usize {
        self.peer_max
    }

    fn own_max(&self) -> usize {
        self.own_max
    }
}
