//! Tests of the audit spool: what goes in comes back, across a reopen; a torn or damaged
//! frame is detected and nothing after it is trusted; the bound refuses and counts, and a
//! notice of the loss is written at once.

use std::{fs, os::unix::fs::PermissionsExt};

use time::Duration;

use super::*;

fn rec(i: u32, domain: &str) -> AuditRecord {
    AuditRecord {
        time: OffsetDateTime::UNIX_EPOCH
            + Duration::nanoseconds(1_700_000_000_123_456_789 + i64::from(i)),
        source: format!("192.0.2.1:{}", 40_000 + i),
        security_type: "vnc".into(),
        identity: "CN=alice".into(),
        reason: format!("reason {i} ünïcode"),
        ..AuditRecord::new(AuditEvent::ALL[i as usize % AuditEvent::ALL.len()], domain)
    }
}

/// Every record of every sealed segment, and the damage found.
fn read_all(spool: &Spool) -> (Vec<AuditRecord>, Vec<Damage>) {
    let mut records = Vec::new();
    let mut damage = Vec::new();
    for segment in spool.seal().expect("seal") {
        let mut reader = segment.reader().expect("reader");
        loop {
            let chunk = reader.next_chunk(2);
            if chunk.is_empty() {
                break;
            }
            records.extend(chunk);
        }
        damage.extend(reader.damage().cloned());
    }
    (records, damage)
}

#[test]
fn records_come_back_in_order_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(SPOOL_DIR);
    let spool = Spool::open(&path, MAX_BYTES).expect("open");
    let records: Vec<_> = (0..5).map(|i| rec(i, "alpha")).collect();
    for r in &records[..3] {
        spool.append(r).expect("append");
    }
    let sealed = spool.seal().expect("seal");
    assert_eq!(sealed.len(), 1);
    for r in &records[3..] {
        spool.append(r).expect("append");
    }
    // No seal: the last two are in the segment being written, as at a crash.
    drop(spool);

    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    for entry in fs::read_dir(&path).expect("list") {
        assert_eq!(mode(&entry.expect("entry").path()), 0o600);
    }

    let spool = Spool::open(&path, MAX_BYTES).expect("reopen");
    let (back, damage) = read_all(&spool);
    assert_eq!(back, records, "every field, to the nanosecond");
    assert!(damage.is_empty());
    let segments = spool.seal().expect("seal");
    assert_eq!(segments.len(), 2);
    assert_ne!(segments[0].id(), segments[1].id());
    for s in &segments {
        spool.remove(s).expect("remove");
    }
    assert_eq!(spool.bytes(), 0);
    assert!(spool.seal().expect("seal").is_empty());
    // New segments are numbered after the old ones.
    spool.append(&records[0]).expect("append");
    let name = spool.seal().expect("seal")[0].path.clone();
    assert!(name.ends_with("00000000000000000003.seg"), "{name:?}");
}

#[test]
fn a_torn_last_record_is_detected_and_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), MAX_BYTES).expect("open");
    for i in 0..3 {
        spool.append(&rec(i, "alpha")).expect("append");
    }
    let segment = spool.seal().expect("seal").remove(0);
    drop(spool);
    // A crash in the middle of the last write.
    let file = OpenOptions::new()
        .write(true)
        .open(&segment.path)
        .expect("open segment");
    file.set_len(segment.len - 5).expect("truncate");

    let spool = Spool::open(dir.path(), MAX_BYTES).expect("reopen");
    let (back, damage) = read_all(&spool);
    assert_eq!(back, [rec(0, "alpha"), rec(1, "alpha")]);
    assert_eq!(damage.len(), 1);
    assert!(damage[0].torn, "{damage:?}");
    assert_eq!(damage[0].offset + damage[0].skipped, segment.len - 5);

    // Only a frame header, cut short.
    let spool2_dir = tempfile::tempdir().expect("tempdir");
    let spool2 = Spool::open(spool2_dir.path(), MAX_BYTES).expect("open");
    spool2.append(&rec(0, "alpha")).expect("append");
    let s = spool2.seal().expect("seal").remove(0);
    let mut f = OpenOptions::new()
        .append(true)
        .open(&s.path)
        .expect("open segment");
    f.write_all(&[9, 0]).expect("torn header");
    drop(spool2);
    let spool2 = Spool::open(spool2_dir.path(), MAX_BYTES).expect("reopen");
    let (back, damage) = read_all(&spool2);
    assert_eq!(back, [rec(0, "alpha")]);
    assert!(damage[0].torn && damage[0].skipped == 2, "{damage:?}");
}

