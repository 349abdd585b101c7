//! The audit spool: a bounded, durable queue of audit records on local disk, between the
//! gateways that report records and the database that keeps them. It owns the files in
//! its directory (`<state_dir>/audit-spool`, 0700; files 0600) and nothing else: no SQL,
//! no tracing of the records themselves. The writer in `audit_log` drains it into the
//! database; a shared database that is unreachable for a while is what it is for.
//!
//! Records go into append-only segment files, `<seq>.seg`, each a header (magic, the
//! segment's UUID) and frames: `u32` payload length, the first 8 bytes of the payload's
//! SHA-256, the payload. [`Spool::append`] writes a record's frame with one `write(2)`
//! before it returns, so a crash of the daemon (`kill -9`) cannot lose it; [`Spool::seal`]
//! closes the segment being written and fsyncs it, in batches, which is what an OS crash
//! needs. Sealed segments are read back in chunks ([`Segment::reader`]) and deleted once
//! stored ([`Spool::remove`]); a segment's UUID and a chunk's index name the batch, so a
//! store can recognise a batch it already has when a segment is replayed after a crash
//! that came between storing and deleting. Reading stops at a frame that is cut short or
//! fails its checksum, and reports it ([`Damage`]): a torn last record is detected, never
//! stored half.
//!
//! The spool holds at most `max_bytes`. A record that does not fit, or cannot be written,
//! is refused and counted per domain ([`Spool::take_losses`]); the first loss of a domain
//! is logged and noted at once by a record in a small reserve beyond the bound, so that
//! even a crash before the count is reported cannot make the loss silent.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, BufReader, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use sha2_10::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditRecord};

/// The spool's directory under `state_dir`.
pub const SPOOL_DIR: &str = "audit-spool";
/// What the spool holds at most by default: some 500,000 records.
pub const MAX_BYTES: u64 = 128 << 20;
/// Room beyond the bound for the records that say records were lost.
const NOTICE_RESERVE: u64 = 256 << 10;
const MAGIC: &[u8; 8] = b"VMGSPL01";
const HEADER_LEN: u64 = 8 + 16;
/// Frame header: payload length and checksum.
const FRAME_HEAD: usize = 4 + 8;
/// Longest payload a reader accepts; longer fields are cut when written.
const MAX_PAYLOAD: u32 = 1 << 20;
const MAX_FIELD: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("Cannot open the audit spool {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Cannot write the audit spool {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Cannot read the audit spool {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("The audit spool is full ({0} bytes)")]
    Full(u64),
}

/// Why records were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The spool was at its bound.
    Full,
    /// Writing the spool failed.
    Unwritable,
    /// A segment was cut short or damaged (found when it was read back).
    Damaged,
}

/// Records lost for one reason on one domain ("" when unknown), since the last report.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    pub domain: String,
    pub cause: Cause,
    pub count: u64,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    /// The last error, for `Cause::Unwritable`.
    pub detail: String,
}

impl Loss {
    /// The audit record that reports this loss. The design has no event for it and adds
    /// no new ones: `flood-summary` is the event of records counted instead of kept one
    /// by one, which is what lost records become; its reason says they are lost.
    pub fn record(&self, max_bytes: u64) -> AuditRecord {
        let why = match self.cause {
            Cause::Full => format!("the audit spool was full ({} MiB)", max_bytes >> 20),
            Cause::Unwritable => format!("the audit spool could not be written: {}", self.detail),
            Cause::Damaged => "a spool segment was cut short or damaged (a crash)".to_owned(),
        };
        AuditRecord {
            time: self.first,
            reason: format!(
                "audit records lost: {} from {} to {}: {why}; the daemon's log has them",
                self.count,
                rfc3339(self.first),
                rfc3339(self.last)
            ),
            ..AuditRecord::new(AuditEvent::FloodSummary, &self.domain)
        }
    }
}

/// The record written at once, in the reserve, when a domain starts losing records.
fn loss_notice(domain: &str, cause: Cause, time: OffsetDateTime) -> AuditRecord {
    let why = match cause {
        Cause::Full => "the audit spool is full",
        Cause::Unwritable | Cause::Damaged => "the audit spool cannot be written",
    };
    AuditRecord {
        time,
        reason: format!(
            "audit records are being lost from here on: {why}; a later flood-summary gives \
             the count, unless the daemon stops first"
        ),
        ..AuditRecord::new(AuditEvent::FloodSummary, domain)
    }
}

