//! Tests of parsing the daemon config: defaults, every key, booleans as 0/1, one-line
//! errors with file, line, column and key, octal modes, relative paths, and `load`'s
//! file-level warning.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::values::{AccessDriver, AclDefault, AuthKind, DriverKind, SocketMode};

const ETC: &str = "/etc/vmgate/vmgated.toml";

fn parse(text: &str) -> Config {
    parse_str(text, Path::new(ETC))
        .expect("config parses")
        .config
}

fn parse_err(text: &str) -> String {
    parse_str(text, Path::new(ETC))
        .expect_err("config must be refused")
        .to_string()
}

#[test]
fn defaults_are_the_ones_in_design_md() {
    let c = parse("");
    assert_eq!(c, Config::default());
    let d = &c.daemon;
    assert_eq!(d.driver, DriverKind::Qemu);
    assert_eq!(d.state_dir, Path::new("/var/lib/vmgate"));
    assert_eq!(d.unix_sock_dir, Path::new("/run/vmgate"));
    assert_eq!(d.unix_sock_group, None);
    assert_eq!(d.unix_sock_ro_perms.bits(), 0o777);
    assert_eq!(d.unix_sock_rw_perms.bits(), 0o700);
    assert_eq!(d.auth_unix_ro, AuthKind::None);
    assert_eq!(d.auth_unix_rw, AuthKind::None);
    assert!(!d.listen_tls);
    assert!(!d.listen_tcp);
    assert_eq!(d.listen_addr, None);
    assert_eq!(d.tls_port, 16514);
    assert_eq!(d.tcp_port, 16509);
    assert_eq!(d.auth_tcp, AuthKind::Sasl);
    assert_eq!(d.auth_tls, AuthKind::None);
    assert_eq!(d.tcp_min_ssf, 56);
    assert!(d.access_drivers.is_empty());
    assert_eq!(
        d.key_file,
        Path::new("/etc/pki/vmgate/private/serverkey.pem")
    );
    assert_eq!(d.cert_file, Path::new("/etc/pki/vmgate/servercert.pem"));
    assert_eq!(d.ca_file, Path::new("/etc/pki/CA/cacert.pem"));
    assert_eq!(d.crl_file, None);
    assert!(!d.tls_no_verify_certificate);
    assert_eq!(d.tls_allowed_dn_list, None);
    assert_eq!(d.sasl_allowed_username_list, None);
    assert_eq!(d.sasl_mechanisms, ["SCRAM-SHA-256", "PLAIN"]);
    assert_eq!(d.sasl_keytab, None);
    assert_eq!(d.sasl_service, "libvirt");
    assert_eq!(d.sasl_local_realm, None);
    assert_eq!(d.max_clients, 5000);
    assert_eq!(d.max_anonymous_clients, 20);
    assert_eq!(d.max_client_requests, 5);
    assert_eq!(d.keepalive_interval, 5);
    assert_eq!(d.keepalive_count, 5);

    assert_eq!(c.storage.database_url, None);
    assert_eq!(
        c.storage.effective_database_url(&d.state_dir),
        "sqlite:///var/lib/vmgate/vmgate.db?mode=rwc"
    );

    let v = &c.vnc;
    assert_eq!(v.vnc_listen, "127.0.0.1");
    assert!(!v.vnc_auto_unix_socket);
    assert!(!v.vnc_tls);
    assert_eq!(v.vnc_tls_x509_cert_dir, Path::new("/etc/pki/vmgate-vnc"));
    assert!(!v.vnc_tls_x509_verify);
    assert_eq!(v.vnc_password, None);
    assert!(!v.vnc_sasl);
    assert_eq!(v.remote_display_port_min, 5900);
    assert_eq!(v.remote_display_port_max, 65535);
    assert_eq!(v.vnc_sasl_mechanisms, ["SCRAM-SHA-256", "PLAIN"]);
    assert_eq!(v.vnc_sasl_keytab, None);
    assert_eq!(v.vnc_sasl_service, "vnc");
    assert_eq!(v.vnc_sasl_local_realm, None);
    assert_eq!(v.vnc_acl_default, AclDefault::Allow);
    assert_eq!(v.vnc_max_pending, 20);
    assert_eq!(v.vnc_max_pending_per_source, 4);
    assert_eq!(v.vnc_max_sessions, None);
    assert_eq!(v.vnc_handshake_timeout_secs, 60);
    assert_eq!(v.vnc_auth_max_failures, 5);
    assert_eq!(v.vnc_auth_failure_window_secs, 60);
    assert_eq!(v.vnc_auth_lockout_secs, 60);
    assert_eq!(v.audit_max_age_days, 90);
    assert_eq!(v.audit_max_rows, 10_000_000);
    assert_eq!(v.fips, None);

    let q = &c.qemu;
    assert_eq!(q.emulator, "qemu-system-x86_64");
    assert_eq!(q.log_dir, None);
    assert_eq!(
        q.effective_log_dir(&d.state_dir),
        Path::new("/var/lib/vmgate/log")
    );
    assert_eq!(q.user, None);
    assert_eq!(q.group, None);
    assert!(q.sandbox);
}

