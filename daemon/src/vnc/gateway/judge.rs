//! Judging one client's credentials under the brute-force lockout. The lockout is checked
//! at the moment each credential is judged, not only when the connection opened, and a
//! source's credentials are judged one at a time across every guest: a wrong one is
//! counted before the next one from the same source is looked at. Without this, a source
//! could open many connections, wait at the challenge on each, and have all their answers
//! checked at once, getting one guess per connection instead of `vnc_auth_max_failures`.
//!
//! A [`Turn`] holds the source's gate only while a credential is judged (a DES compare, a
//! PBKDF2 run, one SASL step), never while the client is read from or written to, so a
//! client that stalls cannot hold up others behind the same address.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use tokio::sync::OwnedMutexGuard;

use crate::vnc::{
    source::Source,
    throttle::{FailureOutcome, Throttle},
};

/// One gate per source with a judgement in progress or waiting; shared by every guest's
/// gateway, as the lockout is.
#[derive(Debug, Default)]
pub struct SourceGates {
    gates: Mutex<Gates>,
}

#[derive(Debug, Default)]
struct Gates {
    by_source: HashMap<Source, Weak<tokio::sync::Mutex<()>>>,
    /// Dead entries are swept when the map grows past this, which then doubles.
    sweep_at: usize,
}

/// Below this many sources the map is never swept.
const MIN_SWEEP: usize = 64;

impl SourceGates {
    /// The gate of `source`, made when none is alive.
    fn gate(&self, source: Source) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = gates.by_source.get(&source).and_then(Weak::upgrade) {
            return gate;
        }
        if gates.by_source.len() >= gates.sweep_at.max(MIN_SWEEP) {
            gates.by_source.retain(|_, gate| gate.strong_count() > 0);
            gates.sweep_at = gates.by_source.len() * 2;
        }
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        gates.by_source.insert(source, Arc::downgrade(&gate));
        gate
    }

    /// How many sources have a gate entry (live or not yet swept), for tests.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_source
            .len()
    }
}

/// The judge of one connection's credentials.
pub struct Judge<'a> {
    throttle: &'a Throttle,
    gates: &'a SourceGates,
    source: Source,
    /// What counting this connection's wrong credential did, for its audit records.
    counted: Mutex<Option<FailureOutcome>>,
}

/// The right to judge one credential of a source. Dropping it without [`Turn::wrong`]
/// means the credential was right, or was not judged.
pub struct Turn<'a> {
    judge: &'a Judge<'a>,
    _gate: OwnedMutexGuard<()>,
}

impl<'a> Judge<'a> {
    pub fn new(throttle: &'a Throttle, gates: &'a SourceGates, source: Source) -> Judge<'a> {
        Judge {
            throttle,
            gates,
            source,
            counted: Mutex::new(None),
        }
    }

    /// Waits until no other credential of this source is being judged, then checks the
    /// lockout. Err carries the refusal the client is to hear.
    pub async fn turn(&self) -> Result<Turn<'_>, String> {
        let gate = self.gates.gate(self.source).lock_owned().await;
        match self.throttle.check(self.source) {
            Ok(()) => Ok(Turn {
                judge: self,
                _gate: gate,
            }),
            Err(remaining) => Err(lockout_refusal(self.source, remaining)),
        }
    }

    /// Whether the connection is refused outright: the lockout, checked when it opens.
    pub fn locked_out(&self) -> Option<String> {
        let remaining = self.throttle.check(self.source).err()?;
        Some(lockout_refusal(self.source, remaining))
    }

    /// What counting this connection's wrong credential did, if it had one.
    pub fn counted(&self) -> Option<FailureOutcome> {
        *self.counted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Turn<'_> {
    /// The credential was wrong: counts it before the source's next one can be judged.
    pub fn wrong(self) {
        let outcome = self.judge.throttle.record_failure(self.judge.source);
        *self
            .judge
            .counted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }
}

/// What a locked-out client is told; the time left is rounded up to whole seconds.
fn lockout_refusal(source: Source, remaining: Duration) -> String {
    let secs = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    format!(
        "locked out: too many failed logins from {source}; try again in {} s",
        secs.max(1)
    )
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::vnc::throttle::ThrottleConfig;

    const CFG: ThrottleConfig = ThrottleConfig {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(60),
    };

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    /// Twenty connections of one source answering at once: only `max_failures` answers
    /// are judged, and a right answer after the lockout began is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_answers_of_one_source_are_judged_one_at_a_time() {
        let throttle = Arc::new(Throttle::new(CFG));
        let gates = Arc::new(SourceGates::default());
        let judged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for n in 0..20 {
            let (throttle, gates, judged) = (throttle.clone(), gates.clone(), judged.clone());
            tasks.push(tokio::spawn(async move {
                let judge = Judge::new(&throttle, &gates, ip(1));
                let Ok(turn) = judge.turn().await else {
                    return None;
                };
                judged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                // The last connection has the right answer.
                if n == 19 {
                    return Some(true);
                }
                turn.wrong();
                Some(false)
            }));
        }
        let mut admitted = 0;
        for task in tasks {
            if task.await.expect("join") == Some(true) {
                admitted += 1;
            }
        }
        let judged = judged.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            judged <= 4,
            "{judged} answers judged, at most 3 wrong + 1 right"
        );
        assert!(throttle.check(ip(1)).is_err(), "the source is locked out");
        // The right answer got in only if it was judged before the third wrong one.
        assert!(admitted <= 1);
        let judge = Judge::new(&throttle, &gates, ip(2));
        assert!(judge.turn().await.is_ok(), "other sources are not held up");
    }

    #[tokio::test]
    async fn a_lockout_refusal_names_the_source_and_the_time_left() {
        let throttle = Throttle::new(CFG);
        let gates = SourceGates::default();
        let judge = Judge::new(&throttle, &gates, ip(1));
        for _ in 0..3 {
            judge.turn().await.expect("not locked yet").wrong();
        }
        assert_eq!(
            judge.counted(),
            Some(FailureOutcome::LockedOut(CFG.lockout))
        );
        let Err(refusal) = judge.turn().await else {
            panic!("locked out")
        };
        assert_eq!(
            refusal,
            "locked out: too many failed logins from 192.0.2.1; try again in 60 s"
        );
        assert_eq!(judge.locked_out(), Some(refusal));
    }

    #[tokio::test]
    async fn gates_of_finished_sources_are_swept() {
        let throttle = Throttle::new(CFG);
        let gates = SourceGates::default();
        for n in 0..=255 {
            let judge = Judge::new(&throttle, &gates, ip(n));
            drop(judge.turn().await.expect("turn"));
        }
        assert!(gates.entries() <= 2 * MIN_SWEEP, "{}", gates.entries());
    }
}
