//! Domain definitions and the lifecycle through the real CLI and daemon (test driver):
//! every virsh-like command, addressing by name, UUID and id, and the wrong-state errors.

use vmgate_tests::TestDaemon;

const ALPHA: &str = "name = \"alpha\"\nmemory_mib = 256\nvcpus = 2\n";

fn define(d: &TestDaemon, name: &str, text: &str) -> String {
    let path = d.file(&format!("{name}.toml"), text);
    d.vmgate(&["define", path.to_str().expect("utf-8 path")])
        .ok()
        .to_owned()
}

/// The state column of `name`'s row in `list --all`.
fn listed_state(d: &TestDaemon, name: &str) -> String {
    let out = d.vmgate(&["list", "--all"]);
    let row = out
        .ok()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", out.stdout));
    row.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn define_start_and_walk_the_state_machine() {
    let d = TestDaemon::start();
    let out = define(&d, "alpha", ALPHA);
    assert!(out.contains("Domain 'alpha' defined from"), "{out}");
    assert_eq!(listed_state(&d, "alpha"), "shut off");
    assert_eq!(
        d.vmgate(&["list"])
            .ok()
            .lines()
            .filter(|l| l.contains("alpha"))
            .count(),
        0
    );

    assert!(
        d.vmgate(&["start", "alpha"])
            .ok()
            .contains("Domain 'alpha' started")
    );
    assert_eq!(d.vmgate(&["domstate", "alpha"]).ok().trim(), "running");
    let list = d.vmgate(&["list"]).ok().to_owned();
    let row = list
        .lines()
        .find(|l| l.contains("alpha"))
        .expect("running guest listed");
    assert_eq!(row.split_whitespace().next(), Some("1"), "{list}");
    assert!(
        list.lines()
            .next()
            .is_some_and(|h| h.split_whitespace().eq(["Id", "Name", "State"]))
    );

    assert!(d.vmgate(&["suspend", "alpha"]).ok().contains("suspended"));
    assert_eq!(d.vmgate(&["domstate", "alpha"]).ok().trim(), "paused");
    let err = d.vmgate(&["suspend", "alpha"]).err().to_owned();
    assert!(err.contains("paused"), "{err}");
    assert!(d.vmgate(&["reset", "alpha"]).ok().contains("was reset"));
    assert_eq!(
        d.vmgate(&["domstate", "alpha"]).ok().trim(),
        "paused",
        "reset keeps pause"
    );
    assert!(d.vmgate(&["resume", "alpha"]).ok().contains("resumed"));
    assert!(
        d.vmgate(&["reboot", "alpha"])
            .ok()
            .contains("is being rebooted")
    );
    assert_eq!(d.vmgate(&["domstate", "alpha"]).ok().trim(), "running");

    let err = d.vmgate(&["undefine", "alpha"]).err().to_owned();
    assert!(
        err.contains("running") && err.contains("stop it first"),
        "{err}"
    );
    let err = d.vmgate(&["start", "alpha"]).err().to_owned();
    assert!(err.contains("already active"), "{err}");

    assert!(
        d.vmgate(&["shutdown", "alpha"])
            .ok()
            .contains("is being shutdown")
    );
    assert_eq!(d.vmgate(&["domstate", "alpha"]).ok().trim(), "shut off");
    let reason = d.vmgate(&["domstate", "alpha", "--reason"]).ok().to_owned();
    assert!(reason.contains("shutdown"), "{reason}");
    for op in [
        "shutdown", "destroy", "suspend", "resume", "reboot", "reset",
    ] {
        let err = d.vmgate(&[op, "alpha"]).err().to_owned();
        assert!(err.contains("shut off"), "{op}: {err}");
    }

    d.vmgate(&["start", "alpha"]).ok();
    assert!(d.vmgate(&["destroy", "alpha"]).ok().contains("destroyed"));
    assert_eq!(listed_state(&d, "alpha"), "shut off");
    assert!(
        d.vmgate(&["undefine", "alpha"])
            .ok()
            .contains("has been undefined")
    );
    let err = d.vmgate(&["domstate", "alpha"]).err().to_owned();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn ids_grow_with_each_start_and_address_running_guests() {
    let d = TestDaemon::start();
    define(&d, "a", "name = \"a\"\n");
    define(&d, "b", "name = \"b\"\n");
    d.vmgate(&["start", "a"]).ok();
    d.vmgate(&["destroy", "a"]).ok();
    d.vmgate(&["start", "b"]).ok();
    d.vmgate(&["start", "a"]).ok();
    let list = d.vmgate(&["list"]).ok().to_owned();
    let ids: Vec<(String, String)> = list
        .lines()
        .skip(2)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some((cols.next()?.to_owned(), cols.next()?.to_owned()))
        })
        .collect();
    assert_eq!(
        ids,
        vec![("2".into(), "b".into()), ("3".into(), "a".into())],
        "{list}"
    );
    assert_eq!(d.vmgate(&["domname", "3"]).ok().trim(), "a");
}