#[test]
fn every_key_can_be_set() {
    let c = parse(
        r#"
[daemon]
driver = "test"
unix_sock_group = "vmgate"
unix_sock_ro_perms = "0770"
unix_sock_rw_perms = "770"
auth_unix_ro = "polkit"
auth_unix_rw = "sasl"
auth_tcp = "none"
auth_tls = "sasl"
listen_addr = "::"
access_drivers = ["polkit"]
tls_allowed_dn_list = ["C=GB,*"]
sasl_allowed_username_list = []
sasl_mechanisms = ["GSSAPI", "SCRAM-SHA-256"]
sasl_keytab = "/etc/vmgate/krb5.keytab"
sasl_service = "vmgate"
sasl_local_realm = "EXAMPLE.COM"
keepalive_interval = -1

[storage]
database_url = "postgres://vmgate@db/vmgate"

[vnc]
vnc_password = "pw"
vnc_sasl_mechanisms = ["GSSAPI"]
vnc_sasl_keytab = "/etc/vmgate/vnc.keytab"
vnc_sasl_service = "console"
vnc_sasl_local_realm = "CORP.EXAMPLE.COM"
vnc_acl_default = "deny"

[qemu]
user = "qemu"
group = "kvm"
"#,
    );
    assert_eq!(c.daemon.driver, DriverKind::Test);
    assert_eq!(
        c.daemon.unix_sock_ro_perms,
        SocketMode::new(0o770).expect("mode")
    );
    assert_eq!(c.daemon.unix_sock_rw_perms.bits(), 0o770);
    assert_eq!(c.daemon.auth_unix_ro, AuthKind::Polkit);
    assert_eq!(c.daemon.auth_unix_rw, AuthKind::Sasl);
    assert_eq!(c.daemon.auth_tcp, AuthKind::None);
    assert_eq!(c.daemon.access_drivers, [AccessDriver::Polkit]);
    assert_eq!(
        c.daemon.tls_allowed_dn_list,
        Some(vec!["C=GB,*".to_string()])
    );
    assert_eq!(c.daemon.sasl_allowed_username_list, Some(vec![]));
    assert_eq!(c.daemon.keepalive_interval, -1);
    assert_eq!(
        c.storage.database_url.as_deref(),
        Some("postgres://vmgate@db/vmgate")
    );
    assert_eq!(c.vnc.vnc_password.as_ref().map(|s| s.expose()), Some("pw"));
    assert_eq!(c.vnc.vnc_acl_default, AclDefault::Deny);
    assert_eq!(c.daemon.sasl_mechanisms, ["GSSAPI", "SCRAM-SHA-256"]);
    assert_eq!(
        c.daemon.sasl_keytab.as_deref(),
        Some(Path::new("/etc/vmgate/krb5.keytab"))
    );
    assert_eq!(c.daemon.sasl_service, "vmgate");
    assert_eq!(c.daemon.sasl_local_realm.as_deref(), Some("EXAMPLE.COM"));
    assert_eq!(c.vnc.vnc_sasl_mechanisms, ["GSSAPI"]);
    assert_eq!(
        c.vnc.vnc_sasl_keytab.as_deref(),
        Some(Path::new("/etc/vmgate/vnc.keytab"))
    );
    assert_eq!(c.vnc.vnc_sasl_service, "console");
    assert_eq!(
        c.vnc.vnc_sasl_local_realm.as_deref(),
        Some("CORP.EXAMPLE.COM")
    );
    assert_eq!(c.qemu.group.as_deref(), Some("kvm"));
}

