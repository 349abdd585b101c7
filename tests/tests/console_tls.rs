//! Consoles over TLS, end to end: the real daemon with `[vnc] vnc_tls = true` and
//! `vnc_tls_x509_verify = true` (every console offers only VeNCrypt, and clients must
//! present a certificate the CA signed), gtk-vnc's real `gvnccapture` finding its
//! certificates under a temporary passwd home (nss_wrapper), and the harness's `RfbClient`
//! over VeNCrypt for sessions that must stay open. X509None and X509Vnc, the refusal of
//! clients without a valid certificate, the certificate's DN as the session's identity, and
//! `vmgate admin reload-tls`: open sessions keep going, new handshakes get the new
//! certificate, a broken file keeps the old configuration and the command says why.
//!
//! Certificates come from GnuTLS certtool, as an operator following libvirt's guide makes
//! them, and in the reload test from `vmgate pki`. Each test's daemon autoports from its own
//! range of ports, and every wait is a condition with a deadline.

use std::{fs, path::Path, time::Duration};

use nix::sys::signal::Signal;
use serde_json::Value;
use vmgate_tests::{
    TestDaemon,
    console::{
        ConsolePki, audit_until, events, field, gvnc_tools, install_server_cert, sessions,
        start_guest, target, tls_console_config,
    },
    pki::{Ca, Issued, client_dn},
    run_vmgate,
    vnc::{GvncHome, RfbClient, TlsCreds, cert_der, gvnccapture_as, png_size},
    wait_until,
};
use vmgated::vnc::vencrypt::Subtype;

/// How long a cut or a reload may take to show.
const CUT_DEADLINE: Duration = Duration::from_secs(5);
const PASSWORD: &str = "Tq4!vX9e";
const WRONG: &str = "Wr0ng#9k";

/// TLS consoles with required client certificates from `cert_dir`, autoporting from this
/// test's own range (`slot` is unique per test).
fn tls_config(slot: u16, cert_dir: &Path) -> String {
    tls_console_config(19_000 + slot * 20, cert_dir, "")
}

/// The `console-sessions` entry of `client`.
#[track_caller]
fn session_of(d: &TestDaemon, name: &str, client: &RfbClient) -> Value {
    let addr = client.local_addr().expect("a TCP client").to_string();
    let list = sessions(d, name);
    list.iter()
        .find(|s| field(s, "client") == addr)
        .cloned()
        .unwrap_or_else(|| panic!("no session of {addr}:\n{list:#?}"))
}

/// A VeNCrypt session that has served a full frame.
async fn open_session(port: u16, creds: &TlsCreds, password: Option<&str>) -> RfbClient {
    let mut c = RfbClient::connect_tls(port, creds, password, true)
        .await
        .expect("VeNCrypt session");
    assert!(c.full_update().await.expect("first frame") > 0);
    c
}

