//! Console autoport: which TCP port a guest's console gets when its definition names none.
//!
//! The allocator remembers which ports this daemon's consoles hold (a bitmap over all 65,536
//! ports, so explicitly requested ports count too) and the port after the last one it gave
//! out. A start tries that port first and walks forward, wrapping from
//! `remote_display_port_max` to `_min`, skipping held ports by bitmap words rather than by
//! failed binds: its cost does not grow with the number of running guests. A port another
//! process holds is found by its failed bind and passed over until the walk comes round again.
//! Walking on rather than taking the lowest free port also means a port a guest just gave up
//! is not handed to the next guest at once, where a viewer reconnecting to the old guest
//! would reach a different one.
//!
//! A port is held for as long as its [`PortLease`] lives; the lease goes with the console's
//! listener and gives the port back when the listener closes.

use std::{
    fmt, io,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

const WORDS: usize = (u16::MAX as usize + 1) / 64;

/// The console ports this daemon holds, and where autoport looks next. Cheap to clone: the
/// clones share one state.
#[derive(Clone)]
pub struct PortAllocator {
    inner: Arc<Inner>,
}

struct Inner {
    min: u16,
    max: u16,
    state: Mutex<State>,
}

struct State {
    held: Box<[u64; WORDS]>,
    /// The port autoport tries first.
    next: u16,
}

/// A port held by one console; dropping it gives the port back.
#[derive(Debug)]
pub struct PortLease {
    inner: Arc<Inner>,
    port: u16,
    /// False when the port was already marked (the same port on another address): only the
    /// lease that marked it clears it.
    marked: bool,
}

/// Why autoport found no port.
#[derive(Debug)]
pub enum AcquireError<E> {
    /// Every port of the range is held, by this daemon or by other processes.
    Exhausted,
    /// Binding `port` failed for another reason than the port being in use.
    Bind(u16, E),
}

impl PortAllocator {
    /// Autoport over `min..=max` (an empty range when `min > max`).
    pub fn new(min: u16, max: u16) -> PortAllocator {
        PortAllocator {
            inner: Arc::new(Inner {
                min,
                max,
                state: Mutex::new(State {
                    held: Box::new([0; WORDS]),
                    next: min,
                }),
            }),
        }
    }

    /// Finds a port for a console: calls `bind` with free ports of the range, from the one
    /// after the last given out onwards and round again, until one binds. A bind failing
    /// with `AddrInUse` (another process holds the port) moves on to the next port; any
    /// other failure ends the search. Each port of the range is tried at most once.
    pub fn acquire<T>(
        &self,
        mut bind: impl FnMut(u16) -> io::Result<T>,
    ) -> Result<(T, PortLease), AcquireError<io::Error>> {
        let Inner { min, max, .. } = *self.inner;
        if min > max {
            return Err(AcquireError::Exhausted);
        }
        // Binding under the lock keeps two starts from trying the same port; a bind of a
        // port that is free does not wait.
        let mut state = self.inner.lock();
        let start = state.next.clamp(min, max);
        let len = u32::from(max - min) + 1;
        let mut offset = 0;
        while let Some(port) = state.next_free(min, max, start, offset) {
            match bind(port) {
                Ok(bound) => {
                    state.mark(port);
                    state.next = if port == max { min } else { port + 1 };
                    let lease = PortLease {
                        inner: self.inner.clone(),
                        port,
                        marked: true,
                    };
                    return Ok((bound, lease));
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    offset = distance(min, len, start, port) + 1;
                }
                Err(e) => return Err(AcquireError::Bind(port, e)),
            }
        }
        Err(AcquireError::Exhausted)
    }

    /// Records that a console holds `port`, which it asked for by number and has bound.
    pub fn hold(&self, port: u16) -> PortLease {
        let mut state = self.inner.lock();
        let marked = !state.is_held(port);
        if marked {
            state.mark(port);
        }
        PortLease {
            inner: self.inner.clone(),
            port,
            marked,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn is_held(&self, port: u16) -> bool {
        self.held[usize::from(port) / 64] & (1u64 << (port % 64)) != 0
    }

    fn mark(&mut self, port: u16) {
        self.held[usize::from(port) / 64] |= 1u64 << (port % 64);
    }

    fn clear(&mut self, port: u16) {
        self.held[usize::from(port) / 64] &= !(1u64 << (port % 64));
    }

    /// The first port not held, walking the range from `start` (at `offset` steps from it
    /// or more) round to the port before `start`.
    fn next_free(&self, min: u16, max: u16, start: u16, offset: u32) -> Option<u16> {
        let len = u32::from(max - min) + 1;
        if offset >= len {
            return None;
        }
        let from = u32::from(start) + offset;
        if from <= u32::from(max) {
            // `from` fits: it is at most `max`.
            let from = from as u16;
            self.first_free(from, max).or_else(|| {
                if start > min {
                    self.first_free(min, start - 1)
                } else {
                    None
                }
            })
        } else {
            let from = (from - len) as u16;
            self.first_free(from, start.checked_sub(1)?)
        }
    }

    /// The lowest port of `lo..=hi` not held, a 64-port word at a time.
    fn first_free(&self, lo: u16, hi: u16) -> Option<u16> {
        if lo > hi {
            return None;
        }
        let (lo, hi) = (usize::from(lo), usize::from(hi));
        for word in lo / 64..=hi / 64 {
            let mut free = !self.held[word];
            if word == lo / 64 {
                free &= u64::MAX << (lo % 64);
            }
            if word == hi / 64 && hi % 64 != 63 {
                free &= (1u64 << (hi % 64 + 1)) - 1;
            }
            if free != 0 {
                let port = word * 64 + free.trailing_zeros() as usize;
                return u16::try_from(port).ok();
            }
        }
        None
    }
}

/// How many steps after `start` the walk reaches `port`.
fn distance(min: u16, len: u32, start: u16, port: u16) -> u32 {
    let (start, port) = (u32::from(start - min), u32::from(port - min));
    (port + len - start) % len
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if self.marked {
            self.inner.lock().clear(self.port);
        }
    }
}

impl fmt::Debug for PortAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortAllocator")
            .field("min", &self.inner.min)
            .field("max", &self.inner.max)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ports {}..={}", self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Acquires with `taken` standing for ports other processes hold; returns the port and
    /// how many binds it took.
    fn take(ports: &PortAllocator, taken: &HashSet<u16>) -> Option<(PortLease, usize)> {
        let mut binds = 0;
        let result = ports.acquire(|port| {
            binds += 1;
            if taken.contains(&port) {
                Err(io::Error::from(io::ErrorKind::AddrInUse))
            } else {
                Ok(())
            }
        });
        match result {
            Ok(((), lease)) => Some((lease, binds)),
            Err(AcquireError::Exhausted) => None,
            Err(AcquireError::Bind(port, e)) => panic!("{port}: {e}"),
        }
    }

    #[test]
    fn walks_on_and_wraps_round_to_ports_given_back() {
        let ports = PortAllocator::new(5900, 5903);
        let none = HashSet::new();
        let a = take(&ports, &none).expect("a").0;
        let b = take(&ports, &none).expect("b").0;
        assert_eq!((a.port(), b.port()), (5900, 5901));
        drop(a);
        // Not the port just given back: the walk goes on.
        let c = take(&ports, &none).expect("c").0;
        let d = take(&ports, &none).expect("d").0;
        assert_eq!((c.port(), d.port()), (5902, 5903));
        // Round again, to the only free one.
        let e = take(&ports, &none).expect("e").0;
        assert_eq!(e.port(), 5900);
        assert!(take(&ports, &none).is_none(), "all four held");
        drop(c);
        assert_eq!(take(&ports, &none).expect("f").0.port(), 5902);
        drop((b, d, e));
    }

    #[test]
    fn ports_of_other_processes_are_passed_over_and_tried_once() {
        let ports = PortAllocator::new(6000, 6009);
        let taken: HashSet<u16> = [6000, 6001, 6005].into();
        let (a, binds) = take(&ports, &taken).expect("a");
        assert_eq!((a.port(), binds), (6002, 3));
        let mut held = vec![a];
        while let Some((lease, _)) = take(&ports, &taken) {
            held.push(lease);
        }
        let got: Vec<u16> = held.iter().map(PortLease::port).collect();
        assert_eq!(got, [6002, 6003, 6004, 6006, 6007, 6008, 6009]);
        // A full range costs one bind per port not held by us, each tried once.
        let (mut binds, mut tried) = (0, Vec::new());
        let full = ports.acquire(|port| {
            binds += 1;
            tried.push(port);
            Err::<(), _>(io::Error::from(io::ErrorKind::AddrInUse))
        });
        assert!(matches!(full, Err(AcquireError::Exhausted)));
        assert_eq!(tried, [6000, 6001, 6005]);
    }

    #[test]
    fn explicit_ports_are_skipped_by_autoport() {
        let ports = PortAllocator::new(7000, 7003);
        let none = HashSet::new();
        let fixed = ports.hold(7000);
        let same = ports.hold(7000);
        let auto = take(&ports, &none).expect("auto").0;
        assert_eq!(auto.port(), 7001);
        drop(same);
        // The second hold did not mark the port, so dropping it leaves it held.
        let next = take(&ports, &none).expect("next").0;
        assert_eq!(next.port(), 7002);
        drop(fixed);
        let mut rest: Vec<u16> = Vec::new();
        let mut leases = vec![auto, next];
        while let Some((lease, _)) = take(&ports, &none) {
            rest.push(lease.port());
            leases.push(lease);
        }
        assert_eq!(rest, [7003, 7000]);
    }

    #[test]
    fn other_bind_errors_stop_the_search() {
        let ports = PortAllocator::new(8000, 8001);
        let err = ports.acquire(|_| Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert!(matches!(err, Err(AcquireError::Bind(8000, _))));
        let empty = PortAllocator::new(9000, 8999);
        assert!(matches!(
            empty.acquire(|_| Ok(())),
            Err(AcquireError::Exhausted)
        ));
    }

    #[test]
    fn the_whole_port_space_and_thousands_of_guests() {
        let ports = PortAllocator::new(0, u16::MAX);
        let none = HashSet::new();
        let mut leases: Vec<PortLease> = (0..70_000)
            .map_while(|_| take(&ports, &none))
            .map(|(lease, binds)| {
                assert_eq!(binds, 1, "one bind per start");
                lease
            })
            .collect();
        assert_eq!(leases.len(), 65_536);
        assert_eq!(leases.last().map(PortLease::port), Some(u16::MAX));
        // Free every other port from 1,000 on; each later start binds once, in order.
        let freed: Vec<u16> = leases
            .iter()
            .map(PortLease::port)
            .filter(|p| *p >= 1000 && p % 2 == 0)
            .take(3)
            .collect();
        leases.retain(|l| !freed.contains(&l.port()));
        for want in freed {
            let (lease, binds) = take(&ports, &none).expect("freed port");
            assert_eq!((lease.port(), binds), (want, 1));
            leases.push(lease);
        }
    }
}