#[test]
fn booleans_accept_true_false_and_libvirts_0_1() {
    let c = parse(
        "[daemon]\nlisten_tls = 1\nlisten_tcp = true\ntls_no_verify_certificate = 0\n\
         [vnc]\nvnc_tls = 1\nvnc_sasl = false\nfips = 0\n[qemu]\nsandbox = 0\n",
    );
    assert!(c.daemon.listen_tls && c.daemon.listen_tcp && !c.daemon.tls_no_verify_certificate);
    assert!(c.vnc.vnc_tls && !c.vnc.vnc_sasl);
    assert_eq!(c.vnc.fips, Some(false));
    assert!(!c.qemu.sandbox);
    assert_eq!(parse("[vnc]\nfips = 1").vnc.fips, Some(true));

    let err = parse_err("[daemon]\nlisten_tls = 2\n");
    assert_eq!(
        err,
        "/etc/vmgate/vmgated.toml:2:14: key `listen_tls` in [daemon]: expected a boolean \
         (true or false, or 0 or 1), found integer `2`"
    );
    let err = parse_err("[vnc]\nfips = \"yes\"\n");
    assert!(
        err.starts_with(&format!(
            "{ETC}:2:8: key `fips` in [vnc]: expected a boolean"
        )),
        "{err}"
    );
}

#[test]
fn unknown_keys_name_file_line_column_and_key() {
    let err = parse_err(
        "[daemon]\ndriver = \"test\"\n\n[vnc]\nvnc_listen = \"::1\"\nvnc_listn = \"::\"\n",
    );
    assert_eq!(
        err,
        "/etc/vmgate/vmgated.toml:6:1: unknown key `vnc_listn` in [vnc]; did you mean `vnc_listen`?"
    );
    let err = parse_err("[vcn]\n");
    assert_eq!(
        err,
        format!("{ETC}:1:2: unknown key `vcn` at the top level; did you mean `vnc`?")
    );
    let err = parse_err("[qemu]\ncompletely_different = 1\n");
    assert_eq!(
        err,
        format!("{ETC}:2:1: unknown key `completely_different` in [qemu]")
    );
}

#[test]
fn wrong_types_name_the_key_and_what_was_expected() {
    let err = parse_err("[daemon]\ntls_port = \"x\"\n");
    assert_eq!(
        err,
        format!(
            "{ETC}:2:12: key `tls_port` in [daemon]: expected an integer from 0 to 65535, \
             found string \"x\""
        )
    );
    let err = parse_err("[daemon]\n\ntcp_port = 70000\n");
    assert!(
        err.starts_with(&format!(
            "{ETC}:3:12: key `tcp_port` in [daemon]: expected an integer from 0 to 65535"
        )),
        "{err}"
    );
    let err = parse_err("[daemon]\ndriver = \"xen\"\n");
    assert_eq!(
        err,
        format!(
            "{ETC}:2:10: key `driver` in [daemon]: unknown value `xen`, expected `qemu` or `test`"
        )
    );
    let err = parse_err("[daemon]\naccess_drivers = [\"selinux\"]\n");
    assert!(
        err.contains("key `access_drivers` in [daemon]: unknown value `selinux`"),
        "{err}"
    );
    let err = parse_err("daemon = 5\n");
    assert_eq!(
        err,
        format!("{ETC}:1:10: key `daemon`: expected a table, found integer `5`")
    );
}

