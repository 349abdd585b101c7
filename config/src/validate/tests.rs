//! Tests of `validate`: one test per rule, each checking error versus warning, the key
//! and the wording of the fix, plus `Supported` gating.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::values::{AccessDriver, AuthKind, DriverKind, Secret, SocketMode};

/// A config that validates cleanly anywhere: the test driver, FIPS decided by the key.
pub(super) fn base() -> Config {
    let mut c = Config::default();
    c.daemon.driver = DriverKind::Test;
    c.vnc.fips = Some(false);
    c
}

pub(super) fn run(c: &Config) -> Report {
    validate(c, &Supported::all())
}

pub(super) fn lines(list: &[crate::Diagnostic]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[track_caller]
pub(super) fn assert_error(report: &Report, key: &str, needle: &str) {
    assert!(
        report
            .errors
            .iter()
            .any(|d| d.key == key && d.message.contains(needle)),
        "no error on {key} containing {needle:?}; errors: {:#?}",
        lines(&report.errors)
    );
}

#[track_caller]
pub(super) fn assert_warning(report: &Report, key: &str, needle: &str) {
    assert!(
        report
            .warnings
            .iter()
            .any(|d| d.key == key && d.message.contains(needle)),
        "no warning on {key} containing {needle:?}; warnings: {:#?}",
        lines(&report.warnings)
    );
    assert!(
        report.errors.iter().all(|d| d.key != key),
        "{:#?}",
        lines(&report.errors)
    );
}

#[track_caller]
pub(super) fn assert_clean(report: &Report) {
    assert!(report.errors.is_empty(), "{:#?}", lines(&report.errors));
    assert!(report.warnings.is_empty(), "{:#?}", lines(&report.warnings));
}

fn write_mode(path: &Path, mode: u32) {
    fs::write(path, "-----BEGIN X-----\n").expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// TLS files for the API listener in a temp dir, the key 0600.
fn with_tls_files(dir: &Path) -> Config {
    let mut c = base();
    c.daemon.listen_tls = true;
    c.daemon.key_file = dir.join("serverkey.pem");
    c.daemon.cert_file = dir.join("servercert.pem");
    c.daemon.ca_file = dir.join("cacert.pem");
    write_mode(&c.daemon.key_file, 0o600);
    write_mode(&c.daemon.cert_file, 0o644);
    write_mode(&c.daemon.ca_file, 0o644);
    c
}

fn with_vnc_cert_dir(dir: &Path) -> Config {
    let mut c = base();
    c.vnc.vnc_tls = true;
    c.vnc.vnc_tls_x509_cert_dir = dir.to_path_buf();
    write_mode(&dir.join("ca-cert.pem"), 0o644);
    write_mode(&dir.join("server-cert.pem"), 0o644);
    write_mode(&dir.join("server-key.pem"), 0o600);
    c
}

#[test]
fn defaults_validate_and_state_dirs_need_not_exist() {
    let mut c = base();
    c.daemon.state_dir = PathBuf::from("/nonexistent/vmgate/state");
    c.daemon.unix_sock_dir = PathBuf::from("/nonexistent/vmgate/run");
    assert_clean(&run(&c));
    // TLS files are not looked at while listen_tls is off
    c.daemon.key_file = PathBuf::from("/nonexistent/key.pem");
    c.vnc.vnc_tls_x509_cert_dir = PathBuf::from("/nonexistent/vnc");
    assert_clean(&run(&c));
}

#[test]
fn diagnostics_display_section_and_key() {
    let d = crate::Diagnostic::new("vnc.vnc_password", "is too long");
    assert_eq!(d.to_string(), "[vnc] vnc_password: is too long");
}

#[test]
fn features_this_build_lacks_are_errors() {
    let mut c = base();
    c.daemon.listen_tls = true;
    let report = validate(&c, &Supported::none());
    assert!(
        lines(&report.errors).contains(
            &"[daemon] listen_tls: TLS listeners are not available in this build of vmgated \
              yet; set listen_tls = false"
                .to_string()
        ),
        "{:#?}",
        lines(&report.errors)
    );
    assert_error(&report, "daemon.driver", "test driver is not available");
    assert_error(
        &validate(&Config::default(), &Supported::none()),
        "daemon.driver",
        "set driver = \"test\"",
    );

    let only = |f: fn(&mut Supported)| {
        let mut s = Supported::all();
        f(&mut s);
        s
    };
    let mut c = base();
    c.daemon.auth_unix_rw = AuthKind::Polkit;
    c.daemon.auth_unix_ro = AuthKind::Sasl;
    c.daemon.access_drivers = vec![AccessDriver::Polkit];
    c.daemon.listen_tcp = true;
    c.daemon.tcp_min_ssf = 0;
    c.vnc.vnc_auto_unix_socket = true;
    c.vnc.vnc_password = Some(Secret::new("pw"));
    c.storage.database_url = Some("postgres://db/vmgate".into());
    c.qemu.user = Some("qemu".into());
    assert!(run(&c).is_ok(), "{:#?}", lines(&run(&c).errors));
    let r = validate(&c, &only(|s| s.polkit = false));
    assert_error(
        &r,
        "daemon.auth_unix_rw",
        "polkit authentication is not available",
    );
    let r = validate(&c, &only(|s| s.sasl = false));
    assert_error(
        &r,
        "daemon.auth_unix_ro",
        "SASL authentication is not available",
    );
    assert_error(
        &r,
        "daemon.auth_tcp",
        "SASL authentication is not available",
    );
    let r = validate(&c, &only(|s| s.polkit_access = false));
    assert_error(&r, "daemon.access_drivers", "set access_drivers = []");
    let r = validate(&c, &only(|s| s.listen_tcp = false));
    assert_error(&r, "daemon.listen_tcp", "set listen_tcp = false");
    let r = validate(&c, &only(|s| s.vnc_unix_socket = false));
    assert_error(&r, "vnc.vnc_auto_unix_socket", "not available");
    let r = validate(&c, &only(|s| s.vnc_password = false));
    assert_error(&r, "vnc.vnc_password", "not available");
    let r = validate(&c, &only(|s| s.postgres = false));
    assert_error(&r, "storage.database_url", "PostgreSQL is not available");
    let r = validate(&c, &only(|s| s.qemu_run_as = false));
    assert_error(&r, "qemu.user", "remove user");

    let mut c = base();
    c.vnc.vnc_tls = true;
    c.vnc.vnc_sasl = true;
    let r = validate(&c, &only(|s| s.vnc_tls = false));
    assert_error(&r, "vnc.vnc_tls", "TLS on consoles is not available");
    let r = validate(&c, &only(|s| s.vnc_sasl = false));
    assert_error(&r, "vnc.vnc_sasl", "SASL on consoles is not available");
}

#[test]
fn vnc_password_is_at_most_8_bytes() {
    let mut c = base();
    c.vnc.vnc_password = Some(Secret::new("12345678"));
    assert_clean(&run(&c));
    c.vnc.vnc_password = Some(Secret::new("123456789"));
    let r = run(&c);
    assert_error(
        &r,
        "vnc.vnc_password",
        "is 9 bytes long but VNC passwords are at most 8 bytes",
    );
    assert!(
        !lines(&r.errors).concat().contains("123456789"),
        "the password must not be shown"
    );
    c.vnc.vnc_password = Some(Secret::new(""));
    assert_error(&run(&c), "vnc.vnc_password", "is empty");
}

#[test]
fn password_auth_is_refused_in_fips_mode() {
    let mut c = base();
    c.vnc.vnc_password = Some(Secret::new("pw"));
    c.vnc.fips = Some(true);
    assert_error(&run(&c), "vnc.vnc_password", "FIPS mode");
    c.vnc.vnc_password = None;
    assert_clean(&run(&c));
}

#[test]
fn vnc_sasl_needs_vnc_tls_unless_gssapi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = base();
    c.vnc.vnc_sasl = true;
    assert_error(
        &run(&c),
        "vnc.vnc_sasl",
        "SCRAM-SHA-256 and PLAIN need TLS underneath",
    );
    c.vnc.vnc_sasl_mechanisms = vec!["GSSAPI".into()];
    assert!(run(&c).is_ok(), "{:#?}", lines(&run(&c).errors));
    let no_gssapi = Supported {
        gssapi: false,
        ..Supported::all()
    };
    let r = validate(&c, &no_gssapi);
    assert_error(
        &r,
        "vnc.vnc_sasl_mechanisms",
        "GSSAPI mechanism is not available",
    );
    assert_error(&r, "vnc.vnc_sasl", "need TLS underneath");

    let mut c = with_vnc_cert_dir(dir.path());
    c.vnc.vnc_sasl = true;
    assert_clean(&run(&c));
    c.vnc.vnc_password = Some(Secret::new("pw"));
    assert_warning(&run(&c), "vnc.vnc_password", "ignored while vnc_sasl is on");
}

#[test]
fn sasl_mechanisms_must_be_known() {
    let mut c = base();
    c.vnc.vnc_sasl_mechanisms = vec!["SCRAM-SHA-256".into(), "DIGEST-MD5".into()];
    let r = run(&c);
    assert_error(
        &r,
        "vnc.vnc_sasl_mechanisms",
        "\"DIGEST-MD5\" is not a known SASL mechanism",
    );
    assert_error(
        &r,
        "vnc.vnc_sasl_mechanisms",
        "\"SCRAM-SHA-256\", \"PLAIN\", \"GSSAPI\"",
    );
    c.vnc.vnc_sasl_mechanisms = vec!["plain".into()];
    assert_error(&run(&c), "vnc.vnc_sasl_mechanisms", "write \"PLAIN\"");
    c.vnc.vnc_sasl_mechanisms = vec!["PLAIN".into(), "PLAIN".into()];
    assert_warning(&run(&c), "vnc.vnc_sasl_mechanisms", "more than once");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = with_vnc_cert_dir(dir.path());
    c.vnc.vnc_sasl = true;
    c.vnc.vnc_sasl_mechanisms = vec![];
    assert_error(&run(&c), "vnc.vnc_sasl_mechanisms", "nobody could log in");
}

#[test]
fn display_port_range() {
    let mut c = base();
    c.vnc.remote_display_port_min = 5899;
    assert_error(
        &run(&c),
        "vnc.remote_display_port_min",
        "5899 is below 5900",
    );
    c.vnc.remote_display_port_min = 6000;
    c.vnc.remote_display_port_max = 5999;
    assert_error(
        &run(&c),
        "vnc.remote_display_port_min",
        "6000 is above remote_display_port_max (5999)",
    );
    c.vnc.remote_display_port_max = 6000;
    assert_clean(&run(&c));
}

#[test]
fn zero_limits_are_errors() {
    type Set = fn(&mut Config);
    let cases: &[(&str, Set)] = &[
        ("daemon.max_clients", |c| c.daemon.max_clients = 0),
        ("daemon.max_anonymous_clients", |c| {
            c.daemon.max_anonymous_clients = 0
        }),
        ("daemon.max_client_requests", |c| {
            c.daemon.max_client_requests = 0
        }),
        ("vnc.vnc_max_pending", |c| c.vnc.vnc_max_pending = 0),
        ("vnc.vnc_max_pending_per_source", |c| {
            c.vnc.vnc_max_pending_per_source = 0
        }),
        ("vnc.vnc_max_sessions", |c| c.vnc.vnc_max_sessions = Some(0)),
        ("vnc.vnc_handshake_timeout_secs", |c| {
            c.vnc.vnc_handshake_timeout_secs = 0
        }),
        ("vnc.vnc_auth_max_failures", |c| {
            c.vnc.vnc_auth_max_failures = 0
        }),
        ("vnc.vnc_auth_failure_window_secs", |c| {
            c.vnc.vnc_auth_failure_window_secs = 0
        }),
        ("vnc.vnc_auth_lockout_secs", |c| {
            c.vnc.vnc_auth_lockout_secs = 0
        }),
        ("vnc.audit_max_age_days", |c| c.vnc.audit_max_age_days = 0),
        ("vnc.audit_max_rows", |c| c.vnc.audit_max_rows = 0),
    ];
    for (key, set) in cases {
        let mut c = base();
        set(&mut c);
        assert_error(&run(&c), key, "0 would");
        assert_error(&run(&c), key, "; set it to a positive number");
    }
    let mut c = base();
    c.daemon.max_clients = 10;
    c.daemon.max_anonymous_clients = 11;
    assert_error(
        &run(&c),
        "daemon.max_anonymous_clients",
        "more than max_clients (10)",
    );
    c.daemon.max_anonymous_clients = 10;
    c.daemon.keepalive_count = 0;
    assert_clean(&run(&c));
}

#[test]
fn keepalive_interval_is_positive_or_minus_one() {
    let mut c = base();
    for bad in [0, -2] {
        c.daemon.keepalive_interval = bad;
        assert_error(&run(&c), "daemon.keepalive_interval", "-1 to disable");
    }
    c.daemon.keepalive_interval = -1;
    assert_clean(&run(&c));
}

#[test]
fn tls_files_must_exist_and_keys_stay_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = with_tls_files(dir.path());
    assert_clean(&run(&c));

    fs::set_permissions(&c.daemon.key_file, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_warning(
        &run(&c),
        "daemon.key_file",
        "readable by its group (mode 0640)",
    );
    fs::set_permissions(&c.daemon.key_file, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_error(
        &run(&c),
        "daemon.key_file",
        "readable by every user (mode 0644); run chmod 0600",
    );

    fs::remove_file(&c.daemon.ca_file).expect("rm");
    let r = run(&c);
    assert_error(
        &r,
        "daemon.ca_file",
        &format!("{} does not exist", c.daemon.ca_file.display()),
    );
    assert_error(&r, "daemon.ca_file", "set listen_tls = false");

    let mut c = with_tls_files(dir.path());
    c.daemon.crl_file = Some(dir.path().join("missing-crl.pem"));
    assert_error(
        &run(&c),
        "daemon.crl_file",
        "missing-crl.pem does not exist",
    );
    c.daemon.crl_file = Some(dir.path().to_path_buf());
    assert_error(&run(&c), "daemon.crl_file", "is a directory");
}

#[test]
fn empty_allowlists_lock_everyone_out_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = with_tls_files(dir.path());
    c.daemon.tls_allowed_dn_list = Some(vec![]);
    assert_warning(
        &run(&c),
        "daemon.tls_allowed_dn_list",
        "EVERY TLS client is refused",
    );
    c.daemon.tls_allowed_dn_list = Some(vec!["CN=*".into()]);
    assert_clean(&run(&c));
    // not checked while the TLS listener is off
    c.daemon.listen_tls = false;
    c.daemon.tls_allowed_dn_list = Some(vec![]);
    assert_clean(&run(&c));

    let mut c = base();
    c.daemon.sasl_allowed_username_list = Some(vec![]);
    assert_clean(&run(&c));
    c.daemon.auth_unix_rw = AuthKind::Sasl;
    assert_warning(
        &run(&c),
        "daemon.sasl_allowed_username_list",
        "EVERY SASL user",
    );
}

#[test]
fn vnc_tls_needs_the_three_pem_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = with_vnc_cert_dir(dir.path());
    assert_clean(&run(&c));
    let key = dir.path().join("server-key.pem");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o604)).expect("chmod");
    assert_error(
        &run(&c),
        "vnc.vnc_tls_x509_cert_dir",
        "server-key.pem is readable by every user",
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_warning(
        &run(&c),
        "vnc.vnc_tls_x509_cert_dir",
        "server-key.pem is readable by its group",
    );
    fs::remove_file(dir.path().join("server-cert.pem")).expect("rm");
    assert_error(
        &run(&c),
        "vnc.vnc_tls_x509_cert_dir",
        "server-cert.pem does not exist",
    );

    let mut c = base();
    c.vnc.vnc_tls = true;
    c.vnc.vnc_tls_x509_cert_dir = dir.path().join("absent");
    assert_error(&run(&c), "vnc.vnc_tls_x509_cert_dir", "is not a directory");
    let mut c = base();
    c.vnc.vnc_tls_x509_verify = true;
    assert_warning(
        &run(&c),
        "vnc.vnc_tls_x509_verify",
        "no effect without vnc_tls",
    );
}

