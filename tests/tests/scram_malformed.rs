//! Malformed SCRAM messages before login, end to end (issue 14, item 5): client-first
//! messages that panicked rsasl 2.3.1's parser, sent as an attacker would, to the API over
//! plain TCP (`auth_tcp = "sasl"`, `tcp_min_ssf = 0`) with a raw gRPC client, and to a
//! console over VeNCrypt X509SASL with a raw RFB client of this file's own. Each must be an
//! ordinary failed login: UNAUTHENTICATED without internals and counted towards the API's
//! per-connection limit; a failed SecurityResult, an `auth-failure` audit record and a
//! count towards the console lockout. The daemon's log must show no panic.

use std::sync::Arc;

use anyhow::{Context, ensure};
use rustls::{
    RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::Code;
use vmgate_proto::v1::{SaslStart, auth_client::AuthClient};
use vmgate_tests::{
    TestDaemon,
    console::{ConsolePki, audit_until, events, field, start_guest, tls_console_config},
    pki,
    vnc::{RFB_DEADLINE, RfbClient, choose_security},
};
use vmgated::vnc::{
    rfb::{RfbError, SecurityResult, SecurityType, io::RfbStream},
    vencrypt::{self, Subtype},
};

/// The client-first messages that panicked a worker.
const ATTACKS: [&str; 5] = [
    "n,,",
    "n,,n=alice,",
    "n,a,n=alice,r=abc",
    "n,,n",
    "n,,n=alice,r",
];

/// The API's limit of failed logins per connection (`auth::login::MAX_FAILURES`).
const API_MAX_FAILURES: usize = 3;

/// A daemon that already has the user alice (`alice-pw`), restarted with `extra`.
fn daemon_with_alice(extra: &str) -> TestDaemon {
    TestDaemon::start_with_users(&[("alice", "alice-pw")], extra)
}

#[track_caller]
fn assert_no_panic(d: &TestDaemon) {
    let log = d.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_malformed_scram_is_a_counted_failed_login() {
    let port = pki::free_port();
    let d = daemon_with_alice(&format!(
        "listen_tcp = true\nlisten_addr = \"127.0.0.1\"\ntcp_port = {port}\ntcp_min_ssf = 0\n"
    ));
    // One channel is one HTTP/2 connection, whose login state the limit is kept in.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect over TCP");
    let mut auth = AuthClient::new(channel);
    for (i, attack) in ATTACKS.iter().enumerate() {
        let refused = auth
            .start(SaslStart {
                mechanism: "SCRAM-SHA-256".into(),
                data: attack.as_bytes().to_vec(),
                has_data: true,
            })
            .await
            .expect_err("a malformed client-first is refused");
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{attack}: {refused:?}"
        );
        let want = if i < API_MAX_FAILURES {
            "authentication failed"
        } else {
            "too many failed logins on this connection; reconnect to try again"
        };
        assert_eq!(refused.message(), want, "try {} ({attack})", i + 1);
    }
    assert_no_panic(&d);
    let refusals = d.log().matches("API SASL login refused").count();
    assert_eq!(refusals, ATTACKS.len(), "every refusal is logged");

    // The daemon serves on: a real login from a new connection works.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("auth.toml");
    std::fs::write(
        &file,
        "[[credentials]]\nhost = \"127.0.0.1\"\nusername = \"alice\"\npassword = \"alice-pw\"\n",
    )
    .expect("write the auth file");
    pki::set_mode(&file, 0o600);
    let uri = format!("test+tcp://127.0.0.1:{port}/default");
    vmgate_tests::vmgate_login(&uri, Some(&file), &["list", "--all"], None).ok();
}

/// What the server answered a SASL client-first with.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The failed SecurityResult's reason.
    Failed(String),
    /// A server step (the exchange went on).
    Step,
}

/// The rustls client configuration of `p`'s client1 certificate.
fn tls_client(p: &ConsolePki) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&p.ca.cert)? {
        roots.add(cert?)?;
    }
    let certs = CertificateDer::pem_file_iter(&p.client.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&p.client.key)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// VeNCrypt X509SASL up to the SASL exchange, then `client_first` for SCRAM-SHA-256, as