#[test]
fn syntax_errors_are_one_line_each_with_a_position() {
    let err = parse_str("[daemon]\nmax_clients = = 3\n[vnc\n", Path::new(ETC)).expect_err("bad");
    assert!(!err.errors.is_empty());
    for line in err.to_string().lines() {
        assert!(line.starts_with(&format!("{ETC}:")), "{line}");
    }
    let first = &err.errors[0];
    assert!(
        first.to_string().starts_with(&format!("{ETC}:2:")),
        "{first}"
    );
    assert!(!first.to_string().contains('\n'));
    assert!(!first.to_string().contains("TOML parse error"));
}

#[test]
fn socket_modes_are_octal_strings() {
    let c = parse("[daemon]\nunix_sock_ro_perms = \"0660\"\nunix_sock_rw_perms = \"600\"\n");
    assert_eq!(c.daemon.unix_sock_ro_perms.bits(), 0o660);
    assert_eq!(c.daemon.unix_sock_rw_perms.bits(), 0o600);
    let err = parse_err("[daemon]\nunix_sock_rw_perms = \"1777\"\n");
    assert!(
        err.contains(":2:22: key `unix_sock_rw_perms` in [daemon]: \"1777\" is not a socket mode"),
        "{err}"
    );
    let err = parse_err("[daemon]\nunix_sock_rw_perms = 0o700\n");
    assert!(
        err.contains("expected an octal mode as a string, e.g. \"0770\""),
        "{err}"
    );
    // it serializes back as the string it came from
    let text = toml::to_string(&c).expect("serialize");
    assert!(text.contains("unix_sock_ro_perms = \"0660\""), "{text}");
}

#[test]
fn serialized_config_parses_back_unchanged() {
    let mut c = Config::default();
    c.vnc.vnc_password = Some(crate::Secret::new("pw"));
    c.vnc.fips = Some(false);
    c.daemon.crl_file = Some(PathBuf::from("/etc/pki/CA/other.pem"));
    let text = toml::to_string(&c).expect("serialize");
    assert!(text.contains("vnc_password = \"pw\""), "{text}");
    assert_eq!(parse(&text), c);
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let c = parse(
        r#"
[daemon]
state_dir = "state"
unix_sock_dir = "../run/vmgate"
key_file = "pki/key.pem"
cert_file = "/abs/cert.pem"
ca_file = "ca.pem"
crl_file = "crl.pem"
sasl_keytab = "krb5.keytab"
[storage]
database_url = "sqlite://db/vmgate.db?mode=rwc"
[vnc]
vnc_tls_x509_cert_dir = "vnc-pki"
vnc_sasl_keytab = "../keytabs/vnc.keytab"
[qemu]
log_dir = "logs"
"#,
    );
    assert_eq!(c.daemon.state_dir, Path::new("/etc/vmgate/state"));
    assert_eq!(
        c.daemon.unix_sock_dir,
        Path::new("/etc/vmgate/../run/vmgate")
    );
    assert_eq!(c.daemon.key_file, Path::new("/etc/vmgate/pki/key.pem"));
    assert_eq!(c.daemon.cert_file, Path::new("/abs/cert.pem"));
    assert_eq!(c.daemon.ca_file, Path::new("/etc/vmgate/ca.pem"));
    assert_eq!(
        c.daemon.crl_file.as_deref(),
        Some(Path::new("/etc/vmgate/crl.pem"))
    );
    assert_eq!(
        c.storage.database_url.as_deref(),
        Some("sqlite:///etc/vmgate/db/vmgate.db?mode=rwc")
    );
    assert_eq!(
        c.vnc.vnc_tls_x509_cert_dir,
        Path::new("/etc/vmgate/vnc-pki")
    );
    assert_eq!(
        c.daemon.sasl_keytab.as_deref(),
        Some(Path::new("/etc/vmgate/krb5.keytab"))
    );
    assert_eq!(
        c.vnc.vnc_sasl_keytab.as_deref(),
        Some(Path::new("/etc/vmgate/../keytabs/vnc.keytab"))
    );
    assert_eq!(
        c.qemu.log_dir.as_deref(),
        Some(Path::new("/etc/vmgate/logs"))
    );
    // defaults are absolute and stay as they are
    assert_eq!(c.daemon.ca_file.parent(), Some(Path::new("/etc/vmgate")));
    assert_eq!(parse("").daemon.key_file, Config::default().daemon.key_file);
}

