//! The API over TLS, end to end: the real vmgated with `listen_tls`, the real `vmgate` CLI
//! (and the client library where a connection must stay open), certificates made with
//! GnuTLS certtool as an operator would. Every refusal must say why, on the client and in
//! the daemon's log; a reload must apply to new connections and spare open ones.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use tempfile::TempDir;
use vmgate::{ConnectUri, Connection};
use vmgate_proto::v1::{ListFilter, ListRequest};
use vmgate_tests::{
    CliOutput, TestDaemon, bins,
    pki::{self, Ca, Issued},
    require_tool, run_vmgate, wait_until,
};

/// A CA, the server's certificate for `localhost` only, and a port for the daemon.
struct Setup {
    dir: TempDir,
    ca: Ca,
    server: Issued,
    crl: PathBuf,
    port: u16,
}

fn setup() -> Option<Setup> {
    if !require_tool("certtool", "gnutls-bin") {
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("vmgtls")
        .tempdir()
        .expect("temp dir");
    let ca = Ca::new(&dir.path().join("ca"), "vmgate Test CA");
    let server = ca.server("server", &["localhost"]);
    let crl = dir.path().join("cacrl.pem");
    ca.crl(&[], &crl);
    Some(Setup {
        dir,
        ca,
        server,
        crl,
        port: pki::free_port(),
    })
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[daemon]` keys of a TLS listener admitting the DNs `allowed`.
    fn config(&self, allowed: &[&str]) -> String {
        let list: Vec<String> = allowed.iter().map(|dn| format!("{dn:?}")).collect();
        format!(
            "listen_tls = true\nlisten_addr = \"127.0.0.1\"\ntls_port = {}\n\
             key_file = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\ncrl_file = \"{}\"\n\
             tls_allowed_dn_list = [{}]\n",
            self.port,
            self.server.key.display(),
            self.server.cert.display(),
            self.ca.cert.display(),
            self.crl.display(),
            list.join(", ")
        )
    }

    /// A daemon admitting client1 (and whatever else `allowed` adds).
    fn daemon(&self, allowed: &[&str]) -> TestDaemon {
        TestDaemon::start_with(&self.config(allowed))
    }

    /// A pkipath directory presenting a new client certificate from this CA.
    fn client(&self, cn: &str) -> (Issued, PathBuf) {
        let issued = self.ca.client(cn, cn);
        let dir = self.ca.pkipath(&issued, &self.path(&format!("pki-{cn}")));
        (issued, dir)
    }

    fn uri(&self, host: &str, pkipath: &Path) -> String {
        format!(
            "test+tls://{host}:{}/default?pkipath={}",
            self.port,
            pkipath.display()
        )
    }

    /// `vmgate -c test+tls://localhost:PORT/default?pkipath=DIR list --all`.
    fn list(&self, pkipath: &Path) -> CliOutput {
        let uri = self.uri("localhost", pkipath);
        run_vmgate(&["-c", &uri, "list", "--all"], None)
    }
}

/// Asserts the CLI failed with `words` in its error, and that the daemon logged a refusal
/// of 127.0.0.1 with the same words.
#[track_caller]
fn assert_refused(out: &CliOutput, daemon: &TestDaemon, words: &str) {
    let err = out.err();
    assert!(
        err.contains("refused the client certificate") && err.contains(words),
        "expected a refusal with {words:?}: {err}"
    );
    let logged = wait_until(Duration::from_secs(5), || {
        daemon.log().lines().any(|l| {
            l.contains("TLS client refused") && l.contains("127.0.0.1") && l.contains(words)
        })
    });
    assert!(
        logged,
        "the daemon did not log {words:?}:\n{}",
        daemon.log()
    );
}

#[test]
fn an_allowed_dn_connects_and_is_read_write() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&[&pki::client_dn("client1")]);
    let (_, pkipath) = s.client("client1");
    let out = s.list(&pkipath);
    assert!(out.ok().contains("Name"), "{out:?}");
    // The certificate is the authentication: a TLS client may change things.
    let uri = s.uri("localhost", &pkipath);
    let def = daemon.file("web.toml", "name = \"web\"\n");
    run_vmgate(
        &["-c", &uri, "define", def.to_str().unwrap_or_default()],
        None,
    )
    .ok();
    assert!(s.list(&pkipath).ok().contains("web"));
    assert!(
        daemon.log().contains(&pki::client_dn("client1")),
        "the daemon should log the client's DN:\n{}",
        daemon.log()
    );
}