/// A sealed segment: a file no longer written, waiting to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    path: PathBuf,
    id: String,
    seq: u64,
    len: u64,
}

impl Segment {
    /// The segment's UUID: with a chunk index, the id of a batch of its records.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN
    }

    /// Reads its records back, from the first.
    pub fn reader(&self) -> Result<Reader, SpoolError> {
        let err = |source| SpoolError::Read {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let mut input = BufReader::new(file);
        let mut header = [0; HEADER_LEN as usize];
        input.read_exact(&mut header).map_err(err)?;
        Ok(Reader {
            input,
            offset: HEADER_LEN,
            len,
            damage: None,
        })
    }
}

/// Where reading a segment stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the frame that could not be read.
    pub offset: u64,
    /// Bytes from there to the end, skipped.
    pub skipped: u64,
    /// Whether it was the last frame, cut short: what a crash while writing leaves.
    pub torn: bool,
}

/// Reads the records of a segment in chunks.
pub struct Reader {
    input: BufReader<File>,
    offset: u64,
    len: u64,
    damage: Option<Damage>,
}

impl Reader {
    /// Up to `max` further records; empty at the end or at damage.
    pub fn next_chunk(&mut self, max: usize) -> Vec<AuditRecord> {
        let mut out = Vec::new();
        while out.len() < max && self.damage.is_none() && self.offset < self.len {
            match self.next_frame() {
                Ok(record) => out.push(record),
                Err(torn) => {
                    self.damage = Some(Damage {
                        offset: self.offset,
                        skipped: self.len - self.offset,
                        torn,
                    })
                }
            }
        }
        out
    }

    /// Where reading stopped early, once `next_chunk` came back empty.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// The next record; Err(torn) when the frame is cut short or fails its checks.
    fn next_frame(&mut self) -> Result<AuditRecord, bool> {
        let left = self.len - self.offset;
        let mut head = [0; FRAME_HEAD];
        if left < FRAME_HEAD as u64 || self.input.read_exact(&mut head).is_err() {
            return Err(true);
        }
        let (len, sum) = head.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default());
        if len > MAX_PAYLOAD {
            return Err(false);
        }
        let frame_len = FRAME_HEAD as u64 + u64::from(len);
        if frame_len > left {
            return Err(true);
        }
        let mut payload = vec![0; len as usize];
        if self.input.read_exact(&mut payload).is_err() {
            return Err(true);
        }
        let last = frame_len == left;
        if checksum(&payload) != sum {
            return Err(last);
        }
        let record = decode(&payload).ok_or(false)?;
        self.offset += frame_len;
        Ok(record)
    }
}

/// The spool. `append` may be called from any thread; the other methods are the
/// drainer's, which is one task.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

struct State {
    active: Option<Active>,
    sealed: VecDeque<Segment>,
    /// Bytes on disk, sealed and active.
    bytes: u64,
    next_seq: u64,
    losses: BTreeMap<(String, Cause), Loss>,
    lost_total: u64,
}

struct Active {
    file: File,
    segment: Segment,
}

