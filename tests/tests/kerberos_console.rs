//! Kerberos single sign-on on consoles, end to end: a real MIT KDC on loopback, the real
//! vmgated with `vnc_sasl_mechanisms = ["GSSAPI"]` and a `vnc/localhost` keytab, and
//! gtk-vnc's `gvnccapture` with a ticket from `kinit` (Cyrus SASL's GSSAPI plugin), over
//! RFB SASL (type 20) with a confidentiality layer and inside VeNCrypt X509SASL. The ACL
//! judges principals; refusals name their reason in the audit trail. The harness's own
//! GSSAPI client (`vmgate_tests::vnc_gssapi`, run as the `gss-rfb-client` process so that
//! it has a ticket cache of its own) presents tokens when the test decides, e.g. after
//! the ticket expired; a recording proxy shows what crosses the wire after the login.
#![cfg(feature = "gssapi")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use vmgate_tests::{
    TestDaemon,
    console::{
        ConsolePki, audit_until, events, field, gvnc_tools, start_guest, tls_console_config,
    },
    kdc::{CLOCKSKEW, Kdc},
    require_library,
    vnc::{GvncHome, RfbClient, gvnccapture_env, png_size},
    vnc_gssapi::{
        process::{GssClient, Plan},
        wire::{Recorder, Transcript, layer_packets, plaintext_markers, sasl_end},
    },
    wait_until,
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
    daemon(kdc, &ports(base, base + 19, &kerberos_vnc(keytab, "")))
}

/// `[vnc]` with the autoport range `min..=max` and `extra` keys.
fn ports(min: u16, max: u16, extra: &str) -> String {
    format!("\n[vnc]\nremote_display_port_min = {min}\nremote_display_port_max = {max}\n{extra}")
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

    // A Kerberos-only console takes no passwords, so VeNCrypt Plain is not offered.
    let creds = p.creds(Some(&p.client));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let plain = runtime.block_on(RfbClient::connect_plain(port, &creds, "alice", "pw", true));
    let err = format!("{:#}", plain.expect_err("no X509Plain"));
    assert!(err.contains("Plain") || err.contains("262"), "{err}");
}

