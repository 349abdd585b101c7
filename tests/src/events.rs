//! Domain events as a test reads them: the real `vmgate event --loop --json` running in
//! the background, its lines parsed as they come, and waits with deadlines. Opening a
//! stream waits until it is subscribed (it re-defines the domain unchanged and waits for
//! that event), so no event a test causes afterwards can be missed.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

use crate::{TestDaemon, bins};

/// How long the stream may take to be subscribed.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(10);

/// One event, as `vmgate event --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub domain: String,
    /// "lifecycle", "reboot", "reset".
    pub family: String,
    /// "Started", "Stopped", ...
    pub event: String,
    pub detail: String,
}

/// A running `vmgate event --loop --json`.
pub struct EventStream {
    child: Child,
    lines: mpsc::Receiver<Event>,
}

impl EventStream {
    /// Follows `domain`'s events from now on.
    pub fn open(d: &TestDaemon, domain: &str) -> EventStream {
        let uri = d.uri();
        let mut child = Command::new(bins::vmgate())
            .args(["-c", &uri, "event", "--loop", "--json", "--domain", domain])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vmgate event");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
                let event = Event {
                    domain: text("domain"),
                    family: text("family"),
                    event: text("event"),
                    detail: text("detail"),
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        let mut stream = EventStream { child, lines };
        stream.sync(d, domain);
        stream
    }

    /// Re-defines `domain` unchanged until the stream reports it: from then on it sees
    /// every event.
    fn sync(&mut self, d: &TestDaemon, domain: &str) {
        let definition = d
            .vmgate(&["dumpconf", "--security-info", domain])
            .ok()
            .to_string();
        let path = d.file(&format!(".{domain}.sync.toml"), &definition);
        let path = path.to_str().expect("utf-8 path");
        let end = std::time::Instant::now() + SUBSCRIBE_DEADLINE;
        while std::time::Instant::now() < end {
            d.vmgate(&["define", path]).ok();
            let seen = self.next_within(Duration::from_millis(200));
            if seen.is_some_and(|e| e.event == "Defined") {
                return;
            }
        }
        panic!("vmgate event never reported {domain}'s events");
    }

    /// The next event, if one comes within `limit`.
    pub fn next_within(&mut self, limit: Duration) -> Option<Event> {
        self.lines.recv_timeout(limit).ok()
    }

    /// The first event within `limit` that `wanted` accepts, skipping others.
    pub fn find(&mut self, limit: Duration, wanted: impl Fn(&Event) -> bool) -> Option<Event> {
        let end = std::time::Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let event = self.next_within(left)?;
            if wanted(&event) {
                return Some(event);
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