impl Spool {
    /// Opens the spool in `dir` (created 0700 if missing), holding at most `max_bytes`.
    /// Segments left there (by an earlier run) are sealed, to be stored first.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Open {
            path: dir.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let mode = fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                found.push((seq, path));
            }
        }
        found.sort();
        let mut sealed = VecDeque::new();
        let mut bytes = 0;
        for (seq, path) in &found {
            match read_header(path) {
                Ok(Some((id, len))) => {
                    bytes += len;
                    sealed.push_back(Segment {
                        path: path.clone(),
                        id,
                        seq: *seq,
                        len,
                    });
                }
                // Cut short while being created: it holds no record.
                Ok(None) => fs::remove_file(path).map_err(err)?,
                // Not ours, or its header is damaged: left alone for a person to look at.
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "Skipping an unreadable audit spool segment"
                ),
            }
        }
        let next_seq = found.last().map_or(1, |(seq, _)| seq + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State {
                active: None,
                sealed,
                bytes,
                next_seq,
                losses: BTreeMap::new(),
                lost_total: 0,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes the spool holds now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Whether the spool has room for records again (under the bound).
    pub fn has_room(&self) -> bool {
        self.lock().bytes < self.max_bytes
    }

    /// Records lost since the spool was opened.
    pub fn lost_total(&self) -> u64 {
        self.lock().lost_total
    }

    /// Writes `record` at the end of the spool; once this returns, only an OS crash (before
    /// the next `seal`) can lose it. A refused record is counted as lost
    /// ([`Spool::take_losses`]).
    pub fn append(&self, record: &AuditRecord) -> Result<(), SpoolError> {
        let frame = encode(record);
        let mut state = self.lock();
        let result = self.write_frame(&mut state, &frame, self.max_bytes);
        if let Err(e) = &result {
            let (cause, detail) = match e {
                SpoolError::Full(_) => (Cause::Full, String::new()),
                other => (Cause::Unwritable, other.to_string()),
            };
            self.count_loss(&mut state, &record.domain, cause, record.time, detail);
        }
        result
    }

    /// Writes `record` even past the bound, into the small reserve kept for records that
    /// report losses.
    pub fn append_notice(&self, record: &AuditRecord) -> Result<(), SpoolError> {
        let frame = encode(record);
        let mut state = self.lock();
        self.write_frame(&mut state, &frame, self.max_bytes + NOTICE_RESERVE)
    }

    /// Counts a record found damaged in a segment as lost (on no known domain).
    pub fn count_damaged(&self) {
        let mut state = self.lock();
        let now = OffsetDateTime::now_utc();
        self.count_loss(&mut state, "", Cause::Damaged, now, String::new());
    }

    /// The losses since the last call, oldest domain first; the caller reports them.
    pub fn take_losses(&self) -> Vec<Loss> {
        std::mem::take(&mut self.lock().losses)
            .into_values()
            .collect()
    }

    /// Ends the segment being written, if any, and fsyncs it: the next append starts a
    /// new one. Returns every sealed segment, oldest first.
    pub fn seal(&self) -> Result<Vec<Segment>, SpoolError> {
        let active = {
            let mut state = self.lock();
            let active = state.active.take();
            if let Some(a) = &active {
                state.sealed.push_back(a.segment.clone());
            }
            active
        };
        if let Some(a) = active {
            let err = |source| SpoolError::Write {
                path: a.segment.path.clone(),
                source,
            };
            a.file.sync_data().map_err(err)?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(self.lock().sealed.iter().cloned().collect())
    }

    /// Fsyncs the segment being written without ending it (while the database cannot be
    /// reached, so that segments do not pile up).
    pub fn sync(&self) -> Result<(), SpoolError> {
        let file = {
            let state = self.lock();
            match &state.active {
                Some(a) => a.file.try_clone().map(|f| (f, a.segment.path.clone())),
                None => return Ok(()),
            }
        };
        let (file, path) = file.map_err(|source| SpoolError::Write {
            path: self.dir.clone(),
            source,
        })?;
        file.sync_data()
            .map_err(|source| SpoolError::Write { path, source })
    }

    /// Deletes a sealed segment whose records are all stored.
    pub fn remove(&self, segment: &Segment) -> Result<(), SpoolError> {
        match fs::remove_file(&segment.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SpoolError::Write {
                    path: segment.path.clone(),
                    source,
                });
            }
        }
        let mut state = self.lock();
        let before = state.sealed.len();
        state.sealed.retain(|s| s.seq != segment.seq);
        if state.sealed.len() < before {
            state.bytes = state.bytes.saturating_sub(segment.len);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_frame(&self, state: &mut State, frame: &[u8], limit: u64) -> Result<(), SpoolError> {
        let header = if state.active.is_some() {
            0
        } else {
            HEADER_LEN
        };
        if state.bytes + header + frame.len() as u64 > limit {
            return Err(SpoolError::Full(self.max_bytes));
        }
        if state.active.is_none() {
            let active = self.create_segment(state.next_seq)?;
            state.next_seq += 1;
            state.bytes += HEADER_LEN;
            state.active = Some(active);
        }
        let Some(active) = state.active.as_mut() else {
            return Err(SpoolError::Full(self.max_bytes));
        };
        match active.file.write_all(frame) {
            Ok(()) => {
                active.segment.len += frame.len() as u64;
                state.bytes += frame.len() as u64;
                Ok(())
            }
            Err(source) => {
                // Cut off whatever part was written, so the next frame is readable; if
                // even that fails, end the segment (its reader stops at the torn frame).
                let err = SpoolError::Write {
                    path: active.segment.path.clone(),
                    source,
                };
                if active.file.set_len(active.segment.len).is_err()
                    && let Some(a) = state.active.take()
                {
                    state.sealed.push_back(a.segment);
                }
                Err(err)
            }
        }
    }

    fn create_segment(&self, seq: u64) -> Result<Active, SpoolError> {
        let path = self.dir.join(format!("{seq:020}.seg"));
        let err = |source| SpoolError::Write {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        let id = Uuid::new_v4();
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(id.as_bytes());
        if let Err(e) = file.write_all(&header) {
            let _ = fs::remove_file(&path);
            return Err(err(e));
        }
        Ok(Active {
            file,
            segment: Segment {
                path,
                id: id.to_string(),
                seq,
                len: HEADER_LEN,
            },
        })
    }

    fn count_loss(
        &self,
        state: &mut State,
        domain: &str,
        cause: Cause,
        time: OffsetDateTime,
        detail: String,
    ) {
        state.lost_total += 1;
        let key = (domain.to_owned(), cause);
        if let Some(loss) = state.losses.get_mut(&key) {
            loss.count += 1;
            loss.first = loss.first.min(time);
            loss.last = loss.last.max(time);
            loss.detail = detail;
            return;
        }
        tracing::warn!(
            domain,
            ?cause,
            "Audit records are being lost: they are logged but not stored"
        );
        state.losses.insert(
            key,
            Loss {
                domain: domain.to_owned(),
                cause,
                count: 1,
                first: time,
                last: time,
                detail,
            },
        );
        // Damage is found when it is already past, and reported right after.
        if cause != Cause::Damaged {
            let notice = encode(&loss_notice(domain, cause, time));
            // Best effort: with the disk itself failing, the log is all there is.
            let _ = self.write_frame(state, &notice, self.max_bytes + NOTICE_RESERVE);
        }
    }
}

/// The UUID and size of a segment file; None if its header is incomplete.
fn read_header(path: &Path) -> io::Result<Option<(String, u64)>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut header = [0; HEADER_LEN as usize];
    if len < HEADER_LEN {
        return Ok(None);
    }
    file.read_exact(&mut header)?;
    let (magic, id) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not an audit spool segment", path.display()),
        ));
    }
    let id = Uuid::from_slice(id).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((id.to_string(), len)))
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut sum = [0; 8];
    sum.copy_from_slice(&digest[..8]);
    sum
}

