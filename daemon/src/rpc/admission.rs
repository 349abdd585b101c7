//! Who gets a connection to the API, and who must leave.
//!
//! - `max_clients` counts every API connection; the last `max_clients_rw_reserve` of them
//!   only the read-write UNIX socket may take, so the read-only socket (which any local
//!   user may open), TCP and TLS cannot lock root out. A client over the limit is told so
//!   (see `accept::Refusals`) rather than dropped in silence.
//! - `max_anonymous_clients` counts every connection not yet authenticated, as libvirt
//!   counts them: in the TLS handshake, or connected but not through the SASL login its
//!   transport requires. Unlike libvirt the listeners never stop accepting (a listener that
//!   stops can be held shut by a few idle sockets): over the limit, the oldest idle
//!   connection of the source with the most is closed, a source being an IP address or a
//!   local uid. A newcomer from another source therefore always gets in, and a source
//!   that opens many connections evicts its own.
//! - A connection that must log in gets `auth_timeout_secs` from connect to do so.
//!
//! Nothing here reads or writes a socket: the listeners and `h2_server` act on the
//! decisions.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::{accept::Occasional, status};
use crate::auth::Peer;

/// A connection that has read nothing for this long counts as idle when one must go.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Where a connection comes from, for fairness between clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A UNIX socket peer: its uid.
    Uid(u32),
    /// A TCP or TLS peer: its address (an IPv4 client on a dual-stack socket as IPv4).
    Ip(IpAddr),
}

impl Source {
    pub fn of(peer: &Peer) -> Source {
        match peer {
            Peer::Unix(unix) => Source::Uid(unix.uid),
            Peer::Tls { addr, .. } | Peer::Tcp { addr } => Source::Ip(addr.ip().to_canonical()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Uid(uid) => write!(f, "uid {uid}"),
            Source::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The limits the API's clients share.
pub struct Admission {
    max_clients: usize,
    rw_reserve: usize,
    clients: Arc<AtomicUsize>,
    pending: Arc<PendingSet>,
}

impl Admission {
    /// `rw_reserve` is capped at half of `max_clients`; `max_anonymous` is at least 1.
    pub fn new(
        max_clients: usize,
        rw_reserve: usize,
        max_anonymous: usize,
        auth_timeout: Duration,
    ) -> Admission {
        Admission {
            max_clients,
            rw_reserve: rw_reserve.min(max_clients / 2),
            clients: Arc::new(AtomicUsize::new(0)),
            pending: Arc::new(PendingSet {
                max: max_anonymous.max(1),
                auth_timeout,
                entries: Mutex::new(Entries::default()),
                evictions: Occasional::new(),
            }),
        }
    }

    /// A `max_clients` slot for a new connection; `rw` (the read-write socket) may use the
    /// reserve. Refused: the status that tells the client why.
    pub fn client_slot(&self, rw: bool) -> Result<ClientSlot, tonic::Status> {
        let limit = if rw {
            self.max_clients
        } else {
            self.max_clients - self.rw_reserve
        };
        let taken = self
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < limit).then_some(held + 1)
            });
        match taken {
            Ok(_) => Ok(ClientSlot {
                clients: Some(self.clients.clone()),
            }),
            Err(_) => Err(self.too_many(rw)),
        }
    }

    fn too_many(&self, rw: bool) -> tonic::Status {
        let kept = if rw || self.rw_reserve == 0 {
            String::new()
        } else {
            format!(
                ", {} of them kept for the read-write socket (max_clients_rw_reserve)",
                self.rw_reserve
            )
        };
        status::too_many_clients(format!(
            "{TOO_MANY_CLIENTS} (max_clients = {} reached{kept}); try again later, or raise \
             max_clients in vmgated.toml",
            self.max_clients
        ))
    }

    /// Counts a connection from `source` as unauthenticated until the returned guard is
    /// dropped, first closing another if that makes too many.
    pub fn unauthenticated(&self, source: Source) -> Unauthenticated {
        self.pending.admit(source)
    }

    /// Unauthenticated connections counted now (for tests and logs).
    pub fn unauthenticated_count(&self) -> usize {
        self.pending.lock().map.len()
    }
}

/// How every over-limit refusal starts; the client recognises it by its status code.
pub const TOO_MANY_CLIENTS: &str = "Too many clients";

/// One of `max_clients`, held by a connection until it closes.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Option<Arc<AtomicUsize>>,
}

impl ClientSlot {
    /// A slot counted nowhere, for connections made outside the listeners (tests).
    pub fn uncounted() -> ClientSlot {
        ClientSlot { clients: None }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some(clients) = &self.clients {
            clients.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct PendingSet {
    max: usize,
    auth_timeout: Duration,
    entries: Mutex<Entries>,
    evictions: Occasional,
}

#[derive(Default)]
struct Entries {
    next_id: u64,
    map: HashMap<u64, Arc<Entry>>,
}

/// One unauthenticated connection, as the set sees it.
struct Entry {
    id: u64,
    source: Source,
    since: Instant,
    /// Milliseconds after `since` of the last read that returned data.
    last_read_ms: AtomicU64,
    /// Set once the connection authenticated or closed: reads need no stamp any more.
    done: AtomicBool,
    evict: CancellationToken,
}

impl Entry {
    fn idle(&self, now: Instant) -> bool {
        let last = self.since + Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last) >= IDLE_AFTER
    }
}

impl PendingSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>, source: Source) -> Unauthenticated {
        let entry = {
            let mut entries = self.lock();
            entries.next_id += 1;
            let entry = Arc::new(Entry {
                id: entries.next_id,
                source,
                since: Instant::now(),
                last_read_ms: AtomicU64::new(0),
                done: AtomicBool::new(false),
                evict: CancellationToken::new(),
            });
            entries.map.insert(entry.id, entry.clone());
            while entries.map.len() > self.max {
                let Some(victim) = victim(&entries.map, Instant::now()) else {
                    break;
                };
                entries.map.remove(&victim.id);
                victim.evict.cancel();
                if let Some(unlogged) = self.evictions.due() {
                    tracing::warn!(
                        source = %victim.source,
                        "max_anonymous_clients ({}) reached: closing the oldest idle \
                         unauthenticated API connection of {}, the source with the most \
                         ({unlogged} such closings not logged since the last message)",
                        self.max,
                        victim.source
                    );
                }
            }
            entry
        };
        Unauthenticated {
            entry,
            set: self.clone(),
        }
    }
}

