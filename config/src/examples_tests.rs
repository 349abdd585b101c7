//! Tests of the example configs shipped in `config/`: both must parse and validate, and
//! `vmgated.toml` must document every key with its true default.

use std::path::{Path, PathBuf};

use crate::{Config, DriverKind, Supported, load, parse_str, validate};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(example(name)).expect("example config is readable")
}

/// Every key of `section`, read from serde's "expected one of" list for an unknown key.
fn keys_of(section: &str) -> Vec<String> {
    let probe = format!("[{section}]\nzz_probe = 1\n");
    let err = toml::from_str::<Config>(&probe).expect_err("unknown key");
    err.message()
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| *k != "zz_probe")
        .map(str::to_string)
        .collect()
}

/// The text with `#key = value` lines (the documented defaults) uncommented; with
/// `examples`, the `#   e.g. key = value` lines too.
fn uncomment(text: &str, examples: bool) -> String {
    text.lines()
        .map(|line| {
            let default = line
                .strip_prefix('#')
                .filter(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()));
            let example = line.strip_prefix("#   e.g. ").filter(|_| examples);
            default.or(example).unwrap_or(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn vmgated_toml_parses_and_validates() {
    let loaded = load(&example("vmgated.toml")).expect("vmgated.toml parses");
    assert_eq!(
        loaded.config,
        Config::default(),
        "everything is commented out"
    );
    assert!(loaded.warnings.is_empty());
    let report = validate(&loaded.config, &Supported::all());
    assert!(report.is_ok(), "{:#?}", report.errors);
    // the only acceptable warning is QEMU missing from this machine
    for w in &report.warnings {
        assert_eq!(w.key, "qemu.emulator", "{w}");
    }
}

#[test]
fn vmgated_toml_shows_the_true_defaults() {
    let text = uncomment(&read("vmgated.toml"), false);
    let set = text
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'))
        .count();
    assert!(set >= 40, "only {set} defaults were uncommented");
    let config = parse_str(&text, &example("vmgated.toml"))
        .expect("uncommented defaults parse")
        .config;
    assert_eq!(config, Config::default());
}

#[test]
fn vmgated_toml_examples_parse() {
    let text = uncomment(&read("vmgated.toml"), true);
    let config = parse_str(&text, &example("vmgated.toml"))
        .expect("uncommented examples parse")
        .config;
    assert_eq!(config.daemon.unix_sock_group.as_deref(), Some("vmgate"));
    assert!(config.vnc.vnc_password.is_some());
}

#[test]
fn vmgated_toml_documents_every_key() {
    let text = read("vmgated.toml");
    let err = toml::from_str::<Config>("zz_probe = 1").expect_err("unknown section");
    let sections: Vec<&str> = err
        .message()
        .split('`')
        .skip(1)
        .step_by(2)
        .skip(1)
        .collect();
    assert_eq!(sections, ["daemon", "storage", "vnc", "qemu"]);
    for section in sections {
        assert!(
            text.contains(&format!("\n[{section}]\n")),
            "[{section}] header missing"
        );
        let keys = keys_of(section);
        assert!(!keys.is_empty());
        for key in keys {
            let documented = text.contains(&format!("\n#{key} = "))
                || text.contains(&format!("\n#   e.g. {key} = "));
            assert!(
                documented,
                "[{section}] {key} is not documented in vmgated.toml"
            );
        }
    }
}

#[test]
fn local_toml_runs_without_root() {
    let loaded = load(&example("local.toml")).expect("local.toml parses");
    let c = &loaded.config;
    let dir = example("");
    assert_eq!(c.daemon.driver, DriverKind::Test);
    assert_eq!(c.daemon.state_dir, dir.join("../.state"));
    assert_eq!(c.daemon.unix_sock_dir, dir.join("../.state/run"));
    assert_eq!(c.daemon.unix_sock_rw_perms.bits(), 0o700);
    assert_eq!(c.vnc.vnc_listen, "127.0.0.1");
    assert!(
        c.storage
            .effective_database_url(&c.daemon.state_dir)
            .ends_with("/config/../.state/vmgate.db?mode=rwc")
    );
    let report = validate(c, &Supported::all());
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
    // the test driver alone is enough
    let minimal = Supported {
        test_driver: true,
        ..Supported::none()
    };
    let report = validate(c, &minimal);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}