#[test]
fn a_dn_not_on_the_list_is_not_allowed() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&[&pki::client_dn("client1")]);
    let (_, pkipath) = s.client("client2");
    let out = s.list(&pkipath);
    assert_refused(&out, &daemon, "not allowed");
    // The list itself is not revealed.
    assert!(!out.stderr.contains("client1"), "{out:?}");
}

#[test]
fn a_certificate_from_another_ca_has_an_unknown_issuer() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&["*"]);
    let other = Ca::new(&s.path("other-ca"), "Somebody Else's CA");
    let stranger = other.client("stranger", "client1");
    // The client trusts the right CA (the server's), but its own certificate is foreign.
    let pkipath = pki::pkipath_with_ca(&s.ca.cert, &stranger, &s.path("pki-stranger"));
    assert_refused(&s.list(&pkipath), &daemon, "unknown issuer");
}

#[test]
fn a_revoked_certificate_is_refused() {
    let Some(s) = setup() else { return };
    let (client1, pkipath) = s.client("client1");
    s.ca.crl(&[&client1], &s.crl);
    let daemon = s.daemon(&["*"]);
    assert_refused(&s.list(&pkipath), &daemon, "revoked");
}

#[test]
fn an_expired_certificate_is_refused() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&["*"]);
    let old = s.ca.expired_client("old", "client1");
    let pkipath = s.ca.pkipath(&old, &s.path("pki-old"));
    assert_refused(&s.list(&pkipath), &daemon, "expired");
}

#[test]
fn a_missing_client_certificate_is_named_by_the_client() {
    let Some(s) = setup() else { return };
    let _daemon = s.daemon(&["*"]);
    let (_, pkipath) = s.client("client1");
    fs::remove_file(pkipath.join("clientcert.pem")).expect("rm");
    let out = s.list(&pkipath);
    let err = out.err();
    assert!(
        err.contains(&format!(
            "client certificate {} not found",
            pkipath.join("clientcert.pem").display()
        )) && err.contains("vmgate pki client-cert"),
        "{err}"
    );
}

/// Runs GnuTLS's `gnutls-cli` (libvirt's TLS library; same package as certtool) against
/// the daemon with stdin closed, so it shakes hands and leaves.
fn gnutls_cli(s: &Setup, client: Option<&Issued>) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "10",
        "gnutls-cli",
        "-p",
        &s.port.to_string(),
        "--x509cafile",
    ])
    .arg(&s.ca.cert);
    if let Some(c) = client {
        cmd.arg("--x509certfile")
            .arg(&c.cert)
            .arg("--x509keyfile")
            .arg(&c.key);
    }
    let out = cmd
        .arg("localhost")
        .stdin(Stdio::null())
        .output()
        .expect("run gnutls-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_client_without_a_certificate_is_refused_in_the_handshake() {
    let Some(s) = setup() else { return };
    if !require_tool("gnutls-cli", "gnutls-bin") {
        return;
    }
    let daemon = s.daemon(&["*"]);
    let out = gnutls_cli(&s, None);
    assert!(out.contains("Certificate is required"), "{out}");
    let logged = wait_until(Duration::from_secs(5), || {
        daemon.log().lines().any(|l| {
            l.contains("TLS client refused: no client certificate") && l.contains("127.0.0.1")
        })
    });
    assert!(logged, "{}", daemon.log());
    // GnuTLS with a certificate gets through (the peer libvirt's clients use).
    let (client1, _) = s.client("client1");
    gnutls_cli(&s, Some(&client1));
    let connected = wait_until(Duration::from_secs(5), || {
        daemon.log().contains("TLS client connected")
    });
    assert!(connected, "{}", daemon.log());
}

