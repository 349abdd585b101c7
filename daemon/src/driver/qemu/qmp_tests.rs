//! Tests of the QMP client against a scripted fake QEMU on a socketpair: greeting and
//! capabilities, typed commands, events interleaved with answers, answers out of order,
//! error answers, EOF as "the guest stopped", bounded lines, and broken peers.

use std::time::Duration;

use tokio::io::{AsyncWriteExt as _, ReadHalf, WriteHalf};
use tokio::time::timeout;

use super::*;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2"}, "capabilities": ["oob"]}}"#;
const WAIT: Duration = Duration::from_secs(10);

/// The QEMU side of the socketpair.
struct Fake {
    input: FramedRead<ReadHalf<UnixStream>, LinesCodec>,
    output: WriteHalf<UnixStream>,
}

impl Fake {
    async fn send(&mut self, line: &str) {
        self.output
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("fake writes");
    }

    /// The next command from the client.
    async fn recv(&mut self) -> Value {
        let line = timeout(WAIT, self.input.next())
            .await
            .expect("a command in time")
            .expect("a line")
            .expect("a readable line");
        serde_json::from_str(&line).expect("the client sends JSON")
    }

    /// Receives `command` and answers `answer` (a JSON object without the id).
    async fn answer(&mut self, command: &str, mut answer: Value) -> Value {
        let got = self.recv().await;
        assert_eq!(got["execute"], command, "{got}");
        answer["id"] = got["id"].clone();
        self.send(&answer.to_string()).await;
        got
    }
}

fn pair() -> (UnixStream, Fake) {
    let (client, server) = UnixStream::pair().expect("socketpair");
    let (read, output) = tokio::io::split(server);
    let input = FramedRead::new(read, LinesCodec::new());
    (client, Fake { input, output })
}

/// A negotiated client and its fake.
async fn connected() -> (QmpClient, broadcast::Receiver<Event>, Fake) {
    let (stream, mut fake) = pair();
    let server = async {
        fake.send(GREETING).await;
        fake.answer("qmp_capabilities", json!({"return": {}})).await;
        fake
    };
    let (client, fake) = tokio::join!(QmpClient::handshake(stream), server);
    let (client, events) = client.expect("handshake");
    (client, events, fake)
}

async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("an event")
}

#[tokio::test]
async fn greeting_and_capabilities() {
    let (stream, mut fake) = pair();
    let server = async {
        fake.send(GREETING).await;
        let got = fake.answer("qmp_capabilities", json!({"return": {}})).await;
        assert_eq!(got, json!({"execute": "qmp_capabilities", "id": 0}));
    };
    let (client, ()) = tokio::join!(QmpClient::handshake(stream), server);
    let (client, _) = client.expect("handshake");
    assert_eq!(
        client.greeting(),
        &Greeting {
            version: (10, 0, 2),
            package: "Debian 1:10.0.2+ds-2".into(),
            capabilities: vec!["oob".into()],
        }
    );
}

