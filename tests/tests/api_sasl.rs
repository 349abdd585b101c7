//! SASL logins on the API, end to end: the real vmgated with `auth_unix_rw`, `auth_tcp`
//! and `auth_tls` set to "sasl", the real `vmgate` CLI reading its auth file, and a raw
//! gRPC client for what the CLI never does (calling before logging in, asking for PLAIN on
//! plain TCP). Users are made through the API first, as an operator would before turning
//! SASL on.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use tonic::Code;
use vmgate_proto::v1::{
    Empty, ListRequest, SaslStart, auth_client::AuthClient, domain_client::DomainClient,
};
use vmgate_tests::{TestDaemon, bins, pki, require_tool, vmgate_login};

/// A daemon that already has the users alice (password `alice-pw`) and bob (`bob-pw`),
/// restarted with `extra` in its config.
fn daemon_with_users(extra: &str) -> TestDaemon {
    TestDaemon::start_with_users(&[("alice", "alice-pw"), ("bob", "bob-pw")], extra)
}

/// An auth file with `entries` of (host, user, password), mode `mode`.
fn auth_file(dir: &Path, entries: &[(&str, &str, &str)], mode: u32) -> PathBuf {
    let path = dir.join("auth.toml");
    let text: String = entries
        .iter()
        .map(|(host, user, pw)| {
            format!("[[credentials]]\nhost = {host:?}\nusername = {user:?}\npassword = {pw:?}\n")
        })
        .collect();
    std::fs::write(&path, text).expect("write the auth file");
    pki::set_mode(&path, mode);
    path
}

fn logins(d: &TestDaemon) -> usize {
    d.log().matches("API SASL login user=").count()
}

#[test]
fn the_unix_socket_logs_in_from_the_auth_file_once_per_connection() {
    let d = daemon_with_users("auth_unix_rw = \"sasl\"\n");
    let uri = d.uri();

    let none = vmgate_login(&uri, None, &["list", "--all"], None);
    assert_eq!(none.code, 1);
    assert!(
        none.err().contains("no credentials for localhost") && none.err().contains("auth.toml"),
        "{}",
        none.err()
    );

    let dir = tempfile::tempdir().expect("dir");
    let readable = auth_file(dir.path(), &[("localhost", "alice", "alice-pw")], 0o644);
    let out = vmgate_login(&uri, Some(&readable), &["list", "--all"], None);
    assert!(out.err().contains("chmod 600"), "{}", out.err());

    let good = auth_file(dir.path(), &[("localhost", "alice", "alice-pw")], 0o600);
    let before = logins(&d);
    let script = "list --all\ndomstate nosuch\nversion\n";
    let out = vmgate_login(&uri, Some(&good), &[], Some(script));
    assert!(out.stdout.contains("Name"), "{out:?}");
    assert!(out.stdout.contains("vmgated"), "{out:?}");
    assert_eq!(logins(&d), before + 1, "one login for the whole script");

    for (user, pw) in [("alice", "wrong"), ("mallory", "alice-pw")] {
        let bad = auth_file(dir.path(), &[("localhost", user, pw)], 0o600);
        let out = vmgate_login(&uri, Some(&bad), &["list"], None);
        assert_eq!(out.code, 1);
        assert!(out.err().contains("authentication failed"), "{}", out.err());
    }
}

