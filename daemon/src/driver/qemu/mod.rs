//! The `qemu` driver's building blocks: the command line of a guest (`argv`, pure) and the
//! QMP client that supervises it (`qmp`), plus the CPU time QEMU does not report over QMP
//! (`cputime`). The supervisor actor, spawning and re-attach come on top of these and are
//! not here yet; nothing in this module starts processes except the tests.

pub mod argv;
pub mod cputime;
pub mod qmp;

#[cfg(test)]
mod real_qemu_tests;