#[test]
fn the_server_certificate_must_match_the_host() {
    let Some(s) = setup() else { return };
    let _daemon = s.daemon(&["*"]);
    let (_, pkipath) = s.client("client1");
    // The certificate names localhost only.
    let uri = s.uri("127.0.0.1", &pkipath);
    let out = run_vmgate(&["-c", &uri, "list"], None);
    let err = out.err();
    assert!(
        err.contains("host name check") && err.contains("127.0.0.1") && err.contains("localhost"),
        "{err}"
    );
    // ?no_verify=1 skips the check, with a warning.
    let out = run_vmgate(&["-c", &format!("{uri}&no_verify=1"), "list"], None);
    out.ok();
    assert!(out.stderr.contains("NOT checked"), "{out:?}");
}

/// Runs vmgated on `config` (a whole file) and returns its exit code and output.
fn vmgated_fails(s: &Setup, config: &str) -> (i32, String) {
    let path = s.path("vmgated.toml");
    fs::write(&path, config).expect("write config");
    let out = Command::new(bins::vmgated())
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run vmgated");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn whole_config(s: &Setup, tls: &str) -> String {
    format!(
        "[daemon]\ndriver = \"test\"\nstate_dir = \"{}\"\nunix_sock_dir = \"{}\"\n{tls}",
        s.path("state").display(),
        s.path("run").display()
    )
}

#[test]
fn the_daemon_refuses_to_start_with_a_key_others_can_read() {
    let Some(s) = setup() else { return };
    pki::set_mode(&s.server.key, 0o644);
    let (code, out) = vmgated_fails(&s, &whole_config(&s, &s.config(&["*"])));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&s.server.key.display().to_string()) && out.contains("chmod"),
        "{out}"
    );
}

#[test]
fn the_daemon_refuses_to_start_with_a_certificate_without_san() {
    let Some(s) = setup() else { return };
    let old = s.ca.server_without_san("oldserver", "localhost");
    let config = s.config(&["*"]).replace(
        &s.server.cert.display().to_string(),
        &old.cert.display().to_string(),
    );
    let config = config.replace(
        &s.server.key.display().to_string(),
        &old.key.display().to_string(),
    );
    let (code, out) = vmgated_fails(&s, &whole_config(&s, &config));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&old.cert.display().to_string()) && out.contains("subjectAltName"),
        "{out}"
    );
}

async fn open(uri: &str) -> Connection {
    let uri: ConnectUri = uri.parse().expect("uri");
    match Connection::open(&uri, false).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect over TLS: {e}"),
    }
}

