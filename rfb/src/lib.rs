//! RFB (the VNC protocol, RFC 6143) on the wire: pure codecs plus a thin async layer.
//!
//! Owns the byte-exact encoding and decoding of every RFB message vmgate sends or
//! receives: the version and security handshake, VNC authentication's DES
//! arithmetic, VeNCrypt's version and subtype exchange, the initialisation messages,
//! client and server messages (with QEMU's extensions), and Raw pixel conversion.
//! Codecs are functions from bytes to typed values; the incremental decoders return
//! `Ok(None)` until a whole message is there and never allocate beyond the bounds
//! declared next to them. Only [`io`] touches a stream. This crate makes no policy
//! decision (who may connect, which password applies, share modes) and knows nothing
//! of TLS or SASL: that belongs to the daemon's gateway built on it. It is shared by
//! the gateway, the test driver's framebuffer server, the test harness and the fuzz
//! targets (`fuzz/`); the daemon re-exports it as `vmgated::vnc::rfb`.
//!
//! # Layout
//! - `version`: ProtocolVersion and the version quirks (3.4-3.6 = 3.3, 3.889 = 3.8).
//! - `security`: security types, the offer in its 3.3 and 3.7+ forms, SecurityResult.
//! - `vncauth`: VNC authentication (DES challenge-response).
//! - `pixel`: PixelFormat and conversion from `0x00RRGGBB` pixels.
//! - `rect`: rectangles and multi-head screens.
//! - `init`: ClientInit and ServerInit.
//! - `client_msg`: client-to-server messages, QEMU's 251/255 included.
//! - `server_msg`: server-to-client messages, Raw encoding.
//! - `client`: the client's handshake decisions.
//! - `vencrypt`: VeNCrypt's version, subtypes, choice and acknowledgement.
//! - `io`: bounded buffered reading and the async client handshake.
//! - `wire`: the byte cursor every decoder reads through (private).

mod client;
mod client_msg;
mod error;
mod init;
pub mod io;
mod pixel;
mod rect;
mod security;
mod server_msg;
pub mod vencrypt;
mod version;
mod vncauth;
mod wire;

#[cfg(test)]
mod proptests;

pub use client::{
    ClientConfig, check_security_result, choose_security, security_choice_bytes, version_reply,
};
pub use client_msg::{
    ClientMessage, MAX_CLIENT_MESSAGE_LEN, MAX_CUT_TEXT, MAX_ENCODINGS, QemuAudio, client_type,
    decode_client_message,
};
pub use error::RfbError;
pub use init::{ClientInit, MAX_NAME_LEN, ServerInit};
pub use pixel::{PIXEL_FORMAT_LEN, PixelConverter, PixelFormat};
pub use rect::{Rect, Screen};
pub use security::{
    MAX_REASON_LEN, SecurityOffer, SecurityResult, SecurityType, decode_security_offer,
    encode_security_failure, encode_security_type_v3_3, encode_security_types,
    parse_security_choice,
};
pub use server_msg::{
    MAX_UPDATE_BYTES, RectPayload, Rectangle, ServerMessage, decode_rectangle,
    decode_server_message, encode_bell, encode_raw_rect, encode_raw_rect_with, encode_rect_header,
    encode_server_cut_text, encode_update_header, encoding, server_type,
};
pub use version::ProtocolVersion;
pub use vncauth::{CHALLENGE_LEN, generate_challenge, verify_vnc_auth, vnc_auth_response};
