//! Kerberos single sign-on on consoles, end to end: a real MIT KDC on loopback, the real
//! vmgated with `vnc_sasl_mechanisms = ["GSSAPI"]` and a `vnc/localhost` keytab, and
//! gtk-vnc's `gvnccapture` with a ticket from `kinit` (Cyrus SASL's GSSAPI plugin), over
//! RFB SASL (type 20) with a confidentiality layer and inside VeNCrypt X509SASL. The ACL
//! judges principals; refusals name their reason in the audit trail.
#![cfg(feature = "gssapi")]

use std::path::{Path, PathBuf};

use vmgate_tests::{
    TestDaemon,
    console::{
        ConsolePki, audit_until, events, field, gvnc_tools, start_guest, tls_console_config,
    },
    kdc::Kdc,
    require_library,
    vnc::{GvncHome, gvnccapture_env, png_size},
};

/// `[vnc]` keys for GSSAPI consoles with ports from `base` and the keytab `keytab`.
fn kerberos_vnc(keytab: &Path, extra: &str) -> String {
    format!(
        "vnc_sasl = true\nvnc_sasl_mechanisms = [\"GSSAPI\"]\nvnc_sasl_keytab = \"{}\"\n{extra}",
        keytab.display()
    )
}

fn daemon(kdc: &Kdc, config: &str) -> TestDaemon {
    let env = kdc.server_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestDaemon::start_with_env(config, &env)
}

/// A daemon with plain-TCP GSSAPI consoles on ports from `base`.
fn plain_daemon(kdc: &Kdc, base: u16, keytab: &Path) -> TestDaemon {
    let config = format!(
        "\n[vnc]\nremote_display_port_min = {base}\nremote_display_port_max = {}\n{}",
        base + 19,
        kerberos_vnc(keytab, "")
    );
    daemon(kdc, &config)
}

/// What gvnccapture needs for GSSAPI: its tools and Cyrus SASL's GSSAPI plugin.
fn gvnc_gssapi() -> Option<PathBuf> {
    let nss_wrapper = gvnc_tools()?;
    require_library("sasl2/libgssapiv2.so", "libsasl2-modules-gssapi-mit")?;
    Some(nss_wrapper)
}

/// `localhost:DISPLAY`: the host name gtk-vnc asks a `vnc/localhost` ticket for.
fn localhost(port: u16) -> String {
    format!("localhost:{}", port - 5900)
}

#[test]
fn gvnccapture_logs_in_with_a_ticket_over_sasl_and_the_acl_judges_principals() {
    let Some(kdc) = Kdc::start() else { return };
    if gvnc_gssapi().is_none() {
        return;
    }
    kdc.add_user("alice", "alicepw");
    kdc.add_user("bob", "bobpw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let d = plain_daemon(&kdc, 22_000, &keytab);
    let port = start_guest(&d, "g", "");
    d.vmgate(&["console-acl", "grant", "g", "--user", "alice@TEST.LOCAL"])
        .ok();
    let png = d.dir().join("g.png");

    let alice = kdc.kinit("alice", "alicepw", None);
    let cap = gvnccapture_env(&localhost(port), &png, None, &kdc.client_env(&alice));
    assert!(cap.ok, "{}\n{}", cap.transcript, d.log());
    assert_eq!(png_size(&png), Some((640, 480)));

    let bob = kdc.kinit("bob", "bobpw", None);
    let cap = gvnccapture_env(&localhost(port), &png, None, &kdc.client_env(&bob));
    assert!(!cap.ok, "bob is not on the ACL:\n{}", cap.transcript);

    let records = audit_until(&d, "g", |r| events(r, "auth-failure").next().is_some());
    let success: Vec<_> = events(&records, "auth-success").collect();
    assert_eq!(success.len(), 1, "{records:#?}");
    assert_eq!(field(success[0], "security_type"), "sasl");
    assert_eq!(field(success[0], "identity"), "alice@TEST.LOCAL");
    let refused: Vec<_> = events(&records, "auth-failure").collect();
    let reason = field(refused[0], "reason");
    assert!(
        reason.contains("not allowed") && reason.contains("bob@TEST.LOCAL"),
        "{reason}"
    );
}

#[test]
fn no_ticket_or_a_keytab_for_another_host_is_refused() {
    let Some(kdc) = Kdc::start() else { return };
    if gvnc_gssapi().is_none() {
        return;
    }
    kdc.add_user("alice", "alicepw");
    // The daemon holds only the key of vnc/otherhost; clients ask for vnc/localhost.
    kdc.add_service("vnc/localhost", "unused.keytab");
    let keytab = kdc.add_service("vnc/otherhost", "vnc.keytab");
    let d = plain_daemon(&kdc, 22_020, &keytab);
    let port = start_guest(&d, "g", "");
    let png = d.dir().join("g.png");

    let alice = kdc.kinit("alice", "alicepw", None);
    let cap = gvnccapture_env(&localhost(port), &png, None, &kdc.client_env(&alice));
    assert!(
        !cap.ok,
        "the wrong keytab cannot accept:\n{}",
        cap.transcript
    );
    let records = audit_until(&d, "g", |r| events(r, "auth-failure").next().is_some());
    let reason = field(
        events(&records, "auth-failure").next().expect("refusal"),
        "reason",
    );
    assert!(reason.contains("Kerberos"), "{reason}");

    let none = kdc.dir().join("no-such-ccache");
    let cap = gvnccapture_env(&localhost(port), &png, None, &kdc.client_env(&none));
    assert!(!cap.ok, "no ticket, no console:\n{}", cap.transcript);
}

#[test]
fn gvnccapture_logs_in_with_a_ticket_inside_x509sasl() {
    let Some(kdc) = Kdc::start() else { return };
    let Some(p) = ConsolePki::new() else { return };
    let Some(nss_wrapper) = gvnc_gssapi() else {
        return;
    };
    kdc.add_user("alice", "alicepw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let config = tls_console_config(22_040, &p.cert_dir, &kerberos_vnc(&keytab, ""));
    let d = daemon(&kdc, &config);
    let port = start_guest(&d, "g", "");
    let home = GvncHome::new(&nss_wrapper, &p.ca.cert, Some(&p.client));
    let png = d.dir().join("g.png");

    let alice = kdc.kinit("alice", "alicepw", None);
    let cap = gvnccapture_env(&localhost(port), &png, Some(&home), &kdc.client_env(&alice));
    assert!(cap.ok, "{}\n{}", cap.transcript, d.log());
    let records = audit_until(&d, "g", |r| events(r, "auth-success").next().is_some());
    let success = events(&records, "auth-success").next().expect("success");
    assert_eq!(field(success, "security_type"), "vencrypt-x509sasl");
    assert!(
        field(success, "identity").starts_with("alice@TEST.LOCAL"),
        "{success:#?}"
    );
}
