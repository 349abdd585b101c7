//! Tests of domain definitions: parsing with line:column errors, every rule (names,
//! ranges, console), the socket path limit, canonical TOML output and secret handling.

use std::path::PathBuf;

use time::macros::datetime;
use uuid::Uuid;

use super::*;
use crate::Secret;

/// Parses `text` as `guest.toml`; also used by `device_tests`.
pub(super) fn parse(text: &str) -> DomainDef {
    DomainDef::parse(text, "guest.toml").expect("definition parses")
}

/// The error `text` is refused with, as users read it.
pub(super) fn parse_err(text: &str) -> String {
    DomainDef::parse(text, "guest.toml")
        .expect_err("definition must be refused")
        .to_string()
}

fn with_graphics(g: Graphics) -> DomainDef {
    DomainDef {
        graphics: Some(g),
        ..DomainDef::new_minimal("web1")
    }
}

fn errors_of(def: &DomainDef) -> Vec<String> {
    match def.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.field_errors().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_name_is_enough() {
    let def = parse("name = \"web1\"\n");
    assert_eq!(def, DomainDef::new_minimal("web1"));
    assert_eq!(
        (def.memory_mib, def.vcpus, def.uuid, def.graphics),
        (128, 1, None, None)
    );
}

#[test]
fn a_full_definition() {
    let def = parse(
        r#"
name = "web1"
uuid = "6f1f1c8e-2f5b-4d7a-9a43-1c6e4c1e2b3a"
memory_mib = 2048
vcpus = 4

[graphics]
type = "vnc"
listen = "::1"
port = 5901
autoport = 0
passwd = "s3cret"
passwd_valid_to = "2030-01-31T18:00:00+01:00"
connected = "keep"
share_policy = "force-shared"
"#,
    );
    assert_eq!(
        def.uuid,
        "6f1f1c8e-2f5b-4d7a-9a43-1c6e4c1e2b3a".parse().ok()
    );
    assert_eq!((def.memory_mib, def.vcpus), (2048, 4));
    let g = def.graphics.expect("graphics");
    assert_eq!(g.r#type, GraphicsType::Vnc);
    assert_eq!(g.listen.as_deref(), Some("::1"));
    assert_eq!(
        (g.port, g.autoport, g.effective_autoport()),
        (Some(5901), Some(false), false)
    );
    assert_eq!(g.passwd.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(g.passwd_valid_to, Some(datetime!(2030-01-31 17:00:00 UTC)));
    assert_eq!(g.connected, ConnectedPolicy::Keep);
    assert_eq!(g.share_policy, SharePolicy::ForceShared);
}

#[test]
fn graphics_defaults() {
    let g = parse("name = \"a\"\n[graphics]\ntype = \"vnc\"\n")
        .graphics
        .expect("graphics");
    assert_eq!(g, Graphics::vnc());
    assert_eq!(g.connected, ConnectedPolicy::Disconnect);
    assert_eq!(g.share_policy, SharePolicy::AllowExclusive);
    assert!(g.effective_autoport(), "no port means autoport");
    let fixed = Graphics {
        port: Some(5905),
        ..Graphics::vnc()
    };
    assert!(!fixed.effective_autoport());
    let err = parse_err("name = \"a\"\n[graphics]\nport = 5901\n");
    assert_eq!(err, "guest.toml:2:1: missing key `type` in [graphics]");
    let err = parse_err("name = \"a\"\n[graphics]\ntype = \"spice\"\n");
    assert_eq!(
        err,
        "guest.toml:3:8: key `type` in [graphics]: unknown value `spice`, expected `vnc`"
    );
}

#[test]
fn passwd_valid_to_takes_strings_and_toml_datetimes_with_offsets() {
    let at = |v: &str| {
        parse(&format!(
            "name = \"a\"\n[graphics]\ntype = \"vnc\"\npasswd_valid_to = {v}\n"
        ))
        .graphics
        .and_then(|g| g.passwd_valid_to)
    };
    let want = Some(datetime!(2030-01-31 18:00:00 UTC));
    assert_eq!(at("2030-01-31T18:00:00Z"), want);
    assert_eq!(at("2030-01-31 18:00:00Z"), want);
    assert_eq!(at("\"2030-01-31T18:00:00Z\""), want);
    assert_eq!(at("\"2030-01-31 19:30:00+01:30\""), want);
    let err = parse_err(
        "name = \"a\"\n[graphics]\ntype = \"vnc\"\npasswd_valid_to = 2030-01-31T18:00:00\n",
    );
    assert!(
        err.starts_with("guest.toml:4:19: key `passwd_valid_to` in [graphics]: "),
        "{err}"
    );
    assert!(err.contains("has no date, time or UTC offset"), "{err}");
    let err =
        parse_err("name = \"a\"\n[graphics]\ntype = \"vnc\"\npasswd_valid_to = \"tomorrow\"\n");
    assert!(
        err.contains("\"tomorrow\" is not an RFC 3339 date and time"),
        "{err}"
    );
    let err = parse_err("name = \"a\"\n[graphics]\ntype = \"vnc\"\npasswd_valid_to = 5\n");
    assert!(err.contains("found integer"), "{err}");
}

#[test]
fn syntax_and_type_errors_show_line_and_column() {
    let err = parse_err("name = \"web1\"\nmemory_mib = \"lots\"\n");
    assert_eq!(
        err,
        "guest.toml:2:14: key `memory_mib`: expected an integer from 0 to 18446744073709551615, \
         found string \"lots\""
    );
    let err = parse_err("name = \"web1\"\nvcpus = -1\n");
    assert!(
        err.starts_with("guest.toml:2:9: key `vcpus`: expected an integer from 0 to"),
        "{err}"
    );
    let err = parse_err("name = \"web1\"\n[graphics]\ntype = \"vnc\"\nprot = 5901\n");
    assert_eq!(
        err,
        "guest.toml:4:1: unknown key `prot` in [graphics]; did you mean `port`?"
    );
    let err = parse_err("nmae = \"web1\"\n");
    assert_eq!(
        err,
        "guest.toml:1:1: unknown key `nmae` at the top level; did you mean `name`?"
    );
    let err = parse_err("memory_mib = 64\n");
    assert!(
        err.starts_with("guest.toml:") && err.contains("missing key `name`"),
        "{err}"
    );
    let err = parse_err("name = \"web1\nvcpus = 2\n");
    assert!(err.starts_with("guest.toml:1:"), "{err}");
    assert!(err.lines().all(|l| l.starts_with("guest.toml:")), "{err}");
    let err = parse_err("name = \"a\"\nuuid = \"not-a-uuid\"\n");
    assert!(err.starts_with("guest.toml:2:8: key `uuid`: "), "{err}");
}

#[test]
fn every_rule_violation_is_reported_with_its_field_and_line() {
    let err = parse_err(
        "name = \".hidden\"\nmemory_mib = 0\nvcpus = 256\n[graphics]\ntype = \"vnc\"\n\
         port = 5800\npasswd = \"123456789\"\nlisten = \"localhost\"\n",
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert!(
        lines[0].starts_with("guest.toml:1:1: name: \".hidden\" starts with '.'"),
        "{err}"
    );
    assert!(
        lines[1]
            .starts_with("guest.toml:2:1: memory_mib: 0 is out of range; give 1 to 1048576 MiB"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("guest.toml:3:1: vcpus: 256 is out of range; give 1 to 255"),
        "{err}"
    );
    assert!(
        lines[3].starts_with("guest.toml:6:1: graphics.port: 5800 is below 5900"),
        "{err}"
    );
    assert!(
        lines[4].starts_with("guest.toml:7:1: graphics.passwd: is 9 bytes long"),
        "{err}"
    );
    assert!(
        lines[5].starts_with("guest.toml:8:1: graphics.listen: \"localhost\" is not an IP"),
        "{err}"
    );
}

#[test]
fn names() {
    let long_ok = "a".repeat(64);
    for good in [
        "a",
        "web1",
        "Web_1",
        "_x",
        "a.b-c",
        "9a",
        "vm-1",
        "x.",
        "0123456789abcdef0123456789abcde",
        "123e4567-e89b-12d3-a456-42661417400",
        long_ok.as_str(),
    ] {
        assert_eq!(
            errors_of(&DomainDef::new_minimal(good)),
            Vec::<String>::new(),
            "{good}"
        );
        assert!(DomainDef::check_name(good).is_ok());
    }
    let long_bad = "a".repeat(65);
    let cases = [
        ("", "name: is empty"),
        (long_bad.as_str(), "is 65 characters long; the limit is 64"),
        (".a", "starts with '.' or '-'"),
        ("-a", "starts with '.' or '-'"),
        ("a/b", "contains '/', which is not allowed"),
        ("a b", "contains ' '"),
        ("café", "contains 'é'"),
        ("a\nb", "\"a\\nb\" contains '\\n'"),
        ("..", "starts with '.'"),
        (
            "9",
            "\"9\" is all digits, which commands read as the id of a running domain",
        ),
        ("007", "such as \"vm007\""),
        (
            "123e4567-e89b-12d3-a456-426614174000",
            "has the form of a UUID, which commands read as a domain's UUID",
        ),
        ("123E4567E89B12D3A456426614174000", "has the form of a UUID"),
    ];
    for (bad, needle) in cases {
        let errors = errors_of(&DomainDef::new_minimal(bad));
        assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
        assert!(errors[0].contains(needle), "{bad:?}: {errors:?}");
        let alone = DomainDef::check_name(bad)
            .expect_err("bad name")
            .to_string();
        assert_eq!(alone, errors[0]);
    }
}

#[test]
fn stored_definitions_keep_names_shaped_like_ids_or_uuids() {
    for name in ["42", "123e4567-e89b-12d3-a456-426614174000"] {
        let text = format!("name = \"{name}\"\n");
        let err = DomainDef::parse(&text, "new.toml")
            .expect_err(name)
            .to_string();
        assert!(err.starts_with("new.toml:1:1: name: "), "{err}");
        let def = DomainDef::parse_stored(&text, "stored").expect(name);
        assert_eq!(def.name, name);
        assert!(
            def.validate().is_err() && def.validate_stored().is_ok(),
            "{name}"
        );
        assert!(DomainDef::reserved_name(name).is_some(), "{name}");
    }
    assert_eq!(DomainDef::reserved_name("web1"), None);
    // Only the new rule is relaxed.
    let err = DomainDef::parse_stored("name = \"a/b\"\n", "stored").expect_err("a/b");
    assert!(err.to_string().contains("contains '/'"), "{err}");
}

#[test]
fn memory_and_vcpu_ranges() {
    let mut def = DomainDef::new_minimal("a");
    def.memory_mib = MAX_MEMORY_MIB;
    def.vcpus = MAX_VCPUS;
    assert!(def.validate().is_ok());
    def.memory_mib = MAX_MEMORY_MIB + 1;
    def.vcpus = 0;
    let errors = errors_of(&def);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("memory_mib: 1048577 is out of range"));
    assert!(errors[1].starts_with("vcpus: 0 is out of range"));
}

#[test]
fn passwd_is_1_to_8_bytes() {
    let with = |p: &str| {
        with_graphics(Graphics {
            passwd: Some(Secret::new(p)),
            ..Graphics::vnc()
        })
    };
    assert!(with("12345678").validate().is_ok());
    assert!(with("éééé").validate().is_ok(), "4 characters, 8 bytes");
    let errors = errors_of(&with("123456789"));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("graphics.passwd: is 9 bytes long"),
        "{errors:?}"
    );
    assert!(
        !errors[0].contains("123456789"),
        "the password must not be shown"
    );
    assert!(errors_of(&with("ééééé"))[0].contains("is 10 bytes long"));
    assert!(errors_of(&with(""))[0].contains("graphics.passwd: is empty"));
}

#[test]
fn port_and_autoport() {
    let g = |port: Option<u16>, autoport: Option<bool>| {
        with_graphics(Graphics {
            port,
            autoport,
            ..Graphics::vnc()
        })
    };
    assert!(g(Some(5900), None).validate().is_ok());
    assert!(g(Some(65535), Some(false)).validate().is_ok());
    assert!(g(None, Some(true)).validate().is_ok());
    assert!(g(None, None).validate().is_ok());
    let errors = errors_of(&g(Some(5901), Some(true)));
    assert_eq!(
        errors,
        ["graphics.port: 5901 conflicts with autoport = true; remove port or autoport"]
    );
    assert!(errors_of(&g(Some(5899), None))[0].contains("5899 is below 5900"));
    assert!(
        errors_of(&g(None, Some(false)))[0].starts_with("graphics.autoport: is false but no port")
    );
}

#[test]
fn listen_must_be_an_ip_address() {
    let g = |listen: &str| {
        with_graphics(Graphics {
            listen: Some(listen.to_string()),
            ..Graphics::vnc()
        })
    };
    for good in ["127.0.0.1", "0.0.0.0", "::", "fe80::1"] {
        assert!(g(good).validate().is_ok(), "{good}");
    }
    for bad in ["localhost", "vm.example.com", "", "127.0.0.1:5900", "[::1]"] {
        let errors = errors_of(&g(bad));
        assert!(
            errors[0].contains("is not an IP address (hostnames are not accepted)"),
            "{bad}"
        );
    }
}

#[test]
fn socket_paths_are_limited_to_107_bytes() {
    let fits = PathBuf::from(format!("/{}", "s".repeat(106)));
    assert_eq!(fits.as_os_str().len(), 107);
    assert!(check_socket_path(&fits).is_ok());
    let long = PathBuf::from(format!("/{}", "s".repeat(107)));
    let err = check_socket_path(&long).expect_err("108 bytes");
    assert_eq!(
        err,
        DefinitionError::SocketPathTooLong {
            path: long.clone(),
            len: 108
        }
    );
    let text = err.to_string();
    assert!(text.contains(&long.display().to_string()), "{text}");
    assert!(
        text.contains("is 108 bytes long, over the limit of 107 bytes (108 with"),
        "{text}"
    );
    assert!(
        text.contains("shorter unix_sock_dir or guest name"),
        "{text}"
    );
}

fn full() -> DomainDef {
    DomainDef {
        memory_mib: 4096,
        vcpus: 2,
        graphics: Some(Graphics {
            listen: Some("0.0.0.0".into()),
            autoport: Some(false),
            port: Some(5907),
            passwd: Some(Secret::new("a\"b\\c")),
            passwd_valid_to: Some(datetime!(2031-05-06 07:08:09.5 -02:30)),
            connected: ConnectedPolicy::Fail,
            share_policy: SharePolicy::Ignore,
            ..Graphics::vnc()
        }),
        ..DomainDef::new_minimal("web1")
    }
    .with_uuid(Uuid::from_u128(0x6f1f1c8e_2f5b_4d7a_9a43_1c6e4c1e2b3a))
}

#[test]
fn to_toml_is_stable_and_round_trips() {
    let def = full();
    let text = def.to_toml(true);
    assert_eq!(
        text,
        "name = \"web1\"\n\
         uuid = \"6f1f1c8e-2f5b-4d7a-9a43-1c6e4c1e2b3a\"\n\
         machine = \"pc\"\n\
         memory_mib = 4096\n\
         vcpus = 2\n\
         \n\
         [graphics]\n\
         type = \"vnc\"\n\
         listen = \"0.0.0.0\"\n\
         autoport = false\n\
         port = 5907\n\
         passwd = \"a\\\"b\\\\c\"\n\
         passwd_valid_to = 2031-05-06T07:08:09.5-02:30\n\
         connected = \"fail\"\n\
         share_policy = \"ignore\"\n"
    );
    assert_eq!(DomainDef::parse(&text, "dump").expect("round trip"), def);
    let minimal = DomainDef::new_minimal("a");
    assert_eq!(
        minimal.to_toml(true),
        "name = \"a\"\nmachine = \"pc\"\nmemory_mib = 128\nvcpus = 1\n"
    );
    assert_eq!(
        DomainDef::parse(&minimal.to_toml(false), "dump").expect("parses"),
        minimal
    );
}

#[test]
fn to_toml_leaves_secrets_out_unless_asked() {
    let def = full();
    let text = def.to_toml(false);
    assert!(!text.contains("passwd ="), "{text}");
    assert!(!text.contains("a\"b"), "{text}");
    assert!(
        text.contains("passwd_valid_to = "),
        "expiry is not secret, as in libvirt"
    );
    let back = DomainDef::parse(&text, "dump").expect("parses without the password");
    let mut want = def.clone();
    if let Some(g) = &mut want.graphics {
        g.passwd = None;
    }
    assert_eq!(back, want);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let def = full();
    let debug = format!("{def:?}");
    assert!(debug.contains("passwd: Some(<redacted>)"), "{debug}");
    assert!(!debug.contains("a\"b"), "{debug}");
}
