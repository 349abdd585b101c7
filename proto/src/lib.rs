//! vmgate's wire schema, package `vmgate.v1`: generated messages, clients and servers;
//! and the pieces of transport both ends share: a UNIX stream that wakes its task for
//! reads only (`read_wake`) and an HTTP/2 stream's body for tonic (`h2_body`). Both the
//! daemon and the CLI depend on it.

pub mod h2_body;
pub mod read_wake;

/// Version 1 of the API.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("vmgate.v1");
    include!(concat!(env!("OUT_DIR"), "/methods.rs"));
}
