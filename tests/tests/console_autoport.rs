//! Console autoport with many guests (real daemon, test driver): every guest of a full range
//! gets its own port, a port another process holds and one a definition asks for are left
//! alone, a full range is refused with the fix, and a port given back is found again after
//! the search wraps round. Costs are not timed here: `vmgated`'s allocator keeps a start's
//! work independent of the number of running guests, which its unit tests check by
//! counting binds.

use std::{collections::HashSet, net::TcpListener};

use vmgate_tests::{TestDaemon, vnc::display_port};

/// This file's autoport range (unique among the test files).
const MIN: u16 = 28_000;
const PORTS: u16 = 48;
const MAX: u16 = MIN + PORTS - 1;

/// A stdin script that defines and starts each guest of `names` with an autoport console.
fn define_and_start(d: &TestDaemon, names: &[String]) -> String {
    let mut script = String::new();
    for name in names {
        let text = format!("name = \"{name}\"\n[graphics]\ntype = \"vnc\"\n");
        let path = d.file(&format!("{name}.toml"), &text);
        script.push_str(&format!("define {}\nstart {name}\n", path.display()));
    }
    script
}

#[test]
fn many_guests_fill_the_range_and_wrap_round_to_ports_given_back() {
    // Another process's port in the range, and one a definition asks for.
    let other = TcpListener::bind(("127.0.0.1", MIN + 7)).expect("another process's port");
    let fixed_port = MIN + 20;
    let d = TestDaemon::start_with(&format!(
        "\n[vnc]\nremote_display_port_min = {MIN}\nremote_display_port_max = {MAX}\n"
    ));
    let fixed = d.file(
        "fixed.toml",
        &format!("name = \"fixed\"\n[graphics]\ntype = \"vnc\"\nport = {fixed_port}\n"),
    );
    let guests: Vec<String> = (0..PORTS - 2).map(|i| format!("g{i}")).collect();
    let (first, rest) = guests.split_at(20);
    let script = format!(
        "define {}\nstart fixed\n{}",
        fixed.display(),
        define_and_start(&d, first)
    );
    let out = d.vmgate_stdin(&[], Some(&script));
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log());
    assert_eq!(display_port(&d, "fixed"), fixed_port);
    assert_eq!(
        display_port(&d, "g0"),
        MIN,
        "the range's first port comes first"
    );

    // A port given back is not handed out again at once: the search walks on.
    let freed = display_port(&d, "g2");
    d.vmgate(&["destroy", "g2"]).ok();
    let out = d.vmgate_stdin(&[], Some(&define_and_start(&d, rest)));
    assert_eq!(out.code, 0, "{out:?}\n{}", d.log());
    assert_eq!(display_port(&d, "g20"), display_port(&d, "g19") + 1);

    let running: Vec<&String> = guests.iter().filter(|g| *g != "g2").collect();
    let ports: HashSet<u16> = running.iter().map(|g| display_port(&d, g)).collect();
    assert_eq!(ports.len(), running.len(), "one port each: {ports:?}");
    assert!(ports.iter().all(|p| (MIN..=MAX).contains(p)), "{ports:?}");
    assert!(!ports.contains(&(MIN + 7)) && !ports.contains(&fixed_port));

    // The last free port is found once the search wraps round.
    let late = define_and_start(&d, &["late".to_owned()]);
    d.vmgate_stdin(&[], Some(&late)).ok();
    assert_eq!(display_port(&d, "late"), freed);

    // Full: a start is refused, naming the range and the fix.
    let err = d.vmgate(&["start", "g2"]).err().to_owned();
    assert!(
        err.contains(&format!(
            "no free port on 127.0.0.1 between {MIN} and {MAX}"
        )) && err.contains("remote_display_port_min/_max"),
        "{err}"
    );
    // Until the other process lets its port go.
    drop(other);
    d.vmgate(&["start", "g2"]).ok();
    assert_eq!(display_port(&d, "g2"), MIN + 7);
}
