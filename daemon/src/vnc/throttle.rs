//! Brute-force lockout for console logins: failed logins (wrong credentials only; a client
//! that hangs up or times out is not a failure) are counted per [`Source`] across all
//! guests, and a source with `max_failures` within a sliding `window` is refused for
//! `lockout`, even with the right credentials. Pure and synchronous: the gateway asks
//! [`Throttle::check`] when a connection opens and again each time it judges a credential,
//! and reports each wrong one; this module does no I/O, writes no audit records and knows
//! nothing of RFB.
//!
//! # Counting
//!
//! Each source keeps the times of its failures within the window (at most `max_failures`
//! of them), so the window slides exactly: with a 60-second window, five failures whose
//! first and last are less than 60 seconds apart lock out, five spread wider do not. When a
//! lockout starts the failures are forgotten; when it ends the source starts afresh. A
//! failure reported for a source that is already locked out (it passed `check` just before
//! another of its connections started the lockout) neither extends nor restarts it.
//!
//! Failures decay only with the window; a successful login never clears them, as fail2ban
//! and OpenSSH behave. Otherwise a client could interleave its guesses with logins it can
//! always make (a guest with security None, its own guest) and never be locked out.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as the IPv4 address, so one client
//! is one source whether it reaches a dual-stack or an IPv4 listener.
//!
//! # Memory
//!
//! At most `max_sources` (65,536 unless [`Throttle::with_max_sources`] says otherwise)
//! sources are tracked, each holding at most `max_failures` instants. Entries are kept in
//! two queues ordered by time (unlocked ones by their last failure, locked ones by the start
//! of their lockout), so every call drops the entries that have expired, in O(log n) each,
//! without a timer or a full scan. When the table is full, a new source evicts the unlocked
//! source whose last failure is oldest; only when every tracked source is locked out does
//! it evict the lockout closest to its end.
//!
//! # What this does not stop
//!
//! The unit is one address. An attacker with many addresses (with IPv6, a single host
//! usually has a whole /64) gets `max_failures - 1` tries per address, and by spraying
//! more than `max_sources` addresses can push out the unlocked entries of others, resetting
//! their counts (never their lockouts, until the whole table is locked out). Counting per
//! /64 would stop the first but lock out every host behind one prefix, and the design counts
//! per address, so we do too. What slows such an attacker down is elsewhere: the per-guest
//! bound on pending connections and the handshake timeout limit how many attempts are in
//! flight at once, and the audit log shows the spray.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use super::source::Source;

/// How many sources are tracked at most unless [`Throttle::with_max_sources`] says otherwise.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// The lockout policy (`vnc_auth_max_failures`, `vnc_auth_failure_window_secs`,
/// `vnc_auth_lockout_secs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within `window` that start a lockout.
    pub max_failures: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

/// What a failure led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted: the source now has `failures` within the window.
    Counted { failures: u32 },
    /// This failure started a lockout of the given length.
    LockedOut(Duration),
}

/// The time source; tests inject their own.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The failure counts of all console clients. Shared by every guest's gateway.
pub struct Throttle {
    cfg: ThrottleConfig,
    max_sources: usize,
    clock: Clock,
    state: Mutex<State>,
}

/// An entry's place in one of the time-ordered queues: the instant, then a sequence
/// number to keep keys unique.
type Key = (Instant, u64);

struct Entry {
    /// Failure times within the window, oldest first. Empty while locked out.
    failures: VecDeque<Instant>,
    /// When the lockout started, if the source is locked out.
    locked_since: Option<Instant>,
    /// This entry's key in `State::unlocked` or (when locked) `State::locked`.
    key: Key,
}