#[test]
fn uuid_addresses_every_command_and_info_shows_the_definition() {
    let d = TestDaemon::start();
    define(&d, "alpha", ALPHA);
    let uuid = d.vmgate(&["domuuid", "alpha"]).ok().trim().to_owned();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(d.vmgate(&["domname", &uuid]).ok().trim(), "alpha");
    d.vmgate(&["start", &uuid]).ok();
    let info = d.vmgate(&["dominfo", &uuid]).ok().to_owned();
    for (label, value) in [
        ("Name:", "alpha"),
        ("UUID:", uuid.as_str()),
        ("State:", "running"),
        ("CPU(s):", "2"),
        ("Max memory:", "262144 KiB"),
        ("Autostart:", "disable"),
    ] {
        let line = info
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{info}"));
        assert!(line.ends_with(value), "{label} {value}: {info}");
    }
    let json: serde_json::Value =
        serde_json::from_str(d.vmgate(&["list", "--all", "--json"]).ok()).expect("json");
    let first = &json[0];
    assert_eq!(first["name"], "alpha");
    assert_eq!(first["uuid"], uuid.as_str());
    assert_eq!(first["state"], "running");
    assert_eq!(first["id"], 1);
    assert_eq!(first["autostart"], false);
}

#[test]
fn redefining_needs_the_uuid_and_never_renames() {
    let d = TestDaemon::start();
    define(&d, "alpha", ALPHA);
    let uuid = d.vmgate(&["domuuid", "alpha"]).ok().trim().to_owned();

    let path = d.file("again.toml", ALPHA);
    let err = d
        .vmgate(&["define", path.to_str().expect("path")])
        .err()
        .to_owned();
    assert!(
        err.contains("already exists") && err.contains(&uuid),
        "{err}"
    );

    let update = format!("name = \"alpha\"\nuuid = \"{uuid}\"\nmemory_mib = 512\n");
    define(&d, "update", &update);
    let info = d.vmgate(&["dominfo", "alpha"]).ok().to_owned();
    assert!(info.contains("524288 KiB"), "update applied: {info}");

    let rename = format!("name = \"beta\"\nuuid = \"{uuid}\"\n");
    let path = d.file("rename.toml", &rename);
    let err = d
        .vmgate(&["define", path.to_str().expect("path")])
        .err()
        .to_owned();
    assert!(err.contains(&uuid) && err.contains("alpha"), "{err}");
    assert_eq!(
        d.vmgate(&["list", "--all"]).ok().lines().count(),
        3,
        "no beta was created"
    );
}

#[test]
fn a_running_guest_keeps_its_definition_until_restarted() {
    let d = TestDaemon::start();
    define(&d, "alpha", ALPHA);
    let uuid = d.vmgate(&["domuuid", "alpha"]).ok().trim().to_owned();
    d.vmgate(&["start", "alpha"]).ok();
    define(
        &d,
        "upd",
        &format!("name = \"alpha\"\nuuid = \"{uuid}\"\nvcpus = 4\n"),
    );
    let cpus = |d: &TestDaemon| {
        d.vmgate(&["dominfo", "alpha"])
            .ok()
            .lines()
            .find(|l| l.starts_with("CPU(s):"))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
    };
    assert_eq!(cpus(&d).as_deref(), Some("2"));
    d.vmgate(&["destroy", "alpha"]).ok();
    d.vmgate(&["start", "alpha"]).ok();
    assert_eq!(cpus(&d).as_deref(), Some("4"));
}

