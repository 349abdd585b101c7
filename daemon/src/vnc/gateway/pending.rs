//! One guest's unauthenticated connections, bounded per guest (`vnc_max_pending`) and per
//! source (`vnc_max_pending_per_source`, as OpenSSH's PerSourceMaxStartups). A source over
//! its own bound loses its own oldest connection. When the guest's bound is full, the
//! newcomer's room comes from the source with the most pending connections (its oldest
//! one), never from a source that has only one: so one address opening idle connections as
//! fast as it likes cannot push out a person typing a password from another address. When
//! every pending connection is the lone one of its source, the newcomer is refused instead.
//!
//! Pure bookkeeping: the caller cancels the tokens this hands back and closes the
//! connections; nothing here does I/O.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use crate::vnc::source::Source;

/// The bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    pub per_guest: usize,
    pub per_source: usize,
}

/// A pending connection's entry.
#[derive(Debug)]
struct Pending {
    id: u64,
    source: Source,
    evict: CancellationToken,
}

/// What admitting a new connection did.
#[derive(Debug)]
pub enum Admitted {
    /// Registered under this id; `evict` is cancelled if a later newcomer takes its place.
    Yes { id: u64, evict: CancellationToken },
    /// Every pending connection is its source's only one: there is no room to make.
    Full,
}

/// The pending connections of one guest, oldest first.
#[derive(Debug)]
pub struct PendingSet {
    limits: PendingLimits,
    entries: Vec<Pending>,
    next_id: u64,
}

impl PendingSet {
    pub fn new(limits: PendingLimits) -> PendingSet {
        PendingSet {
            limits: PendingLimits {
                per_guest: limits.per_guest.max(1),
                per_source: limits.per_source.max(1),
            },
            entries: Vec::new(),
            next_id: 1,
        }
    }

    /// Registers a connection from `source`, evicting (cancelling) what the bounds say.
    pub fn admit(&mut self, source: Source) -> Admitted {
        if self.count(source) >= self.limits.per_source {
            self.evict_oldest_of(source);
        }
        if self.entries.len() >= self.limits.per_guest {
            match self.crowded_source(source) {
                Some(crowded) => self.evict_oldest_of(crowded),
                None => return Admitted::Full,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let evict = CancellationToken::new();
        self.entries.push(Pending {
            id,
            source,
            evict: evict.clone(),
        });
        Admitted::Yes { id, evict }
    }

    /// Forgets connection `id` (authenticated, or gone).
    pub fn remove(&mut self, id: u64) {
        self.entries.retain(|p| p.id != id);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn count(&self, source: Source) -> usize {
        self.entries.iter().filter(|p| p.source == source).count()
    }

    fn evict_oldest_of(&mut self, source: Source) {
        if let Some(at) = self.entries.iter().position(|p| p.source == source) {
            self.entries.remove(at).evict.cancel();
        }
    }

    /// The source to make room from: the one with the most pending connections (the one
    /// whose oldest is oldest among equals), if it has more than one; the newcomer's own
    /// source also gives up its oldest. None when every connection is a lone one of
    /// another source.
    fn crowded_source(&self, newcomer: Source) -> Option<Source> {
        let mut counts: HashMap<Source, (usize, usize)> = HashMap::new();
        for (at, p) in self.entries.iter().enumerate() {
            counts.entry(p.source).or_insert((0, at)).0 += 1;
        }
        let (source, (count, _)) = counts
            .into_iter()
            .max_by(|(_, (n1, at1)), (_, (n2, at2))| n1.cmp(n2).then(at2.cmp(at1)))?;
        if count > 1 {
            Some(source)
        } else if self.count(newcomer) > 0 {
            Some(newcomer)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn set(per_guest: usize, per_source: usize) -> PendingSet {
        PendingSet::new(PendingLimits {
            per_guest,
            per_source,
        })
    }

    fn admit(set: &mut PendingSet, source: Source) -> CancellationToken {
        match set.admit(source) {
            Admitted::Yes { evict, .. } => evict,
            Admitted::Full => panic!("refused"),
        }
    }

    #[test]
    fn a_source_over_its_bound_loses_its_own_oldest() {
        let mut s = set(20, 4);
        let first: Vec<_> = (0..4).map(|_| admit(&mut s, ip(1))).collect();
        let person = admit(&mut s, ip(2));
        let fifth = admit(&mut s, ip(1));
        assert!(first[0].is_cancelled());
        assert!(first[1..].iter().all(|t| !t.is_cancelled()));
        assert!(!fifth.is_cancelled() && !person.is_cancelled());
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn a_flood_from_one_source_never_evicts_a_lone_connection_of_another() {
        let mut s = set(4, 4);
        let person = admit(&mut s, ip(2));
        for _ in 0..10_000 {
            admit(&mut s, ip(1));
            assert!(s.len() <= 4);
        }
        assert!(!person.is_cancelled());
    }

    #[test]
    fn a_full_set_of_lone_connections_refuses_a_new_source() {
        let mut s = set(3, 4);
        let lone: Vec<_> = (1..=3).map(|n| admit(&mut s, ip(n))).collect();
        assert!(matches!(s.admit(ip(9)), Admitted::Full));
        // A source already pending gives up its own oldest for its newcomer.
        let again = admit(&mut s, ip(2));
        assert!(lone[1].is_cancelled() && !lone[0].is_cancelled() && !lone[2].is_cancelled());
        assert!(!again.is_cancelled());
    }

    #[test]
    fn room_comes_from_the_source_with_the_most() {
        let mut s = set(6, 4);
        let a: Vec<_> = (0..2).map(|_| admit(&mut s, ip(1))).collect();
        let b: Vec<_> = (0..3).map(|_| admit(&mut s, ip(2))).collect();
        let _c = admit(&mut s, ip(3));
        admit(&mut s, ip(4));
        assert!(b[0].is_cancelled(), "source 2 had the most");
        assert!(a.iter().all(|t| !t.is_cancelled()));
        let Admitted::Yes { id, .. } = s.admit(ip(5)) else {
            panic!("room")
        };
        s.remove(id);
        assert_eq!(s.len(), 5);
    }

    proptest! {
        /// Whatever the order of arrivals and departures, the bounds hold and a source
        /// that never has more than one connection is never evicted.
        #[test]
        fn bounds_hold(ops in proptest::collection::vec((0u8..6, any::<bool>()), 0..400)) {
            let mut s = set(5, 2);
            let mut live: Vec<(u64, Source, CancellationToken)> = Vec::new();
            for (who, leave) in ops {
                live.retain(|(_, _, t)| !t.is_cancelled());
                if leave && !live.is_empty() {
                    let (id, _, _) = live.remove(usize::from(who) % live.len());
                    s.remove(id);
                    continue;
                }
                // Source 0 is the person: it never opens a second connection.
                let source = ip(who);
                if who == 0 && live.iter().any(|(_, src, _)| *src == source) {
                    continue;
                }
                if let Admitted::Yes { id, evict } = s.admit(source) {
                    live.push((id, source, evict));
                }
                prop_assert!(s.len() <= 5);
                for n in 0..6 {
                    prop_assert!(s.count(ip(n)) <= 2);
                }
                let person_cut = live.iter().any(|(_, src, t)| *src == ip(0) && t.is_cancelled());
                prop_assert!(!person_cut);
            }
        }
    }
}