async fn list_names(conn: &mut Connection) -> Result<usize, tonic::Status> {
    let req = ListRequest {
        filter: ListFilter::All.into(),
    };
    Ok(conn.domain.list(req).await?.into_inner().domains.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_revokes_new_connections_and_spares_open_ones() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&["*"]);
    let (client1, pki1) = s.client("client1");
    let (client2, pki2) = s.client("client2");
    let mut open1 = open(&s.uri("localhost", &pki1)).await;
    list_names(&mut open1).await.expect("client1 works");

    // SIGHUP with a CRL revoking client1.
    s.ca.crl(&[&client1], &s.crl);
    daemon.signal(Signal::SIGHUP);
    let reloaded = wait_until(Duration::from_secs(10), || {
        daemon
            .log()
            .contains("SIGHUP: reloaded the TLS configuration of api")
    });
    assert!(reloaded, "no reload logged:\n{}", daemon.log());
    assert_refused(&s.list(&pki1), &daemon, "revoked");
    list_names(&mut open1)
        .await
        .expect("the connection opened before the reload still works");
    s.list(&pki2).ok();

    // `vmgate admin reload-tls` (over the UNIX socket) with a CRL revoking client2 too.
    s.ca.crl(&[&client1, &client2], &s.crl);
    let out = daemon.vmgate(&["admin", "reload-tls"]);
    assert_eq!(out.ok(), "Reloaded the TLS configuration of api\n");
    let refused = s.list(&pki2);
    assert!(refused.err().contains("revoked"), "{refused:?}");
    list_names(&mut open1).await.expect("still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_new_certificate_keeps_the_old_configuration() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&["*"]);
    let (_, pki1) = s.client("client1");
    fs::write(&s.server.cert, "not a certificate\n").expect("break the cert");

    let out = daemon.vmgate(&["admin", "reload-tls"]);
    let err = out.err();
    assert!(
        err.contains(&s.server.cert.display().to_string())
            && err.contains("Kept the previous api TLS configuration"),
        "{err}"
    );
    // Over TLS too, where the caller is read-write (host.admin).
    let uri = s.uri("localhost", &pki1);
    let out = run_vmgate(&["-c", &uri, "admin", "reload-tls"], None);
    assert!(out.err().contains("holds no certificate"), "{out:?}");
    // The old configuration still serves new clients.
    s.list(&pki1).ok();

    daemon.signal(Signal::SIGHUP);
    let logged = wait_until(Duration::from_secs(10), || {
        daemon
            .log()
            .lines()
            .any(|l| l.contains("SIGHUP") && l.contains(&s.server.cert.display().to_string()))
    });
    assert!(
        logged,
        "SIGHUP should log the broken file:\n{}",
        daemon.log()
    );
}

#[test]
fn reload_tls_needs_the_read_write_socket() {
    let Some(s) = setup() else { return };
    let daemon = s.daemon(&["*"]);
    let ro = format!(
        "test+unix:///default?socket={}",
        daemon.ro_socket().display()
    );
    let out = run_vmgate(&["-c", &ro, "admin", "reload-tls"], None);
    assert!(out.err().contains("host.admin"), "{out:?}");
}

/// Runs `vmgate ARGS...` without a connection (the `pki` commands), asserting success.
fn vmgate_pki(args: &[&str]) {
    let out = run_vmgate(args, None);
    out.ok();
}

#[test]
fn certificates_made_by_vmgate_pki_work_and_revoke() {
    let dir = tempfile::Builder::new()
        .prefix("vmgpki")
        .tempdir()
        .expect("temp dir");
    let p = |name: &str| dir.path().join(name).display().to_string();
    vmgate_pki(&["pki", "init-ca", "--dir", &p("ca")]);
    vmgate_pki(&[
        "pki",
        "server-cert",
        "--ca-dir",
        &p("ca"),
        "--host",
        "localhost",
        "--out-dir",
        &p("server"),
    ]);
    for cn in ["client0", "client1", "client2"] {
        vmgate_pki(&[
            "pki",
            "client-cert",
            "--ca-dir",
            &p("ca"),
            "--cn",
            cn,
            "--out-dir",
            &p(cn),
        ]);
    }
    // A configured crl_file must exist at start: revoking a spare certificate makes it.
    vmgate_pki(&[
        "pki",
        "revoke",
        "--ca-dir",
        &p("ca"),
        &p("client0/clientcert.pem"),
    ]);
    let port = pki::free_port();
    let daemon = TestDaemon::start_with(&format!(
        "listen_tls = true\nlisten_addr = \"127.0.0.1\"\ntls_port = {port}\n\
         key_file = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\ncrl_file = \"{}\"\n\
         tls_allowed_dn_list = [\"CN=client1\", \"CN=client2\"]\n",
        p("server/private/serverkey.pem"),
        p("server/servercert.pem"),
        p("ca/cacert.pem"),
        p("ca/cacrl.pem"),
    ));
    let uri = |cn: &str| format!("test+tls://localhost:{port}/default?pkipath={}", p(cn));
    let list = |cn: &str| run_vmgate(&["-c", &uri(cn), "list"], None);
    list("client1").ok();
    assert_refused(&list("client0"), &daemon, "revoked");
    vmgate_pki(&[
        "pki",
        "revoke",
        "--ca-dir",
        &p("ca"),
        &p("client1/clientcert.pem"),
    ]);
    daemon.vmgate(&["admin", "reload-tls"]).ok();
    assert_refused(&list("client1"), &daemon, "revoked");
    list("client2").ok();
}
