//! The core: domains, their definitions and state machine, and the operations on them. It
//! owns the in-memory inventory, persists definitions through `store`, and runs guests
//! through a `driver`. It knows nothing of gRPC: `rpc` converts requests into calls here.

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