#[tokio::test]
async fn typed_commands_with_an_interleaved_event() {
    let (client, mut events, mut fake) = connected().await;
    let server = async {
        let got = fake.recv().await;
        assert_eq!(got["execute"], "stop");
        // QEMU emits the event before the answer
        fake.send(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#)
            .await;
        fake.send(&json!({"return": {}, "id": got["id"]}).to_string())
            .await;
        let answer = json!({"return": {"status": "paused", "running": false}});
        fake.answer("query-status", answer).await;
        let answer = json!({"return": {"base-memory": 67108864, "plugged-memory": 0}});
        fake.answer("query-memory-size-summary", answer).await;
        let answer = json!({"return": [{"cpu-index": 0, "thread-id": 4242, "target": "x86_64"}]});
        fake.answer("query-cpus-fast", answer).await;
        let answer = json!({"return": {"status": "colo", "running": false}});
        fake.answer("query-status", answer).await;
        fake
    };
    let commands = async {
        client.stop().await.expect("stop");
        let status = client.query_status().await.expect("status");
        assert_eq!(
            status,
            Status {
                running: false,
                status: RunState::Paused
            }
        );
        let memory = client.query_memory_size_summary().await.expect("memory");
        assert_eq!(
            (memory.base_memory, memory.plugged_memory),
            (64 << 20, Some(0))
        );
        let cpus = client.query_cpus_fast().await.expect("cpus");
        assert_eq!(
            cpus,
            [CpuInfo {
                cpu_index: 0,
                thread_id: 4242
            }]
        );
        let other = client.query_status().await.expect("unknown states parse");
        assert_eq!(other.status, RunState::Other);
    };
    tokio::join!(server, commands);
    assert_eq!(next_event(&mut events).await, Event::Stop);
}

#[tokio::test]
async fn answers_are_matched_by_id_not_order() {
    let (client, _events, mut fake) = connected().await;
    let server = async {
        let first = fake.recv().await;
        let second = fake.recv().await;
        // an answer nobody waits for is ignored
        fake.send(r#"{"return": {}, "id": 999}"#).await;
        for (got, running) in [(&second, false), (&first, true)] {
            let status = if running { "running" } else { "paused" };
            let answer = json!({"return": {"status": status, "running": running}, "id": got["id"]});
            fake.send(&answer.to_string()).await;
        }
        assert_ne!(first["id"], second["id"]);
    };
    let (a, b, ()) = tokio::join!(client.query_status(), client.query_status(), server);
    let statuses = [a.expect("first").status, b.expect("second").status];
    assert!(
        statuses.contains(&RunState::Running) && statuses.contains(&RunState::Paused),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn arguments_are_sent() {
    let (client, _events, mut fake) = connected().await;
    let server = async {
        let got = fake.answer("screendump", json!({"return": {}})).await;
        assert_eq!(got["arguments"], json!({"filename": "/tmp/x.ppm"}));
    };
    let (done, ()) = tokio::join!(
        client.execute("screendump", Some(json!({"filename": "/tmp/x.ppm"}))),
        server
    );
    assert_eq!(done.expect("answer"), json!({}));
}

#[tokio::test]
async fn error_answers_name_the_command() {
    let (client, _events, mut fake) = connected().await;
    let server = async {
        let error = json!({"error": {"class": "GenericError", "desc": "Guest is not running"}});
        fake.answer("system_reset", error).await;
        fake.answer("query-status", json!({"return": {"running": "yes"}}))
            .await;
        fake.answer("cont", json!({"nothing": 1})).await;
    };
    let commands = async {
        let err = client.system_reset().await.expect_err("refused");
        assert!(
            matches!(&err, QmpError::Command { class, .. } if class == "GenericError"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "QEMU refused system_reset: Guest is not running"
        );
        let err = client.query_status().await.expect_err("undecodable");
        assert!(
            err.to_string()
                .starts_with("Unexpected answer to query-status: invalid type"),
            "{err}"
        );
        let err = client.cont().await.expect_err("neither");
        assert!(
            err.to_string().contains("neither return nor error"),
            "{err}"
        );
    };
    tokio::join!(server, commands);
}

#[tokio::test]
async fn events_are_typed() {
    let (_client, mut events, mut fake) = connected().await;
    for line in [
        r#"{"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 0}}"#,
        r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
        r#"{"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}"#,
        r#"{"event": "RESUME"}"#,
        r#"{"event": "GUEST_PANICKED", "data": {"action": "pause"}}"#,
        r#"{"event": "RTC_CHANGE", "data": {"offset": 3}}"#,
    ] {
        fake.send(line).await;
    }
    let want = [
        Event::Powerdown,
        Event::Shutdown {
            guest: true,
            reason: "guest-shutdown".into(),
        },
        Event::Reset {
            guest: false,
            reason: "host-qmp-system-reset".into(),
        },
        Event::Resume,
        Event::GuestPanicked {
            action: "pause".into(),
        },
        Event::Other {
            name: "RTC_CHANGE".into(),
            data: json!({"offset": 3}),
        },
    ];
    for want in want {
        assert_eq!(next_event(&mut events).await, want);
    }
}

#[tokio::test]
async fn eof_means_the_guest_stopped() {
    let (client, mut events, mut fake) = connected().await;
    let server = async {
        assert_eq!(fake.recv().await["execute"], "system_powerdown");
        drop(fake);
    };
    let (result, ()) = tokio::join!(client.system_powerdown(), server);
    let err = result.expect_err("EOF while waiting");
    assert!(matches!(err, QmpError::Closed(CloseReason::Eof)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "The guest stopped (its QMP connection closed)"
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Closed(CloseReason::Eof)
    );
    let later = client.query_status().await.expect_err("closed");
    assert!(
        matches!(later, QmpError::Closed(CloseReason::Eof)),
        "{later:?}"
    );
}

#[tokio::test]
async fn a_reset_connection_is_eof_too() {
    let (client, mut events, fake) = connected().await;
    // the command reaches the fake's socket, which closes without reading it: a reset
    let server = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(fake);
    };
    let (result, ()) = tokio::join!(client.stop(), server);
    let err = result.expect_err("closed");
    assert!(matches!(err, QmpError::Closed(CloseReason::Eof)), "{err:?}");
    assert_eq!(
        next_event(&mut events).await,
        Event::Closed(CloseReason::Eof)
    );
}

#[tokio::test]
async fn quit_racing_eof_is_success() {
    let (client, _events, mut fake) = connected().await;
    let server = async {
        assert_eq!(fake.recv().await["execute"], "quit");
        drop(fake);
    };
    let (result, ()) = tokio::join!(client.quit(), server);
    result.expect("EOF after quit is what quit asks for");
}

#[tokio::test]
async fn an_endless_line_drops_the_connection() {
    let (client, mut events, mut fake) = connected().await;
    let server = async {
        assert_eq!(fake.recv().await["execute"], "query-status");
        let chunk = vec![b'x'; 64 * 1024];
        // a little over MAX_LINE, no newline; the client must give up, not buffer on
        for _ in 0..=(MAX_LINE / chunk.len()) {
            if fake.output.write_all(&chunk).await.is_err() {
                break;
            }
        }
        fake
    };
    let (result, _fake) = tokio::join!(client.query_status(), server);
    let err = result.expect_err("dropped");
    assert_eq!(
        err.to_string(),
        format!("The QMP connection was dropped: QEMU sent a line over {MAX_LINE} bytes")
    );
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed(CloseReason::Broken(_))
    ));
}

#[tokio::test]
async fn a_line_that_is_not_json_drops_the_connection() {
    let (client, _events, mut fake) = connected().await;
    let server = async {
        fake.recv().await;
        fake.send("hello there").await;
        fake
    };
    let (result, _fake) = tokio::join!(client.stop(), server);
    let err = result.expect_err("dropped").to_string();
    assert_eq!(
        err,
        "The QMP connection was dropped: QEMU sent what is not a JSON object: \"hello there\""
    );
}

#[tokio::test]
async fn bad_greetings_are_refused() {
    for (line, want) in [
        (Some("{\"hello\": 1}"), "no \"QMP\" member"),
        (Some("garbage"), "not JSON"),
        (Some(r#"{"QMP": {"version": {}}}"#), "no version"),
        (None, "QEMU closed the socket first"),
    ] {
        let (stream, mut fake) = pair();
        if let Some(line) = line {
            fake.send(line).await;
        }
        drop(fake);
        let err = QmpClient::handshake(stream)
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("QEMU's QMP greeting is not valid: "),
            "{err}"
        );
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn connect_names_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("qmp.sock");
    let err = QmpClient::connect(&path).await.expect_err("no socket");
    assert_eq!(
        err.to_string(),
        format!("Cannot connect to the QMP socket {}", path.display())
    );
}