#[test]
fn api_socket_paths_must_fit_sun_path() {
    let mut c = base();
    // "/vmgate-sock-ro" is 15 bytes: a 92-byte dir gives 107 bytes, 93 gives 108
    c.daemon.unix_sock_dir = PathBuf::from(format!("/{}", "d".repeat(91)));
    assert_clean(&run(&c));
    c.daemon.unix_sock_dir = PathBuf::from(format!("/{}", "d".repeat(92)));
    assert_error(
        &run(&c),
        "daemon.unix_sock_dir",
        "vmgate-sock-ro is 108 bytes long",
    );
}

#[test]
fn sockets_and_listeners() {
    let mut c = base();
    c.daemon.unix_sock_rw_perms = SocketMode::WORLD;
    assert_warning(
        &run(&c),
        "daemon.unix_sock_rw_perms",
        "\"0777\" lets every local user",
    );
    c.daemon.auth_unix_rw = AuthKind::Polkit;
    assert_clean(&run(&c));

    let mut c = base();
    c.daemon.listen_tcp = true;
    let no_gssapi = Supported {
        gssapi: false,
        ..Supported::all()
    };
    let r = validate(&c, &no_gssapi);
    assert_error(&r, "daemon.tcp_min_ssf", "56 needs a SASL security layer");
    // GSSAPI's layer cannot wrap HTTP/2, so a build with it is no different.
    assert_error(&run(&c), "daemon.tcp_min_ssf", "none can wrap");
    c.daemon.tcp_min_ssf = 0;
    assert_warning(
        &validate(&c, &no_gssapi),
        "daemon.tcp_min_ssf",
        "test setups only",
    );
    c.daemon.auth_tcp = AuthKind::None;
    assert_warning(&run(&c), "daemon.auth_tcp", "full control");
    c.daemon.auth_tcp = AuthKind::Polkit;
    assert_error(&run(&c), "daemon.auth_tcp", "set auth_tcp = \"sasl\"");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = with_tls_files(dir.path());
    c.daemon.auth_tls = AuthKind::Polkit;
    assert_error(
        &run(&c),
        "daemon.auth_tls",
        "can only judge local processes",
    );
    c.daemon.auth_tls = AuthKind::None;
    c.daemon.listen_tcp = true;
    c.daemon.tcp_min_ssf = 0;
    c.daemon.tcp_port = c.daemon.tls_port;
    assert_error(&run(&c), "daemon.tcp_port", "both 16514");
    c.daemon.tcp_port = 16509;
    c.daemon.access_drivers = vec![AccessDriver::Polkit];
    assert_warning(
        &run(&c),
        "daemon.access_drivers",
        "every TCP and TLS caller will be refused",
    );

    let mut c = base();
    c.daemon.listen_addr = Some(" ".into());
    assert_error(&run(&c), "daemon.listen_addr", "is empty");
    c.daemon.listen_addr = None;
    c.daemon.unix_sock_group = Some(String::new());
    assert_error(&run(&c), "daemon.unix_sock_group", "is empty");
}

