//! vmgate's wire schema, package `vmgate.v1`: generated messages, clients and servers.
//! No logic lives here; both the daemon and the CLI depend on it.

#![allow(missing_docs, clippy::all)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("vmgate.v1");
    include!(concat!(env!("OUT_DIR"), "/methods.rs"));
}
