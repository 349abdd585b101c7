//! The channel under a [`super::Connection`]: a direct HTTP/2 connection on the UNIX socket
//! (see `direct`), or tonic's `Channel` on the network transports, behind one type so the
//! API clients and the handshake do not care which.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, transport::Channel};
use tower::Service;

use super::direct::DirectChannel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One transport's channel.
#[derive(Clone, Debug)]
pub enum ApiTransport {
    /// HTTP/2 straight on a UNIX socket.
    Direct(DirectChannel),
    /// tonic's channel (TLS, TCP).
    Tonic(Channel),
}

impl From<Channel> for ApiTransport {
    fn from(channel: Channel) -> ApiTransport {
        ApiTransport::Tonic(channel)
    }
}

impl From<DirectChannel> for ApiTransport {
    fn from(channel: DirectChannel) -> ApiTransport {
        ApiTransport::Direct(channel)
    }
}

impl Service<http::Request<Body>> for ApiTransport {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            ApiTransport::Direct(c) => c.poll_ready(cx),
            ApiTransport::Tonic(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self {
            ApiTransport::Direct(c) => c.call(req),
            ApiTransport::Tonic(c) => {
                let call = c.call(req);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
        }
    }
}
