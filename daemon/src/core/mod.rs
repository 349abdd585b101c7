//! The core: domains, their definitions and state machine, and the operations on them. It
//! owns the in-memory inventory, persists definitions through `store`, runs guests through
//! a `driver`, and hands each running guest's console its rules and password (`vnc`).
//! It knows nothing of gRPC: `rpc` converts requests into calls here, names a domain by the
//! `Target` it found once, and gets back the core's own types (`DomainView`, `views`),
//! never a type of the store, the gateway or a driver.

pub mod access;
pub mod console;
mod error;
pub mod events;
mod inventory;
mod lifecycle;
mod reattach;
pub mod state;
mod views;

pub use error::CoreError;
pub use inventory::{DomainView, GuestHost, ListFilter, Manager, ManagerOptions, Target};
pub use lifecycle::ShutdownWait;
pub use views::{ConsoleRule, DisplayAddress, SessionView};
