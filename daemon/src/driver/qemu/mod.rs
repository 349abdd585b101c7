//! The `qemu` driver's building blocks: the command line of a guest (`argv`, pure) and the
//! QMP client that supervises it (`qmp`), plus the CPU time QEMU does not report over QMP
//! (`cputime`), and starting the emulator with a clean environment (`spawn`). The
//! supervisor actor and re-attach come on top of these and are not here yet; nothing calls
//! `spawn` outside the tests yet.

pub mod argv;
pub mod cputime;
pub mod qmp;
pub mod spawn;

#[cfg(test)]
mod real_qemu_tests;