#[test]
fn the_allowed_username_list_refuses_other_users() {
    let d = daemon_with_users("auth_unix_rw = \"sasl\"\nsasl_allowed_username_list = [\"ali*\"]\n");
    let dir = tempfile::tempdir().expect("dir");
    let bob = auth_file(dir.path(), &[("localhost", "bob", "bob-pw")], 0o600);
    let out = vmgate_login(&d.uri(), Some(&bob), &["list"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.err().contains("not in sasl_allowed_username_list"),
        "{}",
        out.err()
    );
    let alice = auth_file(dir.path(), &[("localhost", "alice", "alice-pw")], 0o600);
    vmgate_login(&d.uri(), Some(&alice), &["list"], None).ok();
}

#[test]
fn plain_tcp_is_refused_without_min_ssf_zero() {
    let d = TestDaemon::start();
    let config = d.file(
        "tcp.toml",
        &format!(
            "[daemon]\ndriver = \"test\"\nstate_dir = \"{0}/s\"\nunix_sock_dir = \"{0}/r\"\n\
             listen_tcp = true\n",
            d.dir().display()
        ),
    );
    let out = Command::new(bins::vmgated())
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output()
        .expect("vmgated");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("tcp_min_ssf") && text.contains("listen_tls"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_offers_only_scram_and_nothing_works_before_the_login() {
    let port = pki::free_port();
    let d = daemon_with_users(&format!(
        "listen_tcp = true\nlisten_addr = \"127.0.0.1\"\ntcp_port = {port}\ntcp_min_ssf = 0\n"
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect over TCP");
    let list = DomainClient::new(channel.clone())
        .list(ListRequest::default())
        .await
        .expect_err("not logged in");
    assert_eq!(list.code(), Code::Unauthenticated, "{list:?}");
    assert!(list.message().contains("log in first"), "{list:?}");

    let mut auth = AuthClient::new(channel);
    let offer = auth.mechanisms(Empty {}).await.expect("offer").into_inner();
    assert!(offer.required);
    assert_eq!(
        offer.mechanisms,
        ["SCRAM-SHA-256"],
        "PLAIN never on plain TCP"
    );
    let plain = auth
        .start(SaslStart {
            mechanism: "PLAIN".into(),
            data: b"\0alice\0alice-pw".to_vec(),
            has_data: true,
        })
        .await
        .expect_err("PLAIN refused");
    assert!(plain.message().contains("not offered"), "{plain:?}");

    let dir = tempfile::tempdir().expect("dir");
    let file = auth_file(dir.path(), &[("127.0.0.1", "alice", "alice-pw")], 0o600);
    let uri = format!("test+tcp://127.0.0.1:{port}/default");
    let out = vmgate_login(&uri, Some(&file), &["list", "--all"], None);
    out.ok();
    assert!(out.stderr.contains("plain TCP"), "warns: {out:?}");
    drop(d);
}

#[test]
fn tls_with_sasl_needs_the_certificate_and_the_user() {
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let tls = pki::ApiTls::new(dir.path());
    let port = pki::free_port();
    let d = daemon_with_users(&format!(
        "listen_tls = true\nlisten_addr = \"127.0.0.1\"\ntls_port = {port}\nauth_tls = \"sasl\"\n{}",
        tls.files()
    ));
    let uri = tls.uri(port);
    let none = vmgate_login(&uri, None, &["list"], None);
    assert!(none.err().contains("no credentials"), "{}", none.err());
    let file = auth_file(dir.path(), &[("localhost", "bob", "bob-pw")], 0o600);
    let out = vmgate_login(&uri, Some(&file), &["list", "--all"], None);
    out.ok();
    assert!(!out.stderr.contains("plain TCP"), "no warning inside TLS");
    assert!(
        d.log().contains("API SASL login user=\"bob\""),
        "the daemon logged the login"
    );
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_terminal_user_is_prompted_once_for_a_whole_shell_session() {
    if !require_tool("expect", "expect") {
        return;
    }
    let d = daemon_with_users("auth_unix_rw = \"sasl\"\n");
    let before = logins(&d);
    // The shell connects (and logs in) at its first command. rpassword turns echo off
    // with TCSAFLUSH, which drops anything typed before: the password is typed a moment
    // after its prompt. Any step that times out fails the script at once.
    let script = format!(
        r#"
set timeout 20
proc want {{text}} {{
  expect {{
    $text {{}}
    timeout {{ puts "\ntimed out waiting for: $text"; exit 3 }}
    eof {{ puts "\nvmgate ended before: $text"; exit 4 }}
  }}
}}
spawn {vmgate} -c {uri}
want "vmgate # "
send "list --all\r"
want "Username for localhost"
send "alice\r"
want "Password for alice: "
sleep 0.2
send "alice-pw\r"
want "Name"
want "vmgate # "
send "version\r"
want "vmgated"
want "vmgate # "
send "quit\r"
expect eof
catch wait result
exit [lindex $result 3]
"#,
        vmgate = bins::vmgate().display(),
        uri = d.uri(),
    );
    let home = tempfile::tempdir().expect("home");
    let out = Command::new("expect")
        .arg("-c")
        .arg(&script)
        .env("HOME", home.path())
        .env_remove("VMGATE_AUTH_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run expect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "shell session failed:\n{text}");
    assert!(
        !text.contains("alice-pw"),
        "the password is not echoed:\n{text}"
    );
    assert_eq!(logins(&d), before + 1, "one login for the session");
}
