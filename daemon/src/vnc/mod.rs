//! Consoles. `rfb` is the pure RFB (RFC 6143) wire code, shared by the per-guest gateway,
//! the test driver's framebuffer server, and the tests and benchmarks that act as clients.

pub mod rfb;