#[test]
fn vnc_listen_must_be_an_ip_address() {
    let mut c = base();
    for good in ["0.0.0.0", "::", "::1", "192.168.1.10"] {
        c.vnc.vnc_listen = good.into();
        assert_clean(&run(&c));
    }
    c.vnc.vnc_listen = "localhost".into();
    assert_error(
        &run(&c),
        "vnc.vnc_listen",
        "\"localhost\" is not an IP address (hostnames are not accepted)",
    );
}

#[test]
fn storage_and_qemu() {
    let mut c = base();
    c.storage.database_url = Some("mysql://root:hunter2@db/vmgate".into());
    let r = run(&c);
    assert_error(
        &r,
        "storage.database_url",
        "scheme \"mysql\" is not supported",
    );
    assert!(!lines(&r.errors).concat().contains("hunter2"));
    c.storage.database_url = Some("sqlite::memory:".into());
    assert_clean(&run(&c));

    let mut c = base();
    c.qemu.emulator = String::new();
    assert_error(&run(&c), "qemu.emulator", "is empty");
    c.qemu.emulator = "/nonexistent/qemu-system-x86_64".into();
    assert_clean(&run(&c)); // the test driver does not use it
    c.daemon.driver = DriverKind::Qemu;
    assert_warning(
        &run(&c),
        "qemu.emulator",
        "was not found, so guests will fail to start",
    );
    c.qemu.emulator = "/bin/sh".into();
    assert_clean(&run(&c));
    c.qemu.group = Some(String::new());
    assert_error(&run(&c), "qemu.group", "is empty");
}