/// The error text of a VeNCrypt connection the gateway must refuse.
async fn refusal(port: u16, creds: &TlsCreds, password: Option<&str>) -> String {
    match RfbClient::connect_tls(port, creds, password, true).await {
        Ok(c) => panic!("the gateway admitted {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// The server certificate a new VeNCrypt handshake gets.
async fn served_cert(port: u16, creds: &TlsCreds) -> Vec<u8> {
    let c = RfbClient::connect_tls(port, creds, None, true)
        .await
        .expect("VeNCrypt session");
    c.tls().expect("a TLS session").server_cert.clone()
}

#[tokio::test]
async fn gvnccapture_with_a_client_certificate_gets_a_frame_over_x509none() {
    let Some(p) = ConsolePki::new() else { return };
    let Some(nss_wrapper) = gvnc_tools() else {
        return;
    };
    let d = TestDaemon::start_with(&tls_config(0, &p.cert_dir));
    let port = start_guest(&d, "g", "");
    let home = GvncHome::new(&nss_wrapper, &p.ca.cert, Some(&p.client));
    let png = d.dir().join("g.png");
    let cap = gvnccapture_as(&target(port), &png, None, &home);
    assert!(cap.ok, "{}\n{}", cap.transcript, d.log());
    assert_eq!(png_size(&png), Some((640, 480)));
    assert!(
        !cap.transcript.contains("Password"),
        "X509None asks for no password:\n{}",
        cap.transcript
    );
    let records = audit_until(&d, "g", |r| events(r, "auth-success").next().is_some());
    for r in events(&records, "auth-success") {
        assert_eq!(field(r, "security_type"), "vencrypt-x509none", "{r}");
        assert_eq!(field(r, "identity"), client_dn("client1"), "{r}");
    }
}

#[tokio::test]
async fn x509vnc_needs_the_certificate_and_the_password() {
    let Some(p) = ConsolePki::new() else { return };
    let Some(nss_wrapper) = gvnc_tools() else {
        return;
    };
    let d = TestDaemon::start_with(&tls_config(1, &p.cert_dir));
    let port = start_guest(&d, "g", &format!("passwd = \"{PASSWORD}\""));
    let home = GvncHome::new(&nss_wrapper, &p.ca.cert, Some(&p.client));

    let png = d.dir().join("right.png");
    let cap = gvnccapture_as(&target(port), &png, Some(PASSWORD), &home);
    assert!(cap.ok, "{}\n{}", cap.transcript, d.log());
    assert!(cap.transcript.contains("Password"), "{}", cap.transcript);
    assert_eq!(png_size(&png), Some((640, 480)));
    let png = d.dir().join("wrong.png");
    let cap = gvnccapture_as(&target(port), &png, Some(WRONG), &home);
    assert!(!cap.ok, "a wrong password captured:\n{}", cap.transcript);
    assert!(!png.exists());

    let records = audit_until(&d, "g", |r| {
        events(r, "auth-success").next().is_some() && events(r, "auth-failure").next().is_some()
    });
    for event in ["auth-success", "auth-failure"] {
        for r in events(&records, event) {
            assert_eq!(field(r, "security_type"), "vencrypt-x509vnc", "{r}");
        }
    }
    assert!(
        events(&records, "auth-success").all(|r| field(r, "identity") == client_dn("client1")),
        "{records:#?}"
    );
    assert!(
        events(&records, "auth-failure").any(|r| field(r, "reason") == "authentication failed"),
        "{records:#?}"
    );

    // The harness's client too; its session is a password session, so a password change
    // with --connected disconnect cuts it even though it also holds a certificate.
    let creds = p.creds(Some(&p.client));
    let mut c = open_session(port, &creds, Some(PASSWORD)).await;
    assert_eq!(c.tls().map(|t| t.subtype), Some(Subtype::X509Vnc));
    let listed = session_of(&d, "g", &c);
    assert_eq!(field(&listed, "security_type"), "vencrypt-x509vnc");
    d.vmgate_stdin(
        &[
            "vnc-passwd",
            "g",
            "--password-stdin",
            "--connected",
            "disconnect",
        ],
        Some("n3w-pw\n"),
    )
    .ok();
    assert!(
        c.wait_closed(CUT_DEADLINE).await,
        "the old password's X509Vnc session stayed"
    );

    let log = d.log();
    for secret in [PASSWORD, WRONG] {
        assert!(!log.contains(secret), "the daemon log shows {secret}");
    }
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused() {
    let Some(p) = ConsolePki::new() else { return };
    let Some(nss_wrapper) = gvnc_tools() else {
        return;
    };
    let d = TestDaemon::start_with(&tls_config(2, &p.cert_dir));
    let port = start_guest(&d, "g", "");

    // gtk-vnc trusting the CA but with no certificate of its own.
    let home = GvncHome::new(&nss_wrapper, &p.ca.cert, None);
    let png = d.dir().join("g.png");
    let cap = gvnccapture_as(&target(port), &png, None, &home);
    assert!(
        !cap.ok,
        "captured without a certificate:\n{}",
        cap.transcript
    );
    assert!(!png.exists());
    let records = audit_until(&d, "g", |r| events(r, "auth-failure").next().is_some());
    let failure = events(&records, "auth-failure")
        .next()
        .expect("an auth-failure");
    assert_eq!(field(failure, "security_type"), "vencrypt-x509none");
    assert_eq!(field(failure, "identity"), "");
    let reason = field(failure, "reason");
    assert!(
        reason.contains("TLS handshake failed") && reason.contains("no certificates"),
        "{reason}"
    );
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("event=auth-failure") && l.contains("no certificates")),
        "the daemon did not log the refusal:\n{}",
        d.log()
    );

    // The harness's client: no certificate, then one from another CA.
    let err = refusal(port, &p.creds(None), None).await;
    assert!(err.contains("CertificateRequired"), "{err}");
    let other = Ca::new(&p.dir.path().join("other-ca"), "Somebody Else's CA");
    let stranger = other.client("stranger", "client1");
    let err = refusal(port, &p.creds(Some(&stranger)), None).await;
    assert!(err.contains("alert"), "{err}");
    audit_until(&d, "g", |r| {
        events(r, "auth-failure").any(|e| field(e, "reason").contains("UnknownIssuer"))
    });
    // Nothing but VeNCrypt is offered: a plain RFB client finds nothing it can use.
    let err = match RfbClient::connect(port, None, true).await {
        Ok(c) => panic!("a client without TLS was admitted: {c:?}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("No usable security type") && err.contains("VeNCrypt"),
        "{err}"
    );

    assert!(sessions(&d, "g").is_empty());
    let records = audit_until(&d, "g", |r| events(r, "auth-failure").count() >= 3);
    assert_eq!(events(&records, "auth-success").count(), 0, "{records:#?}");
}

#[tokio::test]
async fn the_client_certificate_dn_is_the_session_identity() {
    let Some(p) = ConsolePki::new() else { return };
    let d = TestDaemon::start_with(&tls_config(3, &p.cert_dir));
    let port = start_guest(&d, "g", "");
    let client2 = p.ca.client("client2", "client2");
    let mut c1 = open_session(port, &p.creds(Some(&p.client)), None).await;
    let mut c2 = open_session(port, &p.creds(Some(&client2)), None).await;
    assert_eq!(c1.tls().map(|t| t.subtype), Some(Subtype::X509None));

    for (c, cn) in [(&c1, "client1"), (&c2, "client2")] {
        let s = session_of(&d, "g", c);
        assert_eq!(field(&s, "security_type"), "vencrypt-x509none", "{s}");
        assert_eq!(field(&s, "identity"), client_dn(cn), "{s}");
        assert_eq!(field(&s, "dn"), client_dn(cn), "{s}");
        assert_eq!(field(&s, "user"), "", "{s}");
    }
    let text = d.vmgate(&["console-sessions", "g"]).ok().to_owned();
    assert!(
        text.contains(&client_dn("client1")) && text.contains(&client_dn("client2")),
        "{text}"
    );
    assert!(c1.full_update().await.expect("frame") > 0);
    assert!(c2.full_update().await.expect("frame") > 0);

    drop(c1);
    let records = audit_until(&d, "g", |r| events(r, "disconnect").next().is_some());
    let gone = events(&records, "disconnect").next().expect("a disconnect");
    assert_eq!(field(gone, "identity"), client_dn("client1"), "{gone}");
    let text = d.vmgate(&["audit", "--domain", "g"]).ok().to_owned();
    assert!(text.contains(&client_dn("client2")), "{text}");
}

/// Runs `vmgate pki ARGS...` (no connection), asserting success.
fn vmgate_pki(args: &[&str]) -> String {
    run_vmgate(args, None).ok().to_owned()
}

#[tokio::test]
async fn a_reload_spares_open_sessions_and_new_handshakes_get_the_new_certificate() {
    let dir = tempfile::Builder::new()
        .prefix("vmgvncpki")
        .tempdir()
        .expect("temp dir");
    let p = |name: &str| dir.path().join(name).display().to_string();
    vmgate_pki(&["pki", "init-ca", "--dir", &p("ca")]);
    let server_cert = [
        "pki",
        "server-cert",
        "--ca-dir",
        &p("ca"),
        "--host",
        "127.0.0.1",
        "--out-dir",
        &p("server"),
        "--vnc-dir",
        &p("vnc"),
    ];
    vmgate_pki(&server_cert);
    vmgate_pki(&[
        "pki",
        "client-cert",
        "--ca-dir",
        &p("ca"),
        "--cn",
        "client1",
        "--dn",
        "C=GB,O=Harness",
        "--out-dir",
        &p("client1"),
    ]);
    let dn = vmgate_pki(&["pki", "query-dn", &p("client1/clientcert.pem")]);
    let client = Issued {
        cert: dir.path().join("client1/clientcert.pem"),
        key: dir.path().join("client1/clientkey.pem"),
    };
    let creds = TlsCreds::new(
        &dir.path().join("ca/cacert.pem"),
        Some(&client),
        "127.0.0.1",
    )
    .expect("client TLS configuration");
    let cert_path = dir.path().join("vnc/server-cert.pem");
    let old = cert_der(&cert_path).expect("the first server certificate");

    let d = TestDaemon::start_with(&tls_config(4, &dir.path().join("vnc")));
    let port = start_guest(&d, "g", "");
    let mut open = open_session(port, &creds, None).await;
    assert_eq!(open.tls().map(|t| &t.server_cert), Some(&old));

    // A new key and certificate, written over the old ones (atomically, by vmgate pki).
    let mut replace = server_cert.to_vec();
    replace.push("--force");
    vmgate_pki(&replace);
    let new = cert_der(&cert_path).expect("the new server certificate");
    assert_ne!(new, old);
    assert_eq!(
        d.vmgate(&["admin", "reload-tls"]).ok(),
        "Reloaded the TLS configuration of vnc\n"
    );

    assert!(
        open.full_update()
            .await
            .expect("an update after the reload")
            > 0,
        "the session opened before the reload stopped getting updates"
    );
    let mut fresh = open_session(port, &creds, None).await;
    assert_eq!(fresh.tls().map(|t| &t.server_cert), Some(&new));
    assert!(open.full_update().await.expect("another update") > 0);
    assert!(fresh.full_update().await.expect("an update") > 0);
    for c in [&open, &fresh] {
        assert_eq!(field(&session_of(&d, "g", c), "identity"), dn.trim());
    }
}

#[tokio::test]
async fn a_broken_new_certificate_keeps_the_old_configuration() {
    let Some(p) = ConsolePki::new() else { return };
    let d = TestDaemon::start_with(&tls_config(5, &p.cert_dir));
    let port = start_guest(&d, "g", "");
    let creds = p.creds(Some(&p.client));
    let old = cert_der(&p.server_cert()).expect("the server certificate");
    let mut open = open_session(port, &creds, None).await;

    // Not a certificate at all.
    fs::write(p.server_cert(), "not a certificate\n").expect("break the certificate");
    let out = d.vmgate(&["admin", "reload-tls"]);
    let err = out.err();
    assert!(
        err.contains("Kept the previous vnc TLS configuration")
            && err.contains(&p.server_cert().display().to_string())
            && err.contains("holds no certificate"),
        "{err}"
    );
    assert_eq!(served_cert(port, &creds).await, old);
    assert!(open.full_update().await.expect("an update") > 0);

    // Half of a new pair: the new certificate is there, its key is not yet.
    let next = p.ca.server("next", &["127.0.0.1"]);
    fs::copy(&next.cert, p.server_cert()).expect("copy the new certificate");
    let key = p.cert_dir.join("server-key.pem");
    let err = d.vmgate(&["admin", "reload-tls"]).err().to_owned();
    assert!(
        err.contains("Kept the previous vnc TLS configuration")
            && err.contains(&key.display().to_string())
            && err.contains("does not match"),
        "{err}"
    );
    assert_eq!(served_cert(port, &creds).await, old);

    // SIGHUP says the same in the log.
    d.signal(Signal::SIGHUP);
    let logged = wait_until(CUT_DEADLINE, || {
        d.log().lines().any(|l| {
            l.contains("SIGHUP: Kept the previous vnc TLS configuration")
                && l.contains(&key.display().to_string())
        })
    });
    assert!(logged, "SIGHUP did not log the broken pair:\n{}", d.log());
    assert_eq!(served_cert(port, &creds).await, old);

    // With the key in place the same files load.
    install_server_cert(&p.ca.cert, &next, &p.cert_dir);
    d.vmgate(&["admin", "reload-tls"]).ok();
    assert_eq!(
        served_cert(port, &creds).await,
        cert_der(&next.cert).expect("the new certificate")
    );
    assert!(open.full_update().await.expect("an update") > 0);
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_after_a_reload() {
    let Some(p) = ConsolePki::new() else { return };
    let d = TestDaemon::start_with(&tls_config(6, &p.cert_dir));
    let port = start_guest(&d, "g", "");
    let client2 = p.ca.client("client2", "client2");
    open_session(port, &p.creds(Some(&p.client)), None).await;

    p.ca.crl(&[&p.client], &p.cert_dir.join("ca-crl.pem"));
    d.vmgate(&["admin", "reload-tls"]).ok();
    let err = refusal(port, &p.creds(Some(&p.client)), None).await;
    assert!(err.contains("alert"), "{err}");
    audit_until(&d, "g", |r| {
        events(r, "auth-failure").any(|e| field(e, "reason").contains("Revoked"))
    });
    open_session(port, &p.creds(Some(&client2)), None).await;
}