#[derive(Default)]
struct State {
    entries: HashMap<Source, Entry>,
    /// Unlocked entries by their last failure: the expiry and eviction order.
    unlocked: BTreeMap<Key, Source>,
    /// Locked entries by the start of their lockout (all lockouts last as long, so this
    /// is also the order in which they end).
    locked: BTreeMap<Key, Source>,
    next_seq: u64,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle::with_clock(cfg, Arc::new(Instant::now))
    }

    /// A throttle that reads the time from `clock`, for tests.
    pub fn with_clock(cfg: ThrottleConfig, clock: Clock) -> Throttle {
        Throttle {
            cfg,
            max_sources: DEFAULT_MAX_SOURCES,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Tracks at most `max` sources (at least one).
    pub fn with_max_sources(mut self, max: usize) -> Throttle {
        self.max_sources = max.max(1);
        self
    }

    pub fn config(&self) -> ThrottleConfig {
        self.cfg
    }

    /// `Err(remaining)` while `source` is locked out.
    pub fn check(&self, source: Source) -> Result<(), Duration> {
        let now = (self.clock)();
        let mut state = self.lock();
        state.sweep(now, &self.cfg);
        match state.entries.get(&canonical(source)) {
            Some(Entry {
                locked_since: Some(since),
                ..
            }) => Err(self
                .cfg
                .lockout
                .saturating_sub(now.saturating_duration_since(*since))),
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `source`; returns `LockedOut` when this failure started a
    /// lockout.
    pub fn record_failure(&self, source: Source) -> FailureOutcome {
        let now = (self.clock)();
        let source = canonical(source);
        let cfg = &self.cfg;
        let mut guard = self.lock();
        let state = &mut *guard;
        state.sweep(now, cfg);

        if !state.entries.contains_key(&source) {
            while state.entries.len() >= self.max_sources && state.evict_one() {}
            let key = state.next_key(now);
            state.unlocked.insert(key, source);
            state.entries.insert(
                source,
                Entry {
                    failures: VecDeque::new(),
                    locked_since: None,
                    key,
                },
            );
        }
        let seq = state.bump_seq();
        let Some(entry) = state.entries.get_mut(&source) else {
            return FailureOutcome::Counted { failures: 1 };
        };
        if entry.locked_since.is_some() {
            return FailureOutcome::Counted {
                failures: cfg.max_failures,
            };
        }

        while entry
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= cfg.window)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        let limit = usize::try_from(cfg.max_failures).unwrap_or(usize::MAX);
        while entry.failures.len() > limit.max(1) {
            entry.failures.pop_front();
        }

        state.unlocked.remove(&entry.key);
        entry.key = (now, seq);
        if entry.failures.len() >= limit {
            entry.failures = VecDeque::new();
            entry.locked_since = Some(now);
            state.locked.insert(entry.key, source);
            FailureOutcome::LockedOut(cfg.lockout)
        } else {
            state.unlocked.insert(entry.key, source);
            FailureOutcome::Counted {
                failures: u32::try_from(entry.failures.len()).unwrap_or(u32::MAX),
            }
        }
    }

    /// How many sources are tracked now (failing or locked out).
    pub fn tracked_sources(&self) -> usize {
        let now = (self.clock)();
        let mut state = self.lock();
        state.sweep(now, &self.cfg);
        state.entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the maps consistent before it can panic, so a poisoned
        // lock still guards usable state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("cfg", &self.cfg)
            .field("max_sources", &self.max_sources)
            .finish_non_exhaustive()
    }
}

impl State {
    fn bump_seq(&mut self) -> u64 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn next_key(&mut self, at: Instant) -> Key {
        (at, self.bump_seq())
    }

    /// Drops unlocked entries whose failures have all left the window and locked ones
    /// whose lockout has ended. Both queues are ordered, so this stops at the first entry
    /// still alive.
    fn sweep(&mut self, now: Instant, cfg: &ThrottleConfig) {
        Self::expire(&mut self.unlocked, &mut self.entries, now, cfg.window);
        Self::expire(&mut self.locked, &mut self.entries, now, cfg.lockout);
    }

    fn expire(
        queue: &mut BTreeMap<Key, Source>,
        entries: &mut HashMap<Source, Entry>,
        now: Instant,
        ttl: Duration,
    ) {
        while let Some(entry) = queue.first_entry() {
            if now.saturating_duration_since(entry.key().0) < ttl {
                break;
            }
            let source = entry.remove();
            entries.remove(&source);
        }
    }

    /// Evicts the unlocked entry with the oldest last failure, or, when every entry is
    /// locked out, the lockout that ends first. False when there was nothing to evict.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .unlocked
            .pop_first()
            .or_else(|| self.locked.pop_first());
        match victim {
            Some((_, source)) => {
                self.entries.remove(&source);
                true
            }
            None => {
                // The queues hold every entry, so this only happens if they drifted
                // apart; start over rather than grow without bound.
                self.entries.clear();
                false
            }
        }
    }
}

/// The key a source is counted under: IPv4-mapped IPv6 addresses count as IPv4.
fn canonical(source: Source) -> Source {
    match source {
        Source::Ip(ip) => Source::Ip(match ip {
            IpAddr::V6(v6) => v6.to_canonical(),
            v4 @ IpAddr::V4(_) => v4,
        }),
        uid @ Source::Uid(_) => uid,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// A clock the test moves by hand.
    struct FakeClock {
        start: Instant,
        offset: Arc<Mutex<Duration>>,
    }

    impl FakeClock {
        fn new() -> FakeClock {
            FakeClock {
                start: Instant::now(),
                offset: Arc::new(Mutex::new(Duration::ZERO)),
            }
        }

        fn clock(&self) -> Clock {
            let start = self.start;
            let offset = self.offset.clone();
            Arc::new(move || start + *offset.lock().expect("clock"))
        }

        fn advance(&self, by: Duration) {
            *self.offset.lock().expect("clock") += by;
        }
    }

    const CFG: ThrottleConfig = ThrottleConfig {
        max_failures: 5,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };

    fn throttle() -> (Throttle, FakeClock) {
        let clock = FakeClock::new();
        (Throttle::with_clock(CFG, clock.clock()), clock)
    }

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn five_failures_within_the_window_lock_out() {
        let (t, clock) = throttle();
        for n in 1..5 {
            assert_eq!(
                t.record_failure(ip(1)),
                FailureOutcome::Counted { failures: n }
            );
            assert_eq!(t.check(ip(1)), Ok(()));
            clock.advance(Duration::from_secs(10));
        }
        assert_eq!(
            t.record_failure(ip(1)),
            FailureOutcome::LockedOut(CFG.lockout)
        );
        assert_eq!(t.check(ip(1)), Err(CFG.lockout));
        assert_eq!(t.check(ip(2)), Ok(()), "other sources are not affected");
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_lock_out() {
        let (t, clock) = throttle();
        for _ in 0..20 {
            assert!(matches!(
                t.record_failure(ip(1)),
                FailureOutcome::Counted { failures: 1..=4 }
            ));
            clock.advance(Duration::from_secs(15));
        }
        assert_eq!(t.check(ip(1)), Ok(()));
        // Exactly at the window's edge the oldest failure no longer counts.
        let (t, clock) = throttle();
        t.record_failure(ip(1));
        clock.advance(Duration::from_secs(30));
        for _ in 0..3 {
            t.record_failure(ip(1));
        }
        clock.advance(Duration::from_secs(30));
        assert_eq!(
            t.record_failure(ip(1)),
            FailureOutcome::Counted { failures: 4 }
        );
    }

    #[test]
    fn check_while_locked_returns_the_remaining_time_and_the_lockout_expires() {
        let (t, clock) = throttle();
        for _ in 0..5 {
            t.record_failure(ip(1));
        }
        clock.advance(Duration::from_secs(100));
        assert_eq!(t.check(ip(1)), Err(Duration::from_secs(200)));
        // Failures during the lockout change nothing.
        assert_eq!(
            t.record_failure(ip(1)),
            FailureOutcome::Counted { failures: 5 }
        );
        assert_eq!(t.check(ip(1)), Err(Duration::from_secs(200)));
        clock.advance(Duration::from_secs(199));
        assert_eq!(t.check(ip(1)), Err(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.check(ip(1)), Ok(()));
        assert_eq!(t.tracked_sources(), 0);
        assert_eq!(
            t.record_failure(ip(1)),
            FailureOutcome::Counted { failures: 1 },
            "a source starts afresh after its lockout"
        );
    }

    #[test]
    fn uids_and_mapped_addresses_are_sources() {
        let (t, _clock) = throttle();
        let mapped = Source::Ip(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()));
        for _ in 0..5 {
            t.record_failure(mapped);
        }
        assert!(t.check(ip(1)).is_err(), "::ffff:192.0.2.1 is 192.0.2.1");
        for _ in 0..4 {
            t.record_failure(Source::Uid(1000));
        }
        assert_eq!(t.check(Source::Uid(1000)), Ok(()));
        t.record_failure(Source::Uid(1000));
        assert!(t.check(Source::Uid(1000)).is_err());
        assert_eq!(t.check(Source::Uid(1001)), Ok(()));
    }

    #[test]
    fn expired_entries_are_dropped() {
        let (t, clock) = throttle();
        for n in 0..100 {
            t.record_failure(ip(n));
        }
        assert_eq!(t.tracked_sources(), 100);
        clock.advance(CFG.window);
        assert_eq!(t.tracked_sources(), 0);
    }

    #[test]
    fn the_cap_holds_and_evicts_the_oldest_unlocked_source() {
        let clock = FakeClock::new();
        let t = Throttle::with_clock(CFG, clock.clock()).with_max_sources(10);
        // Source 0 is locked out first, so it is the oldest entry of all.
        for _ in 0..5 {
            t.record_failure(ip(0));
        }
        for n in 1..10 {
            clock.advance(Duration::from_millis(10));
            t.record_failure(ip(n));
        }
        assert_eq!(t.tracked_sources(), 10);
        // A spray of new sources pushes out unlocked ones, oldest first, never the lockout.
        for n in 0..1000u16 {
            clock.advance(Duration::from_millis(1));
            let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n);
            t.record_failure(Source::Ip(IpAddr::V6(v6)));
            assert!(t.tracked_sources() <= 10);
        }
        assert!(t.check(ip(0)).is_err(), "the lockout survived the spray");
        assert_eq!(
            t.record_failure(ip(9)),
            FailureOutcome::Counted { failures: 1 },
            "source 9 was evicted, so it starts afresh"
        );
    }

    #[test]
    fn a_table_full_of_lockouts_evicts_the_one_ending_first() {
        let clock = FakeClock::new();
        let cfg = ThrottleConfig {
            max_failures: 1,
            ..CFG
        };
        let t = Throttle::with_clock(cfg, clock.clock()).with_max_sources(3);
        for n in 0..3 {
            assert_eq!(
                t.record_failure(ip(n)),
                FailureOutcome::LockedOut(cfg.lockout)
            );
            clock.advance(Duration::from_secs(1));
        }
        t.record_failure(ip(3));
        assert_eq!(t.tracked_sources(), 3);
        assert_eq!(t.check(ip(0)), Ok(()), "the oldest lockout made room");
        for n in 1..4 {
            assert!(t.check(ip(n)).is_err());
        }
    }

    #[test]
    fn throttle_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Throttle>();
    }
}
