//! Per-guest console ACLs and SASL users, end to end: the real daemon with consoles over
//! VeNCrypt (`vnc_tls`, client certificates required) and user logins (`vnc_sasl`), users
//! made with `vmgate sasl-user`, rules changed with `vmgate console-acl` while sessions are
//! open. gtk-vnc's `gvnccapture` logs in with X509SASL (SCRAM-SHA-256 through Cyrus SASL);
//! sessions that must stay open to be cut are the harness's `RfbClient` with X509Plain, as
//! TigerVNC logs in. Every cut is waited for with a deadline.

use std::{path::Path, time::Duration};

use vmgate_tests::{
    TestDaemon,
    console::{
        ConsolePki, audit_until, events, field, gvnc_tools, json_array, sessions, start_guest,
        target, tls_console_config,
    },
    pki::client_dn,
    require_library,
    vnc::{GvncHome, RfbClient, TlsCreds, gvnccapture_login, png_size},
};

/// How long a revoked session may take to be cut (the benchmark measures the real figure).
const CUT_DEADLINE: Duration = Duration::from_secs(5);

/// A daemon with TLS consoles (ports from `base`), `vnc_sasl` when `sasl`, and the users
/// alice (`alice-pw`) and bob (`bob-pw`).
fn daemon(p: &ConsolePki, base: u16, sasl: bool) -> TestDaemon {
    let extra = if sasl { "vnc_sasl = true\n" } else { "" };
    let d = TestDaemon::start_with(&tls_console_config(base, &p.cert_dir, extra));
    for (name, pw) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        d.vmgate_stdin(
            &["sasl-user", "add", name, "--password-stdin"],
            Some(&format!("{pw}\n")),
        )
        .ok();
    }
    d
}

async fn plain_session(port: u16, creds: &TlsCreds, user: &str, pw: &str) -> RfbClient {
    let mut c = RfbClient::connect_plain(port, creds, user, pw, true)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e:#}"));
    assert!(c.full_update().await.expect("first frame") > 0);
    c
}

async fn plain_refusal(port: u16, creds: &TlsCreds, user: &str, pw: &str) -> String {
    match RfbClient::connect_plain(port, creds, user, pw, true).await {
        Ok(_) => panic!("{user} was admitted"),
        Err(e) => format!("{e:#}"),
    }
}

fn acl(d: &TestDaemon, args: &[&str]) -> String {
    let mut full = vec!["console-acl"];
    full.extend_from_slice(args);
    d.vmgate(&full).ok().to_owned()
}

#[tokio::test]
async fn gvnccapture_logs_in_with_x509sasl_and_the_acl_decides() {
    let Some(p) = ConsolePki::new() else { return };
    let Some(nss_wrapper) = gvnc_tools() else {
        return;
    };
    // gtk-vnc's SCRAM-SHA-256 is Cyrus SASL's plugin.
    if require_library("sasl2/libscram.so", "libsasl2-modules").is_none() {
        return;
    }
    let d = daemon(&p, 20_000, true);
    let port = start_guest(&d, "g", "");
    acl(&d, &["grant", "g", "--user", "alice"]);
    let home = GvncHome::new(&nss_wrapper, &p.ca.cert, Some(&p.client));
    let png = d.dir().join("g.png");

    let cap = gvnccapture_login(&target(port), &png, "alice", "alice-pw", &home);
    assert!(cap.ok, "{}\n{}", cap.transcript, d.log());
    assert_eq!(png_size(&png), Some((640, 480)));
    for (user, pw) in [("bob", "bob-pw"), ("alice", "wrong"), ("mallory", "x")] {
        let cap = gvnccapture_login(&target(port), &png, user, pw, &home);
        assert!(!cap.ok, "{user}/{pw} must be refused:\n{}", cap.transcript);
    }

    let records = audit_until(&d, "g", |r| events(r, "auth-failure").count() >= 3);
    let success: Vec<_> = events(&records, "auth-success").collect();
    assert_eq!(success.len(), 1, "{records:#?}");
    assert_eq!(field(success[0], "security_type"), "vencrypt-x509sasl");
    assert_eq!(
        field(success[0], "identity"),
        format!("alice ({})", client_dn("client1"))
    );
    let reasons: Vec<&str> = events(&records, "auth-failure")
        .map(|r| field(r, "reason"))
        .collect();
    assert!(
        reasons[0].contains("not allowed") && reasons[0].contains("bob"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1], reasons[2],
        "an unknown user reads like a wrong password"
    );
    assert!(reasons[1].contains("authentication failed"), "{reasons:?}");
}