#[test]
fn bad_definitions_are_refused_with_the_reason() {
    let d = TestDaemon::start();
    let cases: &[(&str, &str)] = &[
        ("name = \"bad/name\"\n", "name"),
        ("name = \".hidden\"\n", "name"),
        ("name = \"-dash\"\n", "name"),
        ("name = \"\"\n", "name"),
        (&format!("name = \"{}\"\n", "x".repeat(65)), "name"),
        ("name = \"ok\"\nvcpus = 0\n", "vcpus"),
        ("name = \"ok\"\nmemory = 5\n", "memory"),
        (
            "name = \"ok\"\n[graphics]\ntype = \"vnc\"\npasswd = \"123456789\"\n",
            "passwd",
        ),
        (
            "name = \"ok\"\n[graphics]\ntype = \"vnc\"\nport = 80\n",
            "port",
        ),
    ];
    for (text, field) in cases {
        let path = d.file("bad.toml", text);
        let err = d
            .vmgate(&["define", path.to_str().expect("path")])
            .err()
            .to_owned();
        assert!(err.contains(field), "{text:?} should name {field}: {err}");
    }
    let path = d.file("syntax.toml", "name = \"ok\"\nvcpus = = 2\n");
    let err = d
        .vmgate(&["define", path.to_str().expect("path")])
        .err()
        .to_owned();
    assert!(err.contains("syntax.toml:2:"), "line and column: {err}");
    let long = format!("name = \"{}\"\n", "n".repeat(64));
    let path = d.file("long.toml", &long);
    // 64 characters is a valid name, unless the derived socket path overflows: either it is
    // defined, or the error names the 108-byte limit.
    let out = d.vmgate(&["define", path.to_str().expect("path")]);
    assert!(out.code == 0 || out.stderr.contains("108"), "{out:?}");
    assert!(d.vmgate(&["list", "--all"]).ok().lines().count() <= 3);

    let err = d
        .vmgate(&["define", "/nonexistent/x.toml"])
        .err()
        .to_owned();
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
    let err = d.vmgate(&["start", "ghost"]).err().to_owned();
    assert!(err.contains("'ghost' not found"), "{err}");
}

#[test]
fn dumpconf_hides_secrets_unless_asked() {
    let d = TestDaemon::start();
    define(
        &d,
        "sec",
        "name = \"sec\"\n[graphics]\ntype = \"vnc\"\npasswd = \"s3cret\"\n",
    );
    let plain = d.vmgate(&["dumpconf", "sec"]).ok().to_owned();
    assert!(
        plain.contains("name = \"sec\"") && plain.contains("uuid = "),
        "{plain}"
    );
    assert!(!plain.contains("s3cret"), "{plain}");
    let secure = d
        .vmgate(&["dumpconf", "sec", "--security-info"])
        .ok()
        .to_owned();
    assert!(secure.contains("s3cret"), "{secure}");
    // What dumpconf prints defines the same domain again.
    let path = d.file("round.toml", &secure);
    d.vmgate(&["define", path.to_str().expect("path")]).ok();
}

#[test]
fn autostart_marks_and_unmarks() {
    let d = TestDaemon::start();
    define(&d, "alpha", ALPHA);
    assert!(
        d.vmgate(&["autostart", "alpha"])
            .ok()
            .contains("marked as autostarted")
    );
    let json: serde_json::Value =
        serde_json::from_str(d.vmgate(&["list", "--all", "--json"]).ok()).expect("json");
    assert_eq!(json[0]["autostart"], true);
    assert!(
        d.vmgate(&["autostart", "alpha", "--disable"])
            .ok()
            .contains("unmarked")
    );
}

#[test]
fn names_shaped_like_ids_or_uuids_are_refused_with_the_fix() {
    let d = TestDaemon::start();
    for (name, needle) in [
        (
            "7",
            "is all digits, which commands read as the id of a running domain",
        ),
        ("0042", "such as \"vm0042\""),
        (
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "has the form of a UUID, which commands read as a domain's UUID",
        ),
        ("3F2504E04F8911D39A0C0305E82C3301", "has the form of a UUID"),
    ] {
        let path = d.file("bad.toml", &format!("name = \"{name}\"\n"));
        let err = d
            .vmgate(&["define", path.to_str().expect("path")])
            .err()
            .to_owned();
        assert!(
            err.contains("bad.toml:1:1: name: ") && err.contains(needle),
            "{name}: {err}"
        );
    }
    assert_eq!(
        d.vmgate(&["list", "--all"]).ok().lines().count(),
        2,
        "nothing was defined"
    );
}

