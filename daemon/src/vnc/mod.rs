//! Consoles. `rfb` is the `vmgate-rfb` crate, the pure RFB (RFC 6143) wire code, re-exported
//! here: shared by the per-guest gateway, the test driver's framebuffer server, the fuzz
//! targets, and the tests and benchmarks that act as clients.
//! The gateway reports to an `audit::AuditSink`; `source` and `throttle` are the
//! brute-force lockout; `ports` is console autoport.

pub mod gateway;
pub mod password;
pub mod ports;
pub use vmgate_rfb as rfb;
pub mod sessions;
pub mod settings;
pub mod source;
pub mod throttle;
pub mod vencrypt;