#[test]
fn only_relative_sqlite_urls_change() {
    let base = Path::new("/cfg");
    let r = |url: &str| resolve_sqlite_url(base, url).expect("utf-8");
    assert_eq!(r("sqlite://a.db").as_deref(), Some("sqlite:///cfg/a.db"));
    assert_eq!(
        r("sqlite:a.db?mode=rwc").as_deref(),
        Some("sqlite:///cfg/a.db?mode=rwc")
    );
    assert_eq!(r("sqlite:///abs/a.db"), None);
    assert_eq!(r("sqlite::memory:"), None);
    assert_eq!(r("postgres://host/db"), None);
}

#[test]
fn a_relative_config_path_anchors_at_the_working_directory() {
    let c = parse_str("[daemon]\nstate_dir = \"s\"\n", Path::new("vmgated.toml"))
        .expect("parses")
        .config;
    let cwd = std::env::current_dir().expect("cwd");
    assert_eq!(c.daemon.state_dir, cwd.join("s"));
}

#[test]
fn effective_crl_file_falls_back_to_the_system_crl_only_if_present() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fallback = dir.path().join("cacrl.pem");
    let mut d = Config::default().daemon;
    assert_eq!(d.crl_file_or(&fallback), None);
    fs::write(&fallback, "crl").expect("write");
    assert_eq!(d.crl_file_or(&fallback), Some(fallback.clone()));
    d.crl_file = Some(PathBuf::from("/x/crl.pem"));
    assert_eq!(d.crl_file_or(&fallback), Some(PathBuf::from("/x/crl.pem")));
}

#[test]
fn fips_comes_from_the_key_else_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_file = dir.path().join("fips_enabled");
    let mut v = Config::default().vnc;
    assert!(
        !v.fips_enabled_from(&proc_file),
        "a missing file means no FIPS"
    );
    fs::write(&proc_file, "1\n").expect("write");
    assert!(v.fips_enabled_from(&proc_file));
    v.fips = Some(false);
    assert!(!v.fips_enabled_from(&proc_file));
    fs::write(&proc_file, "0\n").expect("write");
    v.fips = None;
    assert!(!v.fips_enabled_from(&proc_file));
    v.fips = Some(true);
    assert!(v.fips_enabled_from(&proc_file));
}

#[test]
fn load_reports_unreadable_files_and_readable_passwords() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let err = load(&missing).expect_err("missing file").to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{err}"
    );

    let path = dir.path().join("vmgated.toml");
    fs::write(
        &path,
        "[vnc]\nvnc_password = \"pw\"\n[daemon]\nstate_dir = \"st\"\n",
    )
    .expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let loaded = load(&path).expect("loads");
    assert_eq!(loaded.config.daemon.state_dir, dir.path().join("st"));
    assert_eq!(loaded.warnings.len(), 1);
    let warning = loaded.warnings[0].to_string();
    assert!(warning.starts_with("[vnc] vnc_password: "), "{warning}");
    assert!(
        warning.contains("mode 0644") && warning.contains("chmod o-r"),
        "{warning}"
    );
    assert!(!warning.contains("\"pw\""));

    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert!(load(&path).expect("loads").warnings.is_empty());

    fs::write(&path, "[daemon]\nstate_dir = \"st\"\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(
        load(&path).expect("loads").warnings.is_empty(),
        "no password, no warning"
    );

    fs::write(&path, "[daemon]\nbogus = 1\n").expect("write");
    let err = load(&path).expect_err("bad key").to_string();
    assert_eq!(
        err,
        format!("{}:2:1: unknown key `bogus` in [daemon]", path.display())
    );
}
