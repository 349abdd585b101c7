//! Tests of the SASL and Kerberos rules: the mechanism lists of consoles and the API,
//! GSSAPI in builds without it, GSSAPI on plain TCP, keytab files, service names and local
//! realms, and which console mechanisms may go without TLS.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::tests::{assert_clean, assert_error, assert_warning, base, lines, run};
use super::*;
use crate::values::AuthKind;

const NO_GSSAPI: Supported = Supported {
    gssapi: false,
    ..Supported::all()
};

fn mechs(names: &[&str]) -> Vec<String> {
    names.iter().map(|m| m.to_string()).collect()
}

/// A keytab-like file with `mode`.
fn keytab(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, [0x05, 0x02]).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// API logins on the read-write socket with Kerberos only.
fn api_gssapi() -> Config {
    let mut c = base();
    c.daemon.auth_unix_rw = AuthKind::Sasl;
    c.daemon.sasl_mechanisms = mechs(&["GSSAPI"]);
    c
}

/// Console logins with Kerberos only, no TLS.
fn vnc_gssapi() -> Config {
    let mut c = base();
    c.vnc.vnc_sasl = true;
    c.vnc.vnc_sasl_mechanisms = mechs(&["GSSAPI"]);
    c
}

#[test]
fn api_mechanism_names_are_checked_like_the_consoles() {
    let key = "daemon.sasl_mechanisms";
    let mut c = base();
    c.daemon.sasl_mechanisms = mechs(&["SCRAM-SHA-256", "DIGEST-MD5"]);
    let r = run(&c);
    assert_error(&r, key, "\"DIGEST-MD5\" is not a known SASL mechanism");
    assert_error(&r, key, "use \"SCRAM-SHA-256\", \"PLAIN\", \"GSSAPI\"");
    c.daemon.sasl_mechanisms = mechs(&["gssapi"]);
    assert_error(
        &run(&c),
        key,
        "write \"GSSAPI\" (mechanism names are upper case)",
    );
    c.daemon.sasl_mechanisms = mechs(&["PLAIN", "SCRAM-SHA-256", "PLAIN"]);
    assert_warning(&run(&c), key, "lists \"PLAIN\" more than once");
    // the console list is judged by the same rules, under its own key
    let mut c = base();
    c.vnc.vnc_sasl_mechanisms = mechs(&["Scram-Sha-256"]);
    let r = run(&c);
    assert_error(&r, "vnc.vnc_sasl_mechanisms", "write \"SCRAM-SHA-256\"");
    assert!(r.errors.iter().all(|d| d.key != key));
}

#[test]
fn api_gssapi_needs_a_build_with_it() {
    let c = api_gssapi();
    assert_clean(&run(&c));
    let r = validate(&c, &NO_GSSAPI);
    assert_error(
        &r,
        "daemon.sasl_mechanisms",
        "the GSSAPI mechanism is not available in this build of vmgated yet; build vmgated \
         with --features gssapi or remove \"GSSAPI\"",
    );
    // a list no transport uses asks nothing of the build
    let mut c = base();
    c.daemon.sasl_mechanisms = mechs(&["GSSAPI"]);
    assert_clean(&validate(&c, &NO_GSSAPI));
}

#[test]
fn console_gssapi_without_the_build_suggests_the_feature() {
    let r = validate(&vnc_gssapi(), &NO_GSSAPI);
    assert_error(
        &r,
        "vnc.vnc_sasl_mechanisms",
        "build vmgated with --features gssapi or remove \"GSSAPI\"",
    );
    // and SASL without TLS is then refused, with no mention of a GSSAPI it cannot have
    assert_error(
        &r,
        "vnc.vnc_sasl",
        "SCRAM-SHA-256 and PLAIN need TLS underneath",
    );
    assert!(
        !lines(&r.errors).concat().contains("list only \"GSSAPI\""),
        "{:#?}",
        lines(&r.errors)
    );
}

