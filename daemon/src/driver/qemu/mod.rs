//! The `qemu` driver: every guest is a `qemu-system-x86_64` process, supervised over QMP.
//! `driver` starts guests and re-attaches to those an earlier daemon left running; `guest`
//! is the per-guest supervisor; `argv` builds the command line (pure); `spawn` starts the
//! emulator with a clean environment; `qmp` is the monitor client; `process` and `cputime`
//! read what QMP does not tell from `/proc`.

pub mod argv;
pub mod cputime;
mod driver;
mod guest;
pub mod process;
pub mod qmp;
pub mod spawn;

pub use driver::QemuDriver;

#[cfg(test)]
mod real_qemu_tests;
