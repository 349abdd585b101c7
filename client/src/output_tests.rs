//! Tests of `output`: table widths, `-` ids, the dominfo layout, event lines, and the JSON
//! field names.

use super::*;
use vmgate_proto::v1::Display;

fn summary(id: u32, name: &str, state: DomainState) -> DomainSummary {
    DomainSummary {
        id,
        name: name.to_owned(),
        uuid: format!("00000000-0000-4000-8000-00000000000{id}"),
        state: state.into(),
        autostart: id == 1,
    }
}

#[test]
fn list_table_as_virsh_prints_it() {
    let domains = [
        summary(1, "alpha", DomainState::Running),
        summary(0, "beta", DomainState::ShutOff),
    ];
    assert_eq!(
        list_table(&domains),
        " Id   Name    State\n\
         ------------------------\n \
         1    alpha   running\n \
         -    beta    shut off\n"
    );
}

#[test]
fn table_dashes_are_each_width_plus_three() {
    // virsh -c test:///default list: widths 2, 4, 7.
    let domains = [summary(1, "test", DomainState::Running)];
    assert_eq!(
        list_table(&domains),
        " Id   Name   State\n----------------------\n 1    test   running\n"
    );
}

#[test]
fn empty_list_has_header_and_dashes() {
    assert_eq!(
        list_table(&[]),
        " Id   Name   State\n--------------------\n"
    );
}

#[test]
fn wide_ids_and_names_widen_their_columns() {
    let domains = [
        summary(0, "a", DomainState::ShutOff),
        DomainSummary {
            id: 12345,
            ..summary(2, "a-much-longer-name", DomainState::Paused)
        },
    ];
    let text = list_table(&domains);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], " Id      Name                 State");
    assert_eq!(lines[2], " -       a                    shut off");
    assert_eq!(lines[3], " 12345   a-much-longer-name   paused");
    assert_eq!(lines[1].len(), (5 + 3) + (18 + 3) + (8 + 3));
}

#[test]
fn control_characters_are_escaped() {
    let domains = [summary(0, "evil\x1b[2J", DomainState::ShutOff)];
    assert!(list_table(&domains).contains(r"evil\x1b[2J"));
}

#[test]
fn non_ascii_names_align_by_characters() {
    let text = format_table(&["A", "B"], &[vec!["é".into(), "x".into()]]);
    assert_eq!(text, " A   B\n--------\n é   x\n");
}

#[test]
fn state_names() {
    assert_eq!(state_name(DomainState::Running), "running");
    assert_eq!(state_name(DomainState::ShutOff), "shut off");
    assert_eq!(state_name(DomainState::Paused), "paused");
}

#[test]
fn list_json_fields() {
    let domains = [
        summary(1, "alpha", DomainState::Running),
        summary(0, "beta", DomainState::ShutOff),
    ];
    let value: serde_json::Value =
        serde_json::from_str(&list_json(&domains).expect("json")).expect("parses");
    assert_eq!(
        value,
        serde_json::json!([
            {"id": 1, "name": "alpha", "uuid": "00000000-0000-4000-8000-000000000001",
             "state": "running", "autostart": true},
            {"id": null, "name": "beta", "uuid": "00000000-0000-4000-8000-000000000000",
             "state": "shut off", "autostart": false},
        ])
    );
}

fn info(id: u32, display: Option<Display>) -> DomainInfo {
    DomainInfo {
        summary: Some(summary(id, "alpha", DomainState::Running)),
        memory_mib: 128,
        vcpus: 2,
        cpu_time_ns: 1_250_000_000,
        state_reason: "booted".to_owned(),
        display,
    }
}

fn vnc(host: &str, port: u32) -> Display {
    Display {
        kind: "vnc".into(),
        host: host.into(),
        port,
        socket_path: String::new(),
    }
}

#[test]
fn dominfo_layout() {
    assert_eq!(
        dominfo_text(&info(1, Some(vnc("127.0.0.1", 5901)))).expect("summary"),
        "Id:             1\n\
         Name:           alpha\n\
         UUID:           00000000-0000-4000-8000-000000000001\n\
         State:          running\n\
         CPU(s):         2\n\
         CPU time:       1.2s\n\
         Max memory:     131072 KiB\n\
         Used memory:    131072 KiB\n\
         Persistent:     yes\n\
         Autostart:      enable\n\
         Graphics:       vnc://127.0.0.1:1\n"
    );
}

#[test]
fn dominfo_of_a_stopped_domain() {
    let mut i = info(0, None);
    i.cpu_time_ns = 0;
    let text = dominfo_text(&i).expect("summary");
    assert!(text.starts_with("Id:             -\n"), "{text}");
    assert!(text.contains("CPU time:       0.0s\n"), "{text}");
    assert!(text.ends_with("Graphics:       -\n"), "{text}");
}

#[test]
fn dominfo_needs_a_summary() {
    let i = DomainInfo {
        summary: None,
        ..info(1, None)
    };
    assert_eq!(dominfo_text(&i), Err(MissingSummary));
}