/// A record's frame. NUL characters become U+FFFD (PostgreSQL text cannot hold them) and
/// fields are cut at [`MAX_FIELD`] bytes, so every frame can be stored.
fn encode(r: &AuditRecord) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64 + r.reason.len());
    payload.extend_from_slice(&r.time.unix_timestamp_nanos().to_le_bytes());
    for text in [
        r.event.as_str(),
        &r.domain,
        &r.source,
        &r.security_type,
        &r.identity,
        &r.reason,
    ] {
        let text = text.replace('\0', "\u{fffd}");
        let mut end = text.len().min(MAX_FIELD);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&(end as u32).to_le_bytes());
        payload.extend_from_slice(&text.as_bytes()[..end]);
    }
    let mut frame = Vec::with_capacity(FRAME_HEAD + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&checksum(&payload));
    frame.extend_from_slice(&payload);
    frame
}

fn decode(payload: &[u8]) -> Option<AuditRecord> {
    let (nanos, mut rest) = payload.split_at_checked(16)?;
    let nanos = i128::from_le_bytes(nanos.try_into().ok()?);
    let mut next = || -> Option<String> {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (text, tail) = tail.split_at_checked(len)?;
        rest = tail;
        String::from_utf8(text.to_vec()).ok()
    };
    let event = AuditEvent::parse(&next()?)?;
    let record = AuditRecord {
        time: OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?,
        event,
        domain: next()?,
        source: next()?,
        security_type: next()?,
        identity: next()?,
        reason: next()?,
    };
    rest.is_empty().then_some(record)
}

/// `t` as RFC 3339, for reasons.
pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