#[tokio::test]
async fn revoking_a_user_cuts_that_session_at_once_and_spares_the_others() {
    let Some(p) = ConsolePki::new() else { return };
    let d = daemon(&p, 20_020, true);
    let port = start_guest(&d, "g", "");
    let creds = p.creds(Some(&p.client));
    acl(&d, &["grant", "g", "--user", "alice"]);
    acl(&d, &["grant", "g", "--user", "bob"]);
    let mut alice = plain_session(port, &creds, "alice", "alice-pw").await;
    let mut bob = plain_session(port, &creds, "bob", "bob-pw").await;
    let list = sessions(&d, "g");
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(list.iter().any(|s| field(s, "user") == "bob"
        && field(s, "dn") == client_dn("client1")
        && field(s, "security_type") == "vencrypt-x509plain"));

    let out = acl(&d, &["revoke", "g", "--user", "bob"]);
    assert!(out.contains("1 session(s) disconnected"), "{out}");
    assert!(bob.wait_closed(CUT_DEADLINE).await, "bob's session was cut");
    assert!(alice.full_update().await.expect("alice still served") > 0);
    let left = sessions(&d, "g");
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(field(&left[0], "user"), "alice");

    let refused = plain_refusal(port, &creds, "bob", "bob-pw").await;
    assert!(refused.contains("not allowed"), "{refused}");

    let records = audit_until(&d, "g", |r| events(r, "revoked").next().is_some());
    let revoked: Vec<_> = events(&records, "revoked").collect();
    assert_eq!(revoked.len(), 1, "{records:#?}");
    assert!(field(revoked[0], "identity").starts_with("bob"));
    assert!(field(revoked[0], "reason").contains("access revoked"));
    let changes: Vec<_> = events(&records, "acl-change").collect();
    assert_eq!(changes.len(), 3, "{records:#?}");
    assert!(field(changes[2], "reason").contains("removed user bob"));
    assert!(
        field(changes[2], "identity").starts_with("uid "),
        "who changed it"
    );

    // Deleting a user cuts its sessions too.
    let out = d.vmgate(&["sasl-user", "del", "alice"]);
    assert!(out.ok().contains("1 console session(s) disconnected"));
    assert!(
        alice.wait_closed(CUT_DEADLINE).await,
        "alice's session was cut"
    );
}

#[tokio::test]
async fn connected_keep_leaves_open_sessions_but_refuses_new_ones() {
    let Some(p) = ConsolePki::new() else { return };
    let d = daemon(&p, 20_040, true);
    let port = start_guest(&d, "g", "connected = \"keep\"");
    let creds = p.creds(Some(&p.client));
    let mut bob = plain_session(port, &creds, "bob", "bob-pw").await;
    let out = acl(&d, &["grant", "g", "--user", "alice"]);
    assert!(!out.contains("disconnected"), "{out}");
    assert!(bob.full_update().await.expect("bob still served") > 0);
    let refused = plain_refusal(port, &creds, "bob", "bob-pw").await;
    assert!(refused.contains("not allowed"), "{refused}");
}

#[tokio::test]
async fn certificate_dns_are_judged_with_x509none_and_cut_when_denied() {
    let Some(p) = ConsolePki::new() else { return };
    let d = daemon(&p, 20_060, false);
    let port = start_guest(&d, "g", "");
    let client2 = p.ca.client("client2", "client2");
    let (one, two) = (p.creds(Some(&p.client)), p.creds(Some(&client2)));
    let mut first = RfbClient::connect_tls(port, &one, None, true)
        .await
        .expect("client1 before any rule");
    let mut second = RfbClient::connect_tls(port, &two, None, true)
        .await
        .expect("client2 before any rule");
    assert!(first.full_update().await.expect("frame") > 0);

    acl(&d, &["grant", "g", "--dn", "*CN=client1"]);
    assert!(second.wait_closed(CUT_DEADLINE).await, "client2 was cut");
    assert!(first.full_update().await.expect("client1 still served") > 0);
    match RfbClient::connect_tls(port, &two, None, true).await {
        Ok(_) => panic!("client2 admitted"),
        Err(e) => assert!(format!("{e:#}").contains("not allowed"), "{e:#}"),
    }
    let out = acl(&d, &["deny", "g", "--dn", &client_dn("client1")]);
    assert!(out.contains("1 session(s) disconnected"), "{out}");
    assert!(first.wait_closed(CUT_DEADLINE).await, "client1 was cut");
}

