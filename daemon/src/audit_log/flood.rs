//! Flood aggregation of the audit: past a per-source rate, the records of connections that
//! never logged in (`connect`, and `disconnect` of a handshake that did not authenticate)
//! are counted instead of kept one by one, and each minute one `flood-summary` per source
//! and guest gives the counts. `auth-failure`, `lockout`, `auth-success`, `revoked` and
//! every record of an authenticated session are always kept. This module owns the
//! per-source token buckets, the open summaries and their tally files; what a record says
//! is the gateway's, storing it is the writer's.
//!
//! A source is the client's address without its port (an IPv6 address by its /64, which
//! one host usually holds whole), or the uid of a UNIX-socket client. Its bucket holds
//! [`RATE`] records and refills at that many per [`PERIOD`]. A `disconnect` is known to
//! end an authenticated session when an `auth-success` of the same guest and client came
//! before it.
//!
//! Counting must survive a crash as records do: each open summary has a tally file (its
//! source, guest and start, then one byte per record counted), written before the record
//! would have been, and deleted once the summary is stored. A daemon that starts with
//! tally files left stores their summaries ([`recover`]); a summary is stored under its
//! own batch id, so recovering one that was stored just before a crash adds nothing.

use std::{
    collections::HashMap,
    fs::{self, OpenOptions},
    io::Write,
    net::{IpAddr, SocketAddr},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::spool::rfc3339;
use crate::audit::{AuditEvent, AuditRecord};

/// Records before login kept one by one per source and [`PERIOD`]; the rest are counted.
pub const RATE: u32 = 30;
/// How often a source's counts are summarised, and how fast its bucket refills.
pub const PERIOD: Duration = Duration::from_secs(60);
/// The tally files' directory, in the spool's.
pub const TALLY_DIR: &str = "flood";

/// What to do with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Counted in its source's summary: not to be stored on its own.
    Counted,
}

/// A summary due to be stored: the record, and the batch id that stores it once.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub batch: String,
    pub record: AuditRecord,
    tally: Option<PathBuf>,
}

impl Summary {
    /// Deletes the tally file, once the summary is stored.
    pub fn done(&self) {
        if let Some(path) = &self.tally
            && let Err(e) = fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "Cannot delete a flood tally");
        }
    }
}

/// The head of a tally file.
#[derive(Serialize, Deserialize)]
struct TallyHead {
    source: String,
    domain: String,
    first_ns: i128,
}

#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Disconnect,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Window {
    id: Uuid,
    opened: Instant,
    first: OffsetDateTime,
    last: OffsetDateTime,
    connects: u64,
    disconnects: u64,
    /// Opened for each mark rather than held: a flood from many sources must not cost a
    /// file descriptor per source.
    tally: Option<PathBuf>,
}

/// The aggregation state. Not thread-safe by itself: the audit log holds it in a mutex.
pub struct Flood {
    tally_dir: Option<PathBuf>,
    buckets: HashMap<String, Bucket>,
    /// Open summaries by (source, guest).
    windows: HashMap<(String, String), Window>,
    /// Authenticated sessions open, by (guest, client).
    sessions: HashMap<(String, String), u32>,
    tally_warned: bool,
}