#[test]
fn a_damaged_record_stops_the_reading_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(dir.path(), MAX_BYTES).expect("open");
    for i in 0..3 {
        spool.append(&rec(i, "alpha")).expect("append");
    }
    let segment = spool.seal().expect("seal").remove(0);
    let mut bytes = fs::read(&segment.path).expect("read");
    // A bit flipped in the second record's payload.
    let second = HEADER_LEN as usize + encode(&rec(0, "alpha")).len() + FRAME_HEAD + 20;
    bytes[second] ^= 0x40;
    fs::write(&segment.path, &bytes).expect("write");
    let mut reader = segment.reader().expect("reader");
    assert_eq!(reader.next_chunk(10), [rec(0, "alpha")]);
    assert!(reader.next_chunk(10).is_empty());
    let damage = reader.damage().expect("damage");
    assert!(!damage.torn, "not the last record: {damage:?}");
}

#[test]
fn the_bound_refuses_counts_per_domain_and_notes_the_loss_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let three: u64 = (0..3).map(|i| encode(&rec(i, "alpha")).len() as u64).sum();
    let spool = Spool::open(dir.path(), HEADER_LEN + three).expect("open");
    for i in 0..3 {
        spool.append(&rec(i, "alpha")).expect("room for three");
    }
    for i in 3..8 {
        let err = spool.append(&rec(i, "alpha")).expect_err("full");
        assert!(matches!(err, SpoolError::Full(_)), "{err}");
    }
    spool.append(&rec(8, "beta")).expect_err("full");
    assert_eq!(spool.lost_total(), 6);
    assert!(!spool.has_room());

    // One notice per domain went into the reserve at the first loss.
    let (back, _) = read_all(&spool);
    assert_eq!(back.len(), 5);
    let notices: Vec<_> = back[3..]
        .iter()
        .map(|r| (r.event, r.domain.as_str()))
        .collect();
    assert_eq!(
        notices,
        [
            (AuditEvent::FloodSummary, "alpha"),
            (AuditEvent::FloodSummary, "beta")
        ]
    );
    assert!(back[3].reason.contains("being lost"), "{}", back[3].reason);

    let losses = spool.take_losses();
    assert_eq!(losses.len(), 2);
    assert_eq!((losses[0].domain.as_str(), losses[0].count), ("alpha", 5));
    assert_eq!(
        (losses[0].first, losses[0].last),
        (rec(3, "").time, rec(7, "").time)
    );
    assert_eq!((losses[1].domain.as_str(), losses[1].count), ("beta", 1));
    let report = losses[0].record(MAX_BYTES);
    assert_eq!(report.event, AuditEvent::FloodSummary);
    assert!(
        report.reason.starts_with("audit records lost: 5 from "),
        "{}",
        report.reason
    );
    assert!(spool.take_losses().is_empty(), "reported once");

    // Draining makes room again.
    for s in spool.seal().expect("seal") {
        spool.remove(&s).expect("remove");
    }
    assert!(spool.has_room());
    spool.append(&rec(9, "alpha")).expect("room again");
}

#[test]
fn fields_are_made_storable() {
    let mut r = rec(1, "alpha");
    r.reason = format!("a\0b{}", "é".repeat(MAX_FIELD));
    let frame = encode(&r);
    let back = decode(&frame[FRAME_HEAD..]).expect("decode");
    assert!(back.reason.starts_with("a\u{fffd}b"));
    assert!(back.reason.len() <= MAX_FIELD);
    assert_eq!(back.domain, "alpha");
    assert_eq!(decode(&frame[FRAME_HEAD..frame.len() - 1]), None);
}

#[test]
fn files_that_are_not_segments_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("00000000000000000001.seg"), b"VMG").expect("torn header");
    fs::write(dir.path().join("notes.txt"), b"hello").expect("other file");
    let spool = Spool::open(dir.path(), MAX_BYTES).expect("open");
    assert!(spool.seal().expect("seal").is_empty());
    assert!(!dir.path().join("00000000000000000001.seg").exists());
    assert!(dir.path().join("notes.txt").exists());
}