/// Of the source with the most connections, the oldest idle one, or the oldest when none
/// is idle. Between sources with as many, the one whose pick is older.
fn victim(map: &HashMap<u64, Arc<Entry>>, now: Instant) -> Option<Arc<Entry>> {
    let mut per_source: HashMap<Source, usize> = HashMap::new();
    for entry in map.values() {
        *per_source.entry(entry.source).or_default() += 1;
    }
    let most = per_source.values().copied().max()?;
    map.values()
        .filter(|e| per_source.get(&e.source) == Some(&most))
        .min_by_key(|e| (!e.idle(now), e.since, e.id))
        .cloned()
}

/// Counts its connection as unauthenticated until dropped.
pub struct Unauthenticated {
    entry: Arc<Entry>,
    set: Arc<PendingSet>,
}

impl Unauthenticated {
    /// Resolves when the connection was chosen to make room for another.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.entry.evict.cancelled()
    }

    /// When a login still missing closes the connection (`auth_timeout_secs` after connect).
    pub fn login_deadline(&self) -> Instant {
        self.entry.since + self.set.auth_timeout
    }

    /// What the connection's reads stamp, so the set knows whether it is idle.
    pub fn activity(&self) -> Activity {
        Activity(self.entry.clone())
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.entry.done.store(true, Ordering::Relaxed);
        self.set.lock().map.remove(&self.entry.id);
    }
}

/// Stamped by a connection's reads while it is unauthenticated.
#[derive(Clone)]
pub struct Activity(Arc<Entry>);

impl Activity {
    pub fn touch(&self) {
        let entry = &self.0;
        if entry.done.load(Ordering::Relaxed) {
            return;
        }
        let ms = u64::try_from(entry.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        entry.last_read_ms.store(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> Source {
        Source::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }

    fn admission(max_anonymous: usize) -> Admission {
        Admission::new(100, 16, max_anonymous, Duration::from_secs(30))
    }

    fn is_evicted(u: &Unauthenticated) -> bool {
        u.entry.evict.is_cancelled()
    }

    #[tokio::test(start_paused = true)]
    async fn the_busiest_source_loses_its_oldest_idle_connection() {
        let a = admission(3);
        let flood: Vec<_> = (0..2).map(|_| a.unauthenticated(ip(2))).collect();
        tokio::time::advance(IDLE_AFTER * 2).await;
        let active = a.unauthenticated(ip(2));
        let lone = a.unauthenticated(ip(3));
        assert!(
            is_evicted(&flood[0]),
            "the oldest idle of the busiest source"
        );
        assert!(!is_evicted(&flood[1]) && !is_evicted(&active) && !is_evicted(&lone));
        assert_eq!(a.unauthenticated_count(), 3);
        // Reading makes a connection active: the other idle one goes first.
        tokio::time::advance(IDLE_AFTER * 2).await;
        flood[1].activity().touch();
        let _next = a.unauthenticated(ip(4));
        assert!(
            is_evicted(&active),
            "idle, so before the one that just read"
        );
        assert!(!is_evicted(&flood[1]) && !is_evicted(&lone));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_connection_of_another_source_is_never_evicted_by_a_flood() {
        let a = admission(4);
        let lone = a.unauthenticated(Source::Uid(0));
        let flood: Vec<_> = (0..200).map(|_| a.unauthenticated(ip(9))).collect();
        assert!(!is_evicted(&lone));
        assert_eq!(flood.iter().filter(|u| !is_evicted(u)).count(), 3);
        assert_eq!(a.unauthenticated_count(), 4);
        drop(flood);
        assert_eq!(a.unauthenticated_count(), 1, "dropping a guard uncounts it");
        let deadline = lone.login_deadline();
        assert_eq!(deadline - lone.entry.since, Duration::from_secs(30));
    }

    #[test]
    fn only_the_read_write_socket_may_use_the_reserve() {
        let a = Admission::new(4, 16, 20, Duration::from_secs(30));
        assert_eq!(a.rw_reserve, 2, "at most half of max_clients");
        let others: Vec<_> = (0..2)
            .map(|_| a.client_slot(false).expect("slot"))
            .collect();
        let refused = a.client_slot(false).expect_err("the rest is reserved");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().starts_with(TOO_MANY_CLIENTS)
                && refused.message().contains("max_clients = 4")
                && refused
                    .message()
                    .contains("2 of them kept for the read-write socket"),
            "{refused:?}"
        );
        let rw: Vec<_> = (0..2).map(|_| a.client_slot(true).expect("slot")).collect();
        assert!(a.client_slot(true).is_err(), "full");
        drop(others);
        assert!(
            a.client_slot(false).is_err(),
            "the read-write socket's clients count too"
        );
        drop(rw);
        assert!(a.client_slot(false).is_ok(), "slots come back when dropped");
    }
}