#[test]
fn an_empty_api_list_locks_out_every_sasl_transport() {
    let key = "daemon.sasl_mechanisms";
    let mut c = base();
    c.daemon.sasl_mechanisms = vec![];
    // auth_tcp = "sasl" is the default, but nothing listens on TCP
    assert_clean(&run(&c));
    for (name, set) in [
        (
            "auth_unix_ro",
            (|c| c.daemon.auth_unix_ro = AuthKind::Sasl) as fn(&mut Config),
        ),
        ("auth_unix_rw", |c| c.daemon.auth_unix_rw = AuthKind::Sasl),
        ("auth_tcp", |c| {
            c.daemon.listen_tcp = true;
            c.daemon.tcp_min_ssf = 0;
        }),
        ("auth_tls", |c| {
            c.daemon.listen_tls = true;
            c.daemon.auth_tls = AuthKind::Sasl;
        }),
    ] {
        let mut c = c.clone();
        set(&mut c);
        assert_error(
            &run(&c),
            key,
            &format!("is empty while {name} = \"sasl\", so nobody could log in"),
        );
    }
}

#[test]
fn gssapi_alone_on_plain_tcp_warns_to_use_tls() {
    let key = "daemon.sasl_mechanisms";
    let mut c = base();
    c.daemon.listen_tcp = true;
    c.daemon.tcp_min_ssf = 0;
    c.daemon.sasl_mechanisms = mechs(&["GSSAPI"]);
    let r = run(&c);
    assert_warning(&r, key, "not offered on plain TCP");
    assert_warning(&r, key, "qemu+tls://");
    assert!(r.is_ok(), "only a warning: {:#?}", lines(&r.errors));
    // another mechanism, no TCP listener, or no SASL on TCP: nothing to say
    c.daemon.sasl_mechanisms = mechs(&["GSSAPI", "SCRAM-SHA-256"]);
    let r = run(&c);
    assert!(r.warnings.iter().all(|d| d.key != key), "{r:#?}");
    c.daemon.sasl_mechanisms = mechs(&["GSSAPI"]);
    c.daemon.auth_tcp = AuthKind::None;
    let r = run(&c);
    assert!(r.warnings.iter().all(|d| d.key != key), "{r:#?}");
    c.daemon.auth_tcp = AuthKind::Sasl;
    c.daemon.listen_tcp = false;
    assert_clean(&run(&c));
}

#[test]
fn api_keytab_must_be_a_private_readable_file_when_gssapi_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "daemon.sasl_keytab";
    let mut c = api_gssapi();
    c.daemon.sasl_keytab = Some(keytab(dir.path(), "api.keytab", 0o600));
    assert_clean(&run(&c));

    let path = keytab(dir.path(), "group.keytab", 0o640);
    c.daemon.sasl_keytab = Some(path.clone());
    assert_warning(
        &run(&c),
        key,
        &format!(
            "{} is readable by group or others (mode 0640)",
            path.display()
        ),
    );
    assert_warning(&run(&c), key, "chmod 600 it");
    c.daemon.sasl_keytab = Some(keytab(dir.path(), "other.keytab", 0o604));
    assert_warning(&run(&c), key, "(mode 0604)");

    let missing = dir.path().join("missing.keytab");
    c.daemon.sasl_keytab = Some(missing.clone());
    let r = run(&c);
    assert_error(&r, key, &format!("{} does not exist", missing.display()));
    assert_error(
        &r,
        key,
        "create it with kadmin's ktadd, or fix the path (remove sasl_keytab to use the system \
         default keytab)",
    );
    c.daemon.sasl_keytab = Some(dir.path().to_path_buf());
    assert_error(&run(&c), key, "is a directory, not a file");
    let socket = dir.path().join("not-a-file");
    let _listener = UnixListener::bind(&socket).expect("bind");
    c.daemon.sasl_keytab = Some(socket);
    assert_error(&run(&c), key, "is not a regular file");
}

