//! Console clients for the end-to-end tests and the benchmarks: gtk-vnc's real
//! `gvnccapture` as a new process ([`gvnccapture()`] and its variants), and [`RfbClient`],
//! an in-process RFB client that stays connected and speaks None, VNC authentication and
//! VeNCrypt (X509None, X509Vnc, X509Plain) with a rustls client; also where a guest's
//! console is, read through the real CLI (`vmgate vncdisplay`).
//!
//! Nothing here decides whether a test passes: the helpers report what happened (exit
//! status and transcript, the error text of a refused handshake, whether the server closed)
//! and the tests assert on it. Every wait has a deadline.
//!
//! - `gvnccapture`: the gtk-vnc client under `expect`, its certificate home, PNG sizes.
//! - `addr`: display numbers and ports, the address an `RfbClient` dials.
//! - `client`: `RfbClient`, from connect to updates and close.
//! - `security`: choosing a security type, and VeNCrypt's client side.
//! - `tls`: the VeNCrypt client's TLS credentials, handshake and what it agreed on.

mod addr;
mod client;
mod gvnccapture;
mod security;
mod tls;

use tokio::io::{AsyncRead, AsyncWrite};

pub use addr::{ConsoleAddr, VNC_BASE_PORT, display_port, parse_display};
pub use client::{RFB_DEADLINE, RfbClient};
pub use gvnccapture::{
    CAPTURE_DEADLINE, Capture, GvncHome, gvnccapture, gvnccapture_as, gvnccapture_env,
    gvnccapture_login, png_size,
};
pub use security::choose_security;
pub use tls::{TlsCreds, TlsInfo, cert_der};

/// A TCP or UNIX stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
