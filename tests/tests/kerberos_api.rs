//! Kerberos single sign-on on the API, end to end: a real MIT KDC on loopback, the real
//! vmgated with `sasl_mechanisms = ["GSSAPI"]` and a `libvirt/localhost` keytab, and the
//! real `vmgate` CLI using the user's credential cache from `kinit`, with no password, on
//! the UNIX socket and over mutual TLS (`test+tls://`, as `qemu+tls://`).
#![cfg(feature = "gssapi")]

use vmgate_tests::{TestDaemon, kdc::Kdc, pki, require_tool, vmgate_login_env};

/// A daemon whose read-write socket takes GSSAPI logins (and `extra` keys), with the
/// KDC's krb5.conf; returns it with the Kerberos environment it runs in.
fn kerberos_daemon(kdc: &Kdc, extra: &str) -> TestDaemon {
    let keytab = kdc.add_service("libvirt/localhost", "libvirt.keytab");
    let config = format!(
        "auth_unix_rw = \"sasl\"\nsasl_mechanisms = [\"GSSAPI\"]\nsasl_keytab = \"{}\"\n{extra}",
        keytab.display()
    );
    let env = kdc.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestDaemon::start_with_env(&config, &env)
}

#[test]
fn a_ticket_logs_in_without_a_password_and_the_allowlist_sees_the_principal() {
    let Some(kdc) = Kdc::start() else { return };
    kdc.add_user("alice", "alicepw");
    let d = kerberos_daemon(
        &kdc,
        "sasl_allowed_username_list = [\"alice@TEST.LOCAL\"]\n",
    );
    let ticket = kdc.kinit("alice", "alicepw", None);

    let out = vmgate_login_env(
        &d.uri(),
        None,
        &["list", "--all"],
        None,
        &kdc.client_env(&ticket),
    );
    assert_eq!(out.code, 0, "{out:#?}\n{}", d.log());
    assert!(out.stdout.contains("Name"), "{out:#?}");
    assert!(
        d.log().contains("API SASL login user=\"alice@TEST.LOCAL\"")
            || d.log().contains("API SASL login user=alice@TEST.LOCAL"),
        "{}",
        d.log()
    );

    // bob has a ticket too, but is not on sasl_allowed_username_list.
    kdc.add_user("bob", "bobpw");
    let bob = kdc.kinit("bob", "bobpw", None);
    let out = vmgate_login_env(&d.uri(), None, &["list"], None, &kdc.client_env(&bob));
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("bob@TEST.LOCAL") && out.stderr.contains("sasl_allowed_username_list"),
        "{out:#?}"
    );
}

#[test]
fn tls_clients_log_in_with_their_ticket_on_top_of_the_certificate() {
    let Some(kdc) = Kdc::start() else { return };
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    kdc.add_user("alice", "alicepw");
    let dir = tempfile::tempdir().expect("dir");
    let tls = pki::ApiTls::new(dir.path());
    let port = pki::free_port();
    let keytab = kdc.add_service("libvirt/localhost", "libvirt.keytab");
    let config = format!(
        "listen_tls = true\nlisten_addr = \"127.0.0.1\"\ntls_port = {port}\nauth_tls = \"sasl\"\n{}\
         sasl_mechanisms = [\"GSSAPI\", \"SCRAM-SHA-256\"]\nsasl_keytab = \"{}\"\n",
        tls.files(),
        keytab.display()
    );
    let env = kdc.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = TestDaemon::start_with_env(&config, &env);
    let uri = tls.uri(port);

    let ticket = kdc.kinit("alice", "alicepw", None);
    let out = vmgate_login_env(
        &uri,
        None,
        &["list", "--all"],
        None,
        &kdc.client_env(&ticket),
    );
    assert_eq!(out.code, 0, "{out:#?}\n{}", d.log());
    assert!(
        d.log().contains("API SASL login user=\"alice@TEST.LOCAL\""),
        "{}",
        d.log()
    );
    // Without a ticket the password mechanism is still there, so the CLI falls back to
    // it and, with no terminal and no auth file, says what is missing.
    let none = kdc.dir().join("no-such-ccache");
    let out = vmgate_login_env(&uri, None, &["list"], None, &kdc.client_env(&none));
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("no credentials for localhost"),
        "{out:#?}"
    );
}

#[test]
fn without_a_ticket_the_cli_says_to_run_kinit() {
    let Some(kdc) = Kdc::start() else { return };
    let d = kerberos_daemon(&kdc, "");
    let empty = kdc.dir().join("no-such-ccache");
    let out = vmgate_login_env(&d.uri(), None, &["list"], None, &kdc.client_env(&empty));
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("kinit"), "{out:#?}");
}

#[test]
fn a_local_realm_is_stripped_from_the_user_name() {
    let Some(kdc) = Kdc::start() else { return };
    kdc.add_user("alice", "alicepw");
    let extra = "sasl_local_realm = \"TEST.LOCAL\"\nsasl_allowed_username_list = [\"alice\"]\n";
    let d = kerberos_daemon(&kdc, extra);
    let ticket = kdc.kinit("alice", "alicepw", None);
    let out = vmgate_login_env(&d.uri(), None, &["list"], None, &kdc.client_env(&ticket));
    assert_eq!(out.code, 0, "{out:#?}\n{}", d.log());
}

#[test]
fn a_keytab_gone_at_run_time_is_logged_and_not_shown_to_clients() {
    let Some(kdc) = Kdc::start() else { return };
    kdc.add_user("alice", "alicepw");
    let d = kerberos_daemon(&kdc, "");
    let ticket = kdc.kinit("alice", "alicepw", None);
    let keytab = kdc.dir().join("libvirt.keytab");
    std::fs::remove_file(&keytab).expect("remove the keytab");

    let out = vmgate_login_env(&d.uri(), None, &["list"], None, &kdc.client_env(&ticket));
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("Kerberos authentication failed"),
        "{out:#?}"
    );
    let path = keytab.display().to_string();
    assert!(!out.stderr.contains(&path), "{out:#?}");
    assert!(d.log().contains(&path), "{}", d.log());
}