/// `ui/vnc-auth-sasl.c`'s format has it; returns the server's answer.
async fn x509sasl_first(
    port: u16,
    tls: &TlsConnector,
    client_first: &[u8],
) -> anyhow::Result<Answer> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut conn = RfbStream::new(stream, 4096);
    let version = choose_security(&mut conn, SecurityType::VeNCrypt).await?;
    let theirs = conn.read_array::<2>("the VeNCrypt version").await?;
    ensure!(theirs == vencrypt::VERSION, "VeNCrypt {theirs:?}");
    conn.send(&vencrypt::VERSION).await?;
    let [ok, count] = conn.read_array::<2>("the VeNCrypt subtype count").await?;
    ensure!(ok == 0, "the server refused VeNCrypt 0.2");
    let mut offered = Vec::new();
    for _ in 0..count {
        offered.push(u32::from_be_bytes(conn.read_array::<4>("a subtype").await?));
    }
    let sasl = Subtype::X509Sasl.code();
    ensure!(offered.contains(&sasl), "X509SASL not offered: {offered:?}");
    conn.send(&sasl.to_be_bytes()).await?;
    let [ack] = conn.read_array::<1>("the subtype choice").await?;
    ensure!(ack == 1, "the server refused X509SASL");
    let (stream, early) = conn.into_parts();
    ensure!(early.is_empty(), "data before the TLS handshake");
    let name = ServerName::try_from("127.0.0.1")?;
    let stream = tls.connect(name, stream).await.context("TLS handshake")?;
    let mut conn = RfbStream::new(stream, 4096);

    let mechlist = conn
        .expect("the mechanism list", |b| {
            let Some(head) = b.first_chunk::<4>() else {
                return Ok(None);
            };
            let end = 4 + u32::from_be_bytes(*head) as usize;
            if end > 4096 {
                return Err(RfbError::Unsupported("a huge mechanism list".into()));
            }
            Ok(b.get(4..end)
                .map(|list| (String::from_utf8_lossy(list).into_owned(), end)))
        })
        .await?;
    ensure!(
        mechlist.split(',').any(|m| m == "SCRAM-SHA-256"),
        "mechanisms {mechlist}"
    );
    let mech = b"SCRAM-SHA-256";
    let mut out = u32::try_from(mech.len())?.to_be_bytes().to_vec();
    out.extend_from_slice(mech);
    out.extend_from_slice(&u32::try_from(client_first.len() + 1)?.to_be_bytes());
    out.extend_from_slice(client_first);
    out.push(0);
    conn.send(&out).await?;

    // A failure is a SecurityResult where the step was due; `u32 1` is never a step (a step
    // with data holds at least the data and its NUL).
    let answer = conn
        .expect("the answer to the client-first", |b| {
            let Some(head) = b.first_chunk::<4>() else {
                return Ok(None);
            };
            match u32::from_be_bytes(*head) {
                1 => Ok(SecurityResult::decode(version, b)?.map(|(result, used)| {
                    let reason = match result {
                        SecurityResult::Failed(reason) => reason,
                        SecurityResult::Ok => String::new(),
                    };
                    (Answer::Failed(reason), used)
                })),
                len => {
                    let used = 4 + len as usize + 1;
                    if used > 4096 {
                        return Err(RfbError::Unsupported("a huge SASL step".into()));
                    }
                    Ok((b.len() >= used).then_some((Answer::Step, used)))
                }
            }
        })
        .await?;
    Ok(answer)
}

#[tokio::test]
async fn console_malformed_scram_is_an_audited_failure_that_counts_towards_the_lockout() {
    let Some(p) = ConsolePki::new() else { return };
    let extra = "vnc_sasl = true\nvnc_auth_max_failures = 5\n";
    let d = TestDaemon::start_with(&tls_console_config(23_400, &p.cert_dir, extra));
    d.vmgate_stdin(
        &["sasl-user", "add", "alice", "--password-stdin"],
        Some("alice-pw\n"),
    )
    .ok();
    let port = start_guest(&d, "g", "");
    d.vmgate(&["console-acl", "grant", "g", "--user", "alice"])
        .ok();
    let tls = tls_client(&p).expect("TLS client configuration");

    for attack in ATTACKS {
        let answer =
            tokio::time::timeout(RFB_DEADLINE, x509sasl_first(port, &tls, attack.as_bytes()))
                .await
                .unwrap_or_else(|_| panic!("{attack}: no answer within {RFB_DEADLINE:?}"));
        match answer {
            Ok(Answer::Failed(reason)) => assert_eq!(reason, "Authentication failed", "{attack}"),
            Ok(Answer::Step) => panic!("{attack}: the exchange went on"),
            Err(e) => panic!("{attack}: no failed SecurityResult: {e:#}"),
        }
    }
    let records = audit_until(&d, "g", |r| {
        events(r, "auth-failure").count() >= ATTACKS.len()
    });
    for r in events(&records, "auth-failure") {
        assert_eq!(field(r, "security_type"), "vencrypt-x509sasl", "{r}");
        assert!(field(r, "reason").contains("authentication failed"), "{r}");
    }

    // Five failures from this source: the right password is now refused too.
    let err =
        match RfbClient::connect_plain(port, &p.creds(Some(&p.client)), "alice", "alice-pw", true)
            .await
        {
            Ok(c) => panic!("admitted during the lockout: {c:?}"),
            Err(e) => format!("{e:#}"),
        };
    assert!(err.contains("locked out"), "{err}");
    audit_until(&d, "g", |r| events(r, "lockout").next().is_some());
    assert_no_panic(&d);
}