/// Stores domain `name` with `uuid` as a daemon from before the name rule did, while `d`
/// is stopped.
fn store_old_domain(d: &TestDaemon, name: &str, uuid: &str) {
    let url = format!(
        "sqlite://{}?mode=rwc",
        d.dir().join("state/vmgate.db").display()
    );
    let record = vmgated::store::DomainRecord {
        uuid: uuid.parse().expect("uuid"),
        name: name.to_owned(),
        definition: format!("name = \"{name}\"\nuuid = \"{uuid}\"\n"),
        autostart: false,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let store = vmgated::store::Store::open(&url).await.expect("store");
            store.upsert_domain(&record).await.expect("insert");
        });
}

/// The id column of `name`'s row in `list`.
fn listed_id(d: &TestDaemon, name: &str) -> String {
    let out = d.vmgate(&["list"]);
    let row = out
        .ok()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", out.stdout));
    row.split_whitespace().next().unwrap_or_default().to_owned()
}

#[test]
fn ids_then_uuids_then_names_and_old_lookalike_names_are_named_at_start() {
    let mut d = TestDaemon::start();
    define(&d, "alpha", ALPHA);
    let alpha = d.vmgate(&["domuuid", "alpha"]).ok().trim().to_owned();
    assert!(d.stop());
    // Defined before such names were refused: one named like the id alpha gets below, one
    // named like alpha's UUID.
    let digits = "5b0d1c2e-0000-4000-8000-000000000001".to_owned();
    let lookalike = "5b0d1c2e-0000-4000-8000-000000000002".to_owned();
    store_old_domain(&d, "1", &digits);
    store_old_domain(&d, &alpha, &lookalike);
    d.restart();
    let log = d.log();
    for (name, uuid) in [("1", &digits), (alpha.as_str(), &lookalike)] {
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains(&format!("Domain '{name}': the name"))
                && l.contains(&format!("vmgate dumpconf --security-info {uuid}"))),
            "no warning naming {name}:\n{log}"
        );
    }
    assert!(!log.contains("Domain 'alpha': the name"), "{log}");

    d.vmgate(&["start", "alpha"]).ok();
    assert_eq!(listed_id(&d, "alpha"), "1");
    // The id and the UUID reach alpha, not the domains named like them.
    assert_eq!(d.vmgate(&["domname", "1"]).ok().trim(), "alpha");
    assert_eq!(d.vmgate(&["domname", &alpha]).ok().trim(), "alpha");
    assert!(d.vmgate(&["destroy", &alpha]).ok().contains("'alpha'"));
    // With no guest running as id 1, the name is next; a UUID always reaches its domain.
    assert_eq!(d.vmgate(&["domname", "1"]).ok().trim(), "1");
    assert_eq!(d.vmgate(&["domname", &digits]).ok().trim(), "1");
    assert_eq!(d.vmgate(&["domname", &lookalike]).ok().trim(), alpha);
    // It still works until renamed.
    d.vmgate(&["start", &digits]).ok();
    d.vmgate(&["destroy", &digits]).ok();

    // The fix the warning gives: dumpconf by UUID, a new name, define.
    let text = d
        .vmgate(&["dumpconf", "--security-info", &lookalike])
        .ok()
        .replace(&format!("name = \"{alpha}\""), "name = \"renamed\"");
    define(&d, "renamed", &text);
    assert_eq!(d.vmgate(&["domname", &lookalike]).ok().trim(), "renamed");
    assert_eq!(d.vmgate(&["domuuid", "renamed"]).ok().trim(), lookalike);
    assert_eq!(listed_state(&d, "renamed"), "shut off");
    // Ordinary domains still cannot be renamed by a definition.
    let text = format!("name = \"beta\"\nuuid = \"{alpha}\"\n");
    let path = d.file("beta.toml", &text);
    let err = d
        .vmgate(&["define", path.to_str().expect("path")])
        .err()
        .to_owned();
    assert!(err.contains("cannot rename"), "{err}");
}