impl Flood {
    /// Aggregation with tally files in `tally_dir` (created if missing), or in memory
    /// only.
    pub fn new(tally_dir: Option<PathBuf>) -> Flood {
        if let Some(dir) = &tally_dir
            && let Err(e) = fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot create the flood tally directory");
        }
        Flood {
            tally_dir,
            buckets: HashMap::new(),
            windows: HashMap::new(),
            sessions: HashMap::new(),
            tally_warned: false,
        }
    }

    /// Whether `record`, arriving at `now`, is kept or counted.
    pub fn judge(&mut self, record: &AuditRecord, now: Instant) -> Verdict {
        let kind = match record.event {
            AuditEvent::AuthSuccess => {
                let key = (record.domain.clone(), record.source.clone());
                *self.sessions.entry(key).or_default() += 1;
                return Verdict::Keep;
            }
            AuditEvent::Disconnect | AuditEvent::Revoked => {
                let key = (record.domain.clone(), record.source.clone());
                if let Some(open) = self.sessions.get_mut(&key) {
                    *open -= 1;
                    if *open == 0 {
                        self.sessions.remove(&key);
                    }
                    return Verdict::Keep;
                }
                if record.event == AuditEvent::Revoked || !record.identity.is_empty() {
                    return Verdict::Keep;
                }
                Kind::Disconnect
            }
            AuditEvent::Connect if record.identity.is_empty() => Kind::Connect,
            _ => return Verdict::Keep,
        };
        let source = source_of(&record.source);
        let bucket = self.buckets.entry(source.clone()).or_insert(Bucket {
            tokens: f64::from(RATE),
            at: now,
        });
        bucket.tokens = refilled(bucket, now);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Keep;
        }
        self.count(source, record, kind, now);
        Verdict::Counted
    }

    /// The summaries whose period is over at `now`; forgets sources that went quiet.
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let over: Vec<_> = self
            .windows
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.opened) >= PERIOD)
            .map(|(k, _)| k.clone())
            .collect();
        let due = over
            .into_iter()
            .filter_map(|k| self.windows.remove_entry(&k))
            .map(|((source, domain), w)| w.close(source, domain, false))
            .collect();
        let windows = &self.windows;
        self.buckets.retain(|source, b| {
            refilled(b, now) < f64::from(RATE) || windows.keys().any(|(s, _)| s == source)
        });
        due
    }

    /// Every open summary, due or not (a query wants the counts so far; shutdown).
    pub fn drain(&mut self) -> Vec<Summary> {
        self.windows
            .drain()
            .map(|((source, domain), w)| w.close(source, domain, false))
            .collect()
    }

    fn count(&mut self, source: String, record: &AuditRecord, kind: Kind, now: Instant) {
        let key = (source, record.domain.clone());
        if !self.windows.contains_key(&key) {
            let window = self.open_window(&key.0, &key.1, record.time, now);
            self.windows.insert(key.clone(), window);
        }
        let Some(window) = self.windows.get_mut(&key) else {
            return;
        };
        window.first = window.first.min(record.time);
        window.last = window.last.max(record.time);
        let mark = match kind {
            Kind::Connect => {
                window.connects += 1;
                b'c'
            }
            Kind::Disconnect => {
                window.disconnects += 1;
                b'd'
            }
        };
        if let Some(path) = &window.tally
            && let Err(e) = OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut file| file.write_all(&[mark]))
        {
            tracing::warn!(path = %path.display(), error = %e, "Cannot write a flood tally");
            window.tally = None;
        }
    }

    fn open_window(
        &mut self,
        source: &str,
        domain: &str,
        first: OffsetDateTime,
        now: Instant,
    ) -> Window {
        let id = Uuid::new_v4();
        let tally = self.tally_dir.as_ref().and_then(|dir| {
            let path = dir.join(format!("{id}.tally"));
            let head = TallyHead {
                source: source.to_owned(),
                domain: domain.to_owned(),
                first_ns: first.unix_timestamp_nanos(),
            };
            match create_tally(&path, &head) {
                Ok(()) => Some(path),
                Err(e) => {
                    if !std::mem::replace(&mut self.tally_warned, true) {
                        tracing::warn!(
                            path = %path.display(),
                            error = %e,
                            "Cannot write flood tallies: a crash would lose their counts"
                        );
                    }
                    None
                }
            }
        });
        Window {
            id,
            opened: now,
            first,
            last: first,
            connects: 0,
            disconnects: 0,
            tally,
        }
    }
}

impl Window {
    fn close(self, source: String, domain: String, recovered: bool) -> Summary {
        summary(
            self.id,
            source,
            domain,
            (self.first, self.last),
            (self.connects, self.disconnects),
            recovered,
            self.tally,
        )
    }
}

fn summary(
    id: Uuid,
    source: String,
    domain: String,
    (first, last): (OffsetDateTime, OffsetDateTime),
    (connects, disconnects): (u64, u64),
    recovered: bool,
    tally: Option<PathBuf>,
) -> Summary {
    let until = if recovered {
        " (counted until the daemon stopped)"
    } else {
        ""
    };
    let reason = format!(
        "{connects} connects and {disconnects} disconnects before login between {} and {}{until}: \
         more than {RATE} a minute from this source, so counted instead of recorded one by one",
        rfc3339(first),
        rfc3339(last),
    );
    Summary {
        batch: format!("flood-{id}"),
        record: AuditRecord {
            time: first,
            source,
            reason,
            ..AuditRecord::new(AuditEvent::FloodSummary, &domain)
        },
        tally,
    }
}

/// The summaries of the tally files a stopped daemon left in `dir`.
pub fn recover(dir: &Path) -> Vec<Summary> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".tally"))
            .and_then(|n| Uuid::parse_str(n).ok())
        else {
            continue;
        };
        match read_tally(&path) {
            Some((head, counts, last)) => {
                let first = OffsetDateTime::from_unix_timestamp_nanos(head.first_ns)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let span = (first, last.max(first));
                out.push(summary(
                    id,
                    head.source,
                    head.domain,
                    span,
                    counts,
                    true,
                    Some(path),
                ));
            }
            None => {
                // Its head was cut short by an OS crash: nothing says whose counts they are.
                tracing::warn!(path = %path.display(), "Deleting an unreadable flood tally");
                let _ = fs::remove_file(&path);
            }
        }
    }
    out
}

fn create_tally(path: &Path, head: &TallyHead) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(head).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&line)
}

/// A tally's head, counts (connects, disconnects) and last change.
fn read_tally(path: &Path) -> Option<(TallyHead, (u64, u64), OffsetDateTime)> {
    let bytes = fs::read(path).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let head: TallyHead = serde_json::from_slice(&bytes[..newline]).ok()?;
    let body = &bytes[newline + 1..];
    let connects = body.iter().filter(|&&b| b == b'c').count() as u64;
    let disconnects = body.iter().filter(|&&b| b == b'd').count() as u64;
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some((head, (connects, disconnects), modified.into()))
}

/// The bucket's tokens at `now`.
fn refilled(bucket: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    let rate = f64::from(RATE);
    (bucket.tokens + elapsed * rate / PERIOD.as_secs_f64()).min(rate)
}

/// The source a client's address stands for: its IP (an IPv6 address by its /64), or the
/// whole text when it is not an address ("uid 1000").
pub fn source_of(client: &str) -> String {
    let ip = client
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| client.parse::<IpAddr>());
    match ip {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None if v6.is_loopback() => v6.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => client.to_owned(),
    }
}

#[cfg(test)]
#[path = "flood_tests.rs"]
mod tests;