#[test]
fn graphics_addresses() {
    assert_eq!(graphics_uri(&vnc("127.0.0.1", 5900)), "vnc://127.0.0.1:0");
    assert_eq!(graphics_uri(&vnc("0.0.0.0", 5902)), "vnc://localhost:2");
    assert_eq!(graphics_uri(&vnc("::1", 5903)), "vnc://[::1]:3");
    assert_eq!(graphics_uri(&vnc("h", 5000)), "vnc://h::5000");
    let spice = Display {
        kind: "spice".into(),
        ..vnc("h", 5930)
    };
    assert_eq!(graphics_uri(&spice), "spice://h:5930");
    let unix = Display {
        kind: "vnc".into(),
        host: String::new(),
        port: 0,
        socket_path: "/run/vmgate/vnc/alpha.sock".into(),
    };
    assert_eq!(graphics_uri(&unix), "vnc+unix:///run/vmgate/vnc/alpha.sock");
}

#[test]
fn dominfo_json_fields() {
    let json = DomInfoJson::try_from(&info(1, Some(vnc("127.0.0.1", 5901)))).expect("summary");
    let value = serde_json::to_value(&json).expect("json");
    assert_eq!(
        value,
        serde_json::json!({
            "id": 1,
            "name": "alpha",
            "uuid": "00000000-0000-4000-8000-000000000001",
            "state": "running",
            "state_reason": "booted",
            "vcpus": 2,
            "cpu_time_ns": 1_250_000_000u64,
            "max_memory_kib": 131072,
            "used_memory_kib": 131072,
            "persistent": true,
            "autostart": true,
            "graphics": {
                "type": "vnc",
                "host": "127.0.0.1",
                "port": 5901,
                "socket": null,
                "uri": "vnc://127.0.0.1:1",
            },
        })
    );
    let json = DomInfoJson::try_from(&info(0, None)).expect("summary");
    let value = serde_json::to_value(&json).expect("json");
    assert_eq!(value["id"], serde_json::Value::Null);
    assert_eq!(value["graphics"], serde_json::Value::Null);
}

#[test]
fn domstate_with_and_without_reason() {
    let i = info(1, None);
    assert_eq!(domstate_text(&i, false).expect("summary"), "running\n");
    assert_eq!(
        domstate_text(&i, true).expect("summary"),
        "running (booted)\n"
    );
    let i = DomainInfo {
        state_reason: String::new(),
        ..i
    };
    assert_eq!(
        domstate_text(&i, true).expect("summary"),
        "running (unknown)\n"
    );
}

fn event(family: &str, event: &str, detail: &str) -> DomainEvent {
    DomainEvent {
        time_ms: 1_738_346_400_250,
        domain: "alpha".to_owned(),
        uuid: "00000000-0000-4000-8000-000000000001".to_owned(),
        family: family.to_owned(),
        event: event.to_owned(),
        detail: detail.to_owned(),
        lost: 0,
    }
}

#[test]
fn event_lines_as_virsh_prints_them() {
    assert_eq!(
        event_line(&event("lifecycle", "Started", "Booted"), false),
        "event 'lifecycle' for domain 'alpha': Started Booted\n"
    );
    assert_eq!(
        event_line(&event("lifecycle", "Stopped", "Destroyed"), false),
        "event 'lifecycle' for domain 'alpha': Stopped Destroyed\n"
    );
    assert_eq!(
        event_line(&event("reboot", "Reboot", ""), false),
        "event 'reboot' for domain 'alpha'\n"
    );
    assert_eq!(
        event_line(&event("reset", "Reset", ""), false),
        "event 'reset' for domain 'alpha'\n"
    );
    assert_eq!(
        event_line(&event("lifecycle", "Defined", ""), false),
        "event 'lifecycle' for domain 'alpha': Defined\n",
        "no trailing space without a detail"
    );
}

#[test]
fn event_lines_with_virsh_timestamps() {
    assert_eq!(
        event_line(&event("lifecycle", "Suspended", "Paused"), true),
        "2025-01-31 18:00:00.250+0000: event 'lifecycle' for domain 'alpha': Suspended Paused\n"
    );
}

#[test]
fn event_lines_escape_control_characters() {
    let mut e = event("lifecycle", "Stopped", "Crashed\x1b[2J");
    e.domain = "evil\n".to_owned();
    assert_eq!(
        event_line(&e, false),
        "event 'lifecycle' for domain 'evil\\x0a': Stopped Crashed\\x1b[2J\n"
    );
}

#[test]
fn event_json_is_one_line_with_stable_fields() {
    let text = event_json(&event("lifecycle", "Resumed", "Unpaused")).expect("json");
    assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
    assert_eq!(
        value,
        serde_json::json!({
            "time": "2025-01-31T18:00:00.250Z",
            "time_ms": 1_738_346_400_250i64,
            "domain": "alpha",
            "uuid": "00000000-0000-4000-8000-000000000001",
            "family": "lifecycle",
            "event": "Resumed",
            "detail": "Unpaused",
            "lost": 0,
        })
    );
}

#[test]
fn lost_events_in_json_and_text() {
    let note = DomainEvent {
        time_ms: 0,
        family: LOST_FAMILY.to_owned(),
        lost: 7,
        ..DomainEvent::default()
    };
    let value: serde_json::Value =
        serde_json::from_str(&event_json(&note).expect("json")).expect("parses");
    assert_eq!(value["family"], "lost");
    assert_eq!(value["lost"], 7);
    assert_eq!(value["domain"], "");
    assert_eq!(
        events_lost_text(7),
        "7 events were lost: this listener fell behind the daemon"
    );
}