#[test]
fn api_keytab_is_checked_only_where_gssapi_is_offered() {
    let key = "daemon.sasl_keytab";
    let missing = Some(PathBuf::from("/nonexistent/vmgate/api.keytab"));
    let mut c = api_gssapi();
    c.daemon.sasl_keytab = missing.clone();
    assert_error(&run(&c), key, "does not exist");
    // unset: the system default keytab, found by Kerberos at run time
    c.daemon.sasl_keytab = None;
    assert_clean(&run(&c));

    // GSSAPI not listed
    let mut c = api_gssapi();
    c.daemon.sasl_keytab = missing.clone();
    c.daemon.sasl_mechanisms = mechs(&["SCRAM-SHA-256"]);
    assert_clean(&run(&c));
    // no transport uses SASL
    let mut c = api_gssapi();
    c.daemon.sasl_keytab = missing.clone();
    c.daemon.auth_unix_rw = AuthKind::None;
    assert_clean(&run(&c));
    // a build without GSSAPI: that error is the one to fix first
    let mut c = api_gssapi();
    c.daemon.sasl_keytab = missing.clone();
    let r = validate(&c, &NO_GSSAPI);
    assert!(r.errors.iter().all(|d| d.key != key), "{r:#?}");
    // plain TCP never offers GSSAPI
    let mut c = api_gssapi();
    c.daemon.sasl_keytab = missing.clone();
    c.daemon.auth_unix_rw = AuthKind::None;
    c.daemon.listen_tcp = true;
    c.daemon.tcp_min_ssf = 0;
    c.daemon.sasl_mechanisms = mechs(&["GSSAPI", "SCRAM-SHA-256"]);
    assert!(run(&c).errors.iter().all(|d| d.key != key));
    // the read-only socket and TLS do
    for set in [
        (|c| c.daemon.auth_unix_ro = AuthKind::Sasl) as fn(&mut Config),
        |c| {
            c.daemon.listen_tls = true;
            c.daemon.auth_tls = AuthKind::Sasl;
        },
    ] {
        let mut c = c.clone();
        set(&mut c);
        assert_error(&run(&c), key, "does not exist");
    }
}

#[test]
fn console_keytab_is_checked_when_consoles_use_gssapi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "vnc.vnc_sasl_keytab";
    let mut c = vnc_gssapi();
    c.vnc.vnc_sasl_keytab = Some(keytab(dir.path(), "vnc.keytab", 0o600));
    assert_clean(&run(&c));
    c.vnc.vnc_sasl_keytab = Some(keytab(dir.path(), "open.keytab", 0o644));
    assert_warning(&run(&c), key, "is readable by group or others (mode 0644)");
    c.vnc.vnc_sasl_keytab = Some(dir.path().join("missing.keytab"));
    let r = run(&c);
    assert_error(&r, key, "missing.keytab does not exist");
    assert_error(
        &r,
        key,
        "remove vnc_sasl_keytab to use the system default keytab",
    );
    assert!(r.errors.iter().all(|d| d.key != "daemon.sasl_keytab"));

    // not checked while consoles do not offer GSSAPI
    c.vnc.vnc_sasl = false;
    assert_clean(&run(&c));
    c.vnc.vnc_sasl = true;
    c.vnc.vnc_sasl_mechanisms = mechs(&["SCRAM-SHA-256"]);
    c.vnc.vnc_tls = true;
    c.vnc.vnc_tls_x509_cert_dir = PathBuf::from("/nonexistent");
    assert!(run(&c).errors.iter().all(|d| d.key != key));
    let mut c = vnc_gssapi();
    c.vnc.vnc_sasl_keytab = None;
    assert_clean(&run(&c));
}

#[test]
fn keytab_keys_must_not_be_empty() {
    let mut c = base();
    c.vnc.vnc_sasl_keytab = Some(PathBuf::new());
    c.daemon.sasl_keytab = Some(PathBuf::new());
    let r = run(&c);
    for key in ["vnc.vnc_sasl_keytab", "daemon.sasl_keytab"] {
        assert_error(&r, key, "is empty; name the keytab file, or remove the key");
    }
}

#[test]
fn service_names_are_one_principal_component() {
    let mut c = base();
    c.vnc.vnc_sasl_service = "host".into();
    c.daemon.sasl_service = "vmgate".into();
    assert_clean(&run(&c));
    for (bad, what) in [
        ("vnc/kvm1.example.com", "is not a service name like \"vnc\""),
        ("vnc@EXAMPLE.COM", "is not a service name like \"vnc\""),
        ("", "is empty; write a service name like \"vnc\""),
        ("  ", "is empty"),
        ("v nc", "letters, digits, '-', '_' and '.' only"),
        ("vnc\n", "letters, digits"),
    ] {
        c.vnc.vnc_sasl_service = bad.into();
        assert_error(&run(&c), "vnc.vnc_sasl_service", what);
    }
    c.vnc.vnc_sasl_service = "vnc".into();
    c.daemon.sasl_service = "libvirt/host".into();
    let r = run(&c);
    assert_error(
        &r,
        "daemon.sasl_service",
        "\"libvirt/host\" is not a service name like \"libvirt\"; write only the first part",
    );
    assert_error(&r, "daemon.sasl_service", "without \"/\" or \"@\"");
    c.daemon.sasl_service = String::new();
    assert_error(&run(&c), "daemon.sasl_service", "is empty");
}

