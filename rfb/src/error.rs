//! The one error type of the RFB layer.
//!
//! Owns [`RfbError`]: every codec, the I/O helpers and the servers built on them
//! report failures through it. Messages name the offending value so that a log
//! line alone tells what the peer sent.

use super::SecurityType;

/// Everything that can go wrong while speaking RFB.
#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    /// The 12-byte ProtocolVersion was not `RFB xxx.yyy\n`.
    #[error("Malformed protocol version {0:?}")]
    MalformedVersion(String),
    /// Well formed, but not a version we can speak.
    #[error("Unsupported protocol version {major}.{minor}")]
    UnsupportedVersion { major: u32, minor: u32 },
    /// A length field is over the limit for its field.
    #[error("{what} length {len} exceeds the limit of {max} bytes")]
    TooLong {
        what: &'static str,
        len: u64,
        max: usize,
    },
    /// An unknown client-to-server message type (first byte of the message).
    #[error("Unknown client message type {0}")]
    UnknownClientMessage(u8),
    /// An unknown server-to-client message type (first byte of the message).
    #[error("Unknown server message type {0}")]
    UnknownServerMessage(u8),
    /// A known message type with a sub-type or operation we do not implement.
    #[error("Unsupported {0}")]
    Unsupported(String),
    /// A rectangle encoding the decoder cannot size.
    #[error("Unknown rectangle encoding {0}")]
    UnknownEncoding(i32),
    /// A PixelFormat we cannot convert to (or that is inconsistent).
    #[error("Invalid pixel format: {0}")]
    InvalidPixelFormat(&'static str),
    /// The peer picked a security type that was not offered.
    #[error("Security type {0} was not offered")]
    SecurityTypeNotOffered(u8),
    /// Client side: nothing the server offers is something we can do.
    #[error("No usable security type among {0:?}")]
    NoCommonSecurityType(Vec<SecurityType>),
    /// The server refused the connection before authentication, with its reason.
    #[error("Server refused the connection: {0}")]
    ConnectionRefused(String),
    /// SecurityResult said "failed" (reason is empty before 3.8).
    #[error("Authentication failed: {0}")]
    AuthenticationFailed(String),
    /// An encoder was asked to send something the protocol cannot carry.
    #[error("Cannot encode {0}")]
    Unencodable(String),
    /// The stream ended in the middle of a message.
    #[error("Connection closed in the middle of a message")]
    UnexpectedEof,
    /// The stream ended where the protocol needs more (for example during the handshake).
    #[error("Connection closed during {0}")]
    Closed(&'static str),
    /// The transport failed.
    #[error("I/O error on the RFB stream")]
    Io(#[from] std::io::Error),
}

impl RfbError {
    /// The version bytes as text for an error message, with control bytes escaped.
    pub(crate) fn malformed_version(bytes: &[u8]) -> Self {
        Self::MalformedVersion(bytes.escape_ascii().to_string())
    }
}
