//! The Kerberos test harness itself, end to end with MIT's own clients: a user logs in and
//! gets a service ticket for `vnc/localhost` whose keytab the harness wrote, a wrong
//! password is refused, two KDCs side by side never answer for each other, and a ticket
//! asked for 3 s stops being valid within seconds.

use std::{
    os::unix::fs::PermissionsExt,
    process::Command,
    time::{Duration, Instant},
};

use vmgate_tests::{
    kdc::{Kdc, REALM},
    require_tool, wait_until,
};

/// Runs a krb5 client tool with `env` and returns (success, stdout + stderr).
fn client(program: &str, args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env_remove("KRB5_TRACE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("spawn a krb5 client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_user_gets_a_ticket_and_a_service_ticket() {
    let Some(kdc) = Kdc::start() else { return };
    if !require_tool("kvno", "krb5-user") {
        return;
    }
    kdc.add_user("alice", "alicepw");
    let keytab = kdc.add_service("vnc/localhost", "vnc.keytab");
    let mode = std::fs::metadata(&keytab)
        .expect("keytab")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "keytab mode {mode:o}");
    let server = kdc.server_env();
    let (ok, listed) = client("klist", &["-k", &keytab.display().to_string()], &server);
    assert!(
        ok && listed.contains(&format!("vnc/localhost@{REALM}")),
        "{listed}"
    );

    let ccache = kdc.kinit("alice", "alicepw", None);
    assert!(ccache.starts_with(kdc.dir()));
    let env = kdc.client_env(&ccache);
    let (ok, out) = client("klist", &["-s"], &env);
    assert!(ok, "klist -s: {out}");
    let service = format!("vnc/localhost@{REALM}");
    let (ok, out) = client("kvno", &[&service], &env);
    assert!(ok, "kvno: {out}\n{}", kdc.log());
    let (ok, listed) = client("klist", &[], &env);
    assert!(ok && listed.contains(&service), "{listed}");
    assert!(kdc.ticket_valid(&ccache));
}

#[test]
fn a_wrong_password_is_refused_and_kdcs_do_not_mix() {
    let Some(first) = Kdc::start() else { return };
    let Some(second) = Kdc::start() else { return };
    first.add_user("alice", "first-pw");
    second.add_user("alice", "second-pw");
    // Each KDC, asked many times, answers from its own database only.
    for _ in 0..5 {
        let err = first
            .try_kinit("alice", "second-pw", None)
            .expect_err("the other KDC's password");
        assert!(err.contains("Password incorrect"), "{err}");
        first.kinit("alice", "first-pw", None);
        second.kinit("alice", "second-pw", None);
    }
    let err = first
        .try_kinit("bob", "bobpw", None)
        .expect_err("unknown user");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_short_lived_ticket_expires_within_seconds() {
    let Some(kdc) = Kdc::start() else { return };
    kdc.add_user("alice", "alicepw");
    let issued = Instant::now();
    let ccache = kdc.kinit("alice", "alicepw", Some("3s"));
    assert!(kdc.ticket_valid(&ccache), "fresh 3 s ticket");
    assert!(
        wait_until(Duration::from_secs(10), || !kdc.ticket_valid(&ccache)),
        "a 3 s ticket still valid after 10 s"
    );
    let lived = issued.elapsed();
    assert!(lived >= Duration::from_secs(2), "expired after {lived:?}");
    eprintln!("3 s ticket expired after {lived:?}");
}