#[test]
fn local_realms_are_bare_and_upper_case() {
    let mut c = base();
    c.vnc.vnc_sasl_local_realm = Some("EXAMPLE.COM".into());
    c.daemon.sasl_local_realm = Some("CORP.EXAMPLE.COM".into());
    assert_clean(&run(&c));
    for (field, key) in [
        (0, "vnc.vnc_sasl_local_realm"),
        (1, "daemon.sasl_local_realm"),
    ] {
        let set = |c: &mut Config, realm: &str| {
            let slot = match field {
                0 => &mut c.vnc.vnc_sasl_local_realm,
                _ => &mut c.daemon.sasl_local_realm,
            };
            *slot = Some(realm.to_string());
        };
        let mut c = base();
        set(&mut c, "");
        assert_error(
            &run(&c),
            key,
            "is empty; write a realm such as \"EXAMPLE.COM\"",
        );
        set(&mut c, "@EXAMPLE.COM");
        assert_error(
            &run(&c),
            key,
            "\"@EXAMPLE.COM\" is not a realm name; write it without \"@\", e.g. \"EXAMPLE.COM\"",
        );
        set(&mut c, "example.com");
        let r = run(&c);
        assert_warning(&r, key, "\"example.com\" has lower-case letters");
        assert_warning(&r, key, "write \"EXAMPLE.COM\"");
        assert!(r.is_ok());
    }
}

#[test]
fn consoles_without_tls_offer_only_gssapi() {
    let key = "vnc.vnc_sasl_mechanisms";
    let mut c = vnc_gssapi();
    assert_clean(&run(&c));
    // the others are listed but would be withheld
    c.vnc.vnc_sasl_mechanisms = mechs(&["SCRAM-SHA-256", "GSSAPI"]);
    let r = run(&c);
    assert_warning(
        &r,
        key,
        "\"SCRAM-SHA-256\" is not offered without vnc_tls (only GSSAPI, which has a security \
         layer, is); set vnc_tls = true, or remove it",
    );
    assert!(r.is_ok(), "{:#?}", lines(&r.errors));
    c.vnc.vnc_sasl_mechanisms = mechs(&["PLAIN", "GSSAPI", "SCRAM-SHA-256", "PLAIN"]);
    assert_warning(
        &run(&c),
        key,
        "\"PLAIN\" and \"SCRAM-SHA-256\" are not offered without vnc_tls",
    );
    // with no GSSAPI at all it is an error that suggests Kerberos
    c.vnc.vnc_sasl_mechanisms = mechs(&["PLAIN"]);
    assert_error(
        &run(&c),
        "vnc.vnc_sasl",
        "set vnc_tls = true, list only \"GSSAPI\" (Kerberos), or vnc_sasl = false",
    );
    // with TLS, everything listed is offered
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = base();
    c.vnc.vnc_sasl = true;
    c.vnc.vnc_tls = true;
    c.vnc.vnc_tls_x509_cert_dir = dir.path().to_path_buf();
    for (name, mode) in [
        ("ca-cert.pem", 0o644),
        ("server-cert.pem", 0o644),
        ("server-key.pem", 0o600),
    ] {
        keytab(dir.path(), name, mode);
    }
    c.vnc.vnc_sasl_mechanisms = mechs(&["SCRAM-SHA-256", "PLAIN", "GSSAPI"]);
    assert_clean(&run(&c));
}

#[test]
fn kerberos_defaults() {
    let c = Config::default();
    assert_eq!(c.vnc.vnc_sasl_keytab, None);
    assert_eq!(c.vnc.vnc_sasl_service, "vnc");
    assert_eq!(c.vnc.vnc_sasl_local_realm, None);
    assert_eq!(c.daemon.sasl_mechanisms, ["SCRAM-SHA-256", "PLAIN"]);
    assert_eq!(c.daemon.sasl_keytab, None);
    assert_eq!(c.daemon.sasl_service, "libvirt");
    assert_eq!(c.daemon.sasl_local_realm, None);
}