/// The harness's GSSAPI console client (a child process) with `ccache`'s ticket.
fn gss_client(kdc: &Kdc, ccache: &Path) -> GssClient {
    let program = PathBuf::from(env!("CARGO_BIN_EXE_gss-rfb-client"));
    GssClient::new(program, &[], kdc.client_env(ccache), "localhost")
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The size of a full frame in the test driver's native 32-bit format.
const FRAME_BYTES: u64 = 640 * 480 * 4;

#[test]
fn our_client_logs_in_with_a_ticket_and_gets_full_frames_through_the_layer() {
    let Some(kdc) = Kdc::start() else { return };
    kdc.add_user("alice", "alicepw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let d = plain_daemon(&kdc, 22_100, &keytab);
    let port = start_guest(&d, "g", "");
    let alice = kdc.kinit("alice", "alicepw", None);

    let plan = Plan {
        logins: 1,
        updates: 2,
        ..Plan::default()
    };
    let report = gss_client(&kdc, &alice).run(local(port), &plan);
    let report = report.unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(report.name(), "g");
    assert_eq!(report.size(), (640, 480));
    assert_eq!(report.update_bytes(), [FRAME_BYTES, FRAME_BYTES]);

    // Without TLS only confidentiality is offered: a client wanting integrity alone
    // (below QEMU's 56 bits) finds nothing it accepts.
    let integrity = Plan {
        layer: Some(vmgate::login::gssapi::LAYER_INTEGRITY),
        ..plan
    };
    let refused = gss_client(&kdc, &alice).run(local(port), &integrity);
    let err = refused.expect_err("integrity alone is not offered");
    assert!(err.contains("offers security layers 0x04"), "{err}");
    let records = audit_until(&d, "g", |r| events(r, "auth-success").next().is_some());
    let success = events(&records, "auth-success").next().expect("success");
    assert_eq!(field(success, "security_type"), "sasl");
    assert_eq!(field(success, "identity"), "alice@TEST.LOCAL");
}

#[test]
fn an_expired_ticket_is_refused_by_the_gateway() {
    let Some(kdc) = Kdc::start() else { return };
    kdc.add_user("alice", "alicepw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let d = plain_daemon(&kdc, 22_120, &keytab);
    let port = start_guest(&d, "g", "");

    // Control: the same held login with a fresh ticket gets in.
    let fresh = kdc.kinit("alice", "alicepw", None);
    let held = gss_client(&kdc, &fresh).hold(local(port)).expect("token");
    let report = held.go().unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(report.update_bytes(), [FRAME_BYTES]);

    let short = kdc.kinit("alice", "alicepw", Some("4s"));
    // The client refuses an expired ticket outright: that the token is built proves the
    // ticket was still valid then.
    let held = gss_client(&kdc, &short).hold(local(port));
    let held = held.unwrap_or_else(|e| panic!("no token from a valid ticket: {e}"));
    let expired = wait_until(Duration::from_secs(20), || !kdc.ticket_valid(&short));
    assert!(expired, "the 4 s ticket never expired");
    // The acceptor allows the ticket's end plus the clock skew; Kerberos times are in
    // whole seconds, hence one more.
    std::thread::sleep(CLOCKSKEW + Duration::from_secs(1));
    let err = held.go().expect_err("an expired ticket must be refused");
    assert!(err.contains("Authentication failed"), "{err}");

    let records = audit_until(&d, "g", |r| events(r, "auth-failure").next().is_some());
    let refused = events(&records, "auth-failure").next().expect("refusal");
    assert_eq!(field(refused, "security_type"), "sasl", "{refused:#?}");
    // MIT's words: "Kerberos: Unspecified GSS failure. ... (Ticket expired)".
    let reason = field(refused, "reason");
    assert!(
        reason.contains("Kerberos") && reason.contains("Ticket expired"),
        "{reason}"
    );
}

/// A guest name that nothing but ServerInit would put on the wire.
const CANARY: &str = "canary-q7zx4-guest";

/// What gvnccapture sent and got through a recorder on `localhost:PROXY` in front of
/// `console`, after it saved a 640x480 frame.
fn record_capture(
    console: u16,
    proxy_ports: std::ops::RangeInclusive<u16>,
    env: &[(String, String)],
    d: &TestDaemon,
) -> Vec<Transcript> {
    let recorder = Recorder::start(proxy_ports, local(console)).expect("recorder");
    let png = d.dir().join("canary.png");
    let cap = gvnccapture_env(&localhost(recorder.port()), &png, None, env);
    assert!(cap.ok, "{}\n{}", cap.transcript, d.log());
    assert_eq!(png_size(&png), Some((640, 480)));
    let transcripts = recorder.transcripts(Duration::from_secs(10));
    assert!(
        transcripts.iter().all(|t| t.closed),
        "a proxied connection stayed open"
    );
    transcripts
}

#[test]
fn the_stream_after_authentication_is_not_readable_on_the_wire() {
    let Some(kdc) = Kdc::start() else { return };
    if gvnc_gssapi().is_none() {
        return;
    }
    kdc.add_user("alice", "alicepw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let d = daemon(&kdc, &ports(22_060, 22_069, &kerberos_vnc(&keytab, "")));
    let port = start_guest(&d, CANARY, "");
    let alice = kdc.kinit("alice", "alicepw", None);

    let transcripts = record_capture(port, 22_070..=22_079, &kdc.client_env(&alice), &d);
    let mut layered_frames = 0;
    for t in &transcripts {
        let (server_at, client_at) = sasl_end(t).unwrap_or_else(|e| panic!("{e:#}: {t:?}"));
        for (side, bytes) in [
            ("server", &t.to_client[server_at..]),
            ("client", &t.to_server[client_at..]),
        ] {
            let found = plaintext_markers(bytes, CANARY, 640, 480);
            assert!(found.is_empty(), "the {side} sent {found:?} in the clear");
            let packets = layer_packets(bytes).unwrap_or_else(|e| panic!("{side}: {e:#}"));
            assert!(packets > 0, "the {side} sent nothing through the layer");
        }
        // A frame of 640x480 pixels is at least that many bytes in any pixel format.
        if t.to_client.len() - server_at > 640 * 480 {
            layered_frames += 1;
        }
    }
    assert_eq!(layered_frames, 1, "one connection carried the frame");

    // Control: the same recorder in front of a console without SASL shows all markers.
    let plain = TestDaemon::start_with(&ports(22_080, 22_089, ""));
    let port = start_guest(&plain, CANARY, "");
    let transcripts = record_capture(port, 22_090..=22_099, &[], &plain);
    let t = transcripts
        .iter()
        .find(|t| t.to_client.len() > 640 * 480)
        .expect("the frame");
    let found = plaintext_markers(&t.to_client, CANARY, 640, 480);
    assert_eq!(found.len(), 3, "server markers in plaintext: {found:?}");
    let found = plaintext_markers(&t.to_server, CANARY, 640, 480);
    assert_eq!(found, ["the full-screen rectangle"], "client markers");
}
