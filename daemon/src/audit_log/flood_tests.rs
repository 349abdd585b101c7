//! Tests of flood aggregation on a fake clock: what passes, what is counted, what is never
//! counted, when summaries fall due, and that counts survive a crash in tally files.

use super::*;

fn rec(event: AuditEvent, client: &str) -> AuditRecord {
    AuditRecord {
        source: client.to_owned(),
        ..AuditRecord::new(event, "g")
    }
}

/// Connect then disconnect of a handshake that never logged in, from `client`.
fn probe(f: &mut Flood, client: &str, now: Instant) -> [Verdict; 2] {
    [
        f.judge(&rec(AuditEvent::Connect, client), now),
        f.judge(&rec(AuditEvent::Disconnect, client), now),
    ]
}

fn counts(s: &Summary) -> (u64, u64) {
    let words: Vec<&str> = s.record.reason.split_whitespace().collect();
    (
        words[0].parse().expect("connects"),
        words[3].parse().expect("disconnects"),
    )
}

#[test]
fn past_the_rate_records_before_login_are_counted_and_summarised_each_period() {
    let mut f = Flood::new(None);
    let t0 = Instant::now();
    let kept = (0..RATE / 2)
        .flat_map(|i| probe(&mut f, &format!("198.51.100.7:{}", 1000 + i), t0))
        .filter(|v| *v == Verdict::Keep)
        .count();
    assert_eq!(kept, RATE as usize);
    for i in 0..100 {
        let client = format!("198.51.100.7:{}", 2000 + i);
        assert_eq!(probe(&mut f, &client, t0), [Verdict::Counted; 2]);
    }
    // Another source has its own bucket.
    assert_eq!(probe(&mut f, "203.0.113.9:5000", t0), [Verdict::Keep; 2]);

    assert!(f.due(t0 + PERIOD / 2).is_empty(), "not due yet");
    let due = f.due(t0 + PERIOD);
    assert_eq!(due.len(), 1);
    let s = &due[0];
    assert_eq!(s.record.event, AuditEvent::FloodSummary);
    assert_eq!(s.record.source, "198.51.100.7");
    assert_eq!(s.record.domain, "g");
    assert_eq!(counts(s), (100, 100));
    assert!(f.due(t0 + PERIOD * 3).is_empty(), "summarised once");

    // A period later the bucket is full again.
    let later = t0 + PERIOD * 2;
    assert_eq!(
        probe(&mut f, "198.51.100.7:3000", later),
        [Verdict::Keep; 2]
    );
}

#[test]
fn failures_lockouts_and_sessions_are_never_counted() {
    let mut f = Flood::new(None);
    let t0 = Instant::now();
    let client = "198.51.100.7:4000";
    for i in 0..RATE / 2 {
        probe(&mut f, &format!("198.51.100.7:{i}"), t0);
    }
    assert_eq!(probe(&mut f, "198.51.100.7:1", t0), [Verdict::Counted; 2]);
    for event in [
        AuditEvent::AuthFailure,
        AuditEvent::Lockout,
        AuditEvent::PasswordChange,
        AuditEvent::AclChange,
    ] {
        assert_eq!(f.judge(&rec(event, client), t0), Verdict::Keep, "{event}");
    }
    // An authenticated session, even an anonymous one (security None): its end is kept,
    // once per session.
    assert_eq!(
        f.judge(&rec(AuditEvent::Connect, client), t0),
        Verdict::Counted
    );
    assert_eq!(
        f.judge(&rec(AuditEvent::AuthSuccess, client), t0),
        Verdict::Keep
    );
    assert_eq!(
        f.judge(&rec(AuditEvent::AuthSuccess, client), t0),
        Verdict::Keep
    );
    assert_eq!(
        f.judge(&rec(AuditEvent::Disconnect, client), t0),
        Verdict::Keep
    );
    assert_eq!(
        f.judge(&rec(AuditEvent::Revoked, client), t0),
        Verdict::Keep
    );
    assert_eq!(
        f.judge(&rec(AuditEvent::Disconnect, client), t0),
        Verdict::Counted,
        "both sessions ended: this one never logged in"
    );
    let mut named = rec(AuditEvent::Disconnect, "198.51.100.7:9");
    named.identity = "alice".into();
    assert_eq!(f.judge(&named, t0), Verdict::Keep);
    assert_eq!(
        f.judge(&rec(AuditEvent::Revoked, "198.51.100.7:9"), t0),
        Verdict::Keep
    );

    let all = f.drain();
    assert_eq!(all.len(), 1);
    assert_eq!(counts(&all[0]), (2, 2));
    assert!(f.drain().is_empty());
}

#[test]
fn the_bucket_refills_at_the_rate() {
    let mut f = Flood::new(None);
    let t0 = Instant::now();
    let connect = |f: &mut Flood, at| f.judge(&rec(AuditEvent::Connect, "uid 1000"), at);
    for _ in 0..RATE {
        assert_eq!(connect(&mut f, t0), Verdict::Keep);
    }
    assert_eq!(connect(&mut f, t0), Verdict::Counted);
    // One token every PERIOD / RATE.
    let step = PERIOD / RATE;
    assert_eq!(connect(&mut f, t0 + step), Verdict::Keep);
    assert_eq!(connect(&mut f, t0 + step), Verdict::Counted);
    let due = f.drain();
    assert_eq!(due[0].record.source, "uid 1000");
    assert_eq!(counts(&due[0]), (2, 0));
}

#[test]
fn sources_are_addresses_without_ports_and_ipv6_by_its_64() {
    assert_eq!(source_of("127.0.0.1:5000"), "127.0.0.1");
    assert_eq!(
        source_of("[2001:db8:1:2:3:4:5:6]:5900"),
        "2001:db8:1:2::/64"
    );
    assert_eq!(source_of("[::ffff:192.0.2.1]:1"), "192.0.2.1");
    assert_eq!(source_of("[::1]:7"), "::1");
    assert_eq!(source_of("uid 0"), "uid 0");
}

#[test]
fn counts_survive_a_crash_in_tally_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tallies = dir.path().join(TALLY_DIR);
    let t0 = Instant::now();
    let mut f = Flood::new(Some(tallies.clone()));
    for i in 0..RATE / 2 + 7 {
        probe(&mut f, &format!("192.0.2.1:{i}"), t0);
    }
    f.judge(&rec(AuditEvent::Connect, "192.0.2.2:1"), t0);
    // Closed normally: the summary names its tally, deleted once stored.
    let mut other = Flood::new(Some(tallies.clone()));
    for i in 0..RATE + 1 {
        other.judge(&rec(AuditEvent::Connect, &format!("192.0.2.3:{i}")), t0);
    }
    let closed = other.drain();
    assert_eq!(counts(&closed[0]), (1, 0));
    closed[0].done();
    // The first is dropped without a summary: a crash.
    drop(f);

    let recovered = recover(&tallies);
    assert_eq!(recovered.len(), 1);
    let s = &recovered[0];
    assert_eq!(counts(s), (7, 7));
    assert_eq!(s.record.source, "192.0.2.1");
    assert!(s.record.reason.contains("until the daemon stopped"));
    assert!(s.batch.starts_with("flood-"));
    // The same batch id each time: storing it twice stores it once.
    assert_eq!(recover(&tallies)[0].batch, s.batch);
    s.done();
    assert!(recover(&tallies).is_empty());
}