#[test]
fn rules_persist_and_a_console_without_identities_gets_a_warning() {
    let mut d = TestDaemon::start();
    let out = d.vmgate(&["define", &guest_file(&d)]);
    out.ok();
    let granted = d.vmgate(&["console-acl", "grant", "g", "--user", "alice"]);
    granted.ok();
    assert!(
        granted.stderr.contains("vnc_sasl is off"),
        "warns: {granted:?}"
    );
    let denied = d.vmgate(&["console-acl", "deny", "g", "--dn", "*O=Other*"]);
    assert!(denied.stderr.contains("vnc_tls_x509_verify"), "{denied:?}");
    let rules = d.file("rules.toml", "[[rule]]\nkind = \"user\"\nmatch = \"carol\"\npolicy = \"allow\"\n[[rule]]\nkind = \"dn\"\nmatch = \"*\"\npolicy = \"deny\"\n");
    d.vmgate(&["console-acl", "set", "g", rules.to_str().expect("utf-8")])
        .ok();
    let bad = d.file(
        "bad.toml",
        "[[rule]]\nkind = \"group\"\nmatch = \"x\"\npolicy = \"allow\"\n",
    );
    let err = d.vmgate(&["console-acl", "set", "g", bad.to_str().expect("utf-8")]);
    assert!(err.err().contains("bad.toml:2:"), "{err:?}");

    assert!(d.stop());
    d.restart();
    let list = json_array(d.vmgate(&["console-acl", "list", "g", "--json"]).ok());
    let seen: Vec<(&str, &str, &str)> = list
        .iter()
        .map(|r| (field(r, "kind"), field(r, "pattern"), field(r, "policy")))
        .collect();
    assert_eq!(seen, [("user", "carol", "allow"), ("dn", "*", "deny")]);
    let missing = d.vmgate(&["console-acl", "revoke", "g", "--rule", "999"]);
    assert!(missing.err().contains("No rule 999"), "{missing:?}");
    let ro = d.vmgate(&["-r", "sasl-user", "list"]);
    assert!(ro.err().contains("read-only"), "{ro:?}");
    let ro = d.vmgate(&["-r", "console-acl", "list", "g"]);
    ro.ok();
}

fn guest_file(d: &TestDaemon) -> String {
    let path = d.file("g.toml", "name = \"g\"\n[graphics]\ntype = \"vnc\"\n");
    path_str(&path)
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn user_names_and_passwords_are_checked_and_never_taken_from_argv() {
    let d = TestDaemon::start();
    let bad = d.vmgate_stdin(
        &["sasl-user", "add", "a,b", "--password-stdin"],
        Some("pw\n"),
    );
    assert!(bad.err().contains("letters, digits"), "{bad:?}");
    let empty = d.vmgate_stdin(
        &["sasl-user", "add", "carol", "--password-stdin"],
        Some("\n"),
    );
    assert!(empty.err().contains("empty"), "{empty:?}");
    let argv = d.vmgate(&["sasl-user", "add", "carol", "hunter2"]);
    assert_eq!(argv.code, 1, "no password argument: {argv:?}");
    d.vmgate_stdin(
        &["sasl-user", "add", "carol", "--password-stdin"],
        Some("pw\n"),
    )
    .ok();
    let dup = d.vmgate_stdin(
        &["sasl-user", "add", "carol", "--password-stdin"],
        Some("pw\n"),
    );
    assert!(dup.err().contains("already exists"), "{dup:?}");
    assert_eq!(d.vmgate(&["sasl-user", "list"]).ok(), "carol\n");
    assert!(!d.log().contains("hunter2") && !d.log().contains("pw\n"));
    let gone = d.vmgate_stdin(
        &["sasl-user", "passwd", "nobody", "--password-stdin"],
        Some("pw\n"),
    );
    assert!(gone.err().contains("No SASL user \"nobody\""), "{gone:?}");
}
