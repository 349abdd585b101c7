//! API over TLS benchmark: handshakes per second, each a new TCP + TLS connection (mutual
//! x509, the client certificate checked against the CA, the CRL and the DN list) followed by
//! one `Admin.Version` call, as `vmgate -c qemu+tls://...` does at start. Repeated for ~3 s
//! on 1 and 4 concurrent tasks, with RSA-2048 and ECDSA P-256 certificates made by certtool;
//! the same over the UNIX socket for scale, and one call on an open TLS connection. Run:
//! `cargo run --profile dist -p vmgate-bench --bin bench-api-tls`. Prints a Markdown table;
//! asserts nothing.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use vmgate::{ConnectUri, Connection};
use vmgate_bench::{Sample, run_for};
use vmgate_proto::v1::Empty;
use vmgate_tests::{
    TestDaemon,
    pki::{self, Ca, KeyType},
    require_tool,
};

const BUDGET: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !require_tool("certtool", "gnutls-bin") {
        anyhow::bail!("certtool is needed to make the certificates");
    }
    let dir = tempfile::tempdir()?;
    println!("| transport | keys | what | concurrent | per s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for (keys, label) in [
        (KeyType::Rsa2048, "RSA-2048"),
        (KeyType::EcdsaP256, "ECDSA P-256"),
    ] {
        let base = dir.path().join(label.replace(' ', "-"));
        let (daemon, uri) = tls_daemon(&base, keys);
        for tasks in [1, 4] {
            let s = measure_opens(&uri, tasks).await?;
            println!(
                "| TLS | {label} | connect + Version | {tasks} | {} |",
                s.cells()
            );
        }
        let conn = Connection::open(&uri, false).await?;
        let s = run_for(BUDGET, 20, || {
            let mut admin = conn.admin.clone();
            async move {
                admin.version(Empty {}).await.expect("version");
            }
        })
        .await;
        println!(
            "| TLS | {label} | Version on an open connection | 1 | {} |",
            s.cells()
        );
        drop(daemon);
    }
    let daemon = TestDaemon::start();
    let uri: ConnectUri = daemon.uri().parse()?;
    for tasks in [1, 4] {
        let s = measure_opens(&uri, tasks).await?;
        println!("| UNIX | - | connect + Version | {tasks} | {} |", s.cells());
    }
    Ok(())
}

/// A daemon with a TLS listener on a free port, and a URI with a client's pkipath.
fn tls_daemon(base: &Path, keys: KeyType) -> (TestDaemon, ConnectUri) {
    let ca = Ca::with_keys(&base.join("ca"), "Bench CA", keys);
    let server = ca.server("server", &["localhost"]);
    let client = ca.client("client1", "client1");
    let pkipath = ca.pkipath(&client, &base.join("client"));
    let crl = base.join("cacrl.pem");
    ca.crl(&[], &crl);
    let port = pki::free_port();
    let config = format!(
        "listen_tls = true\nlisten_addr = \"127.0.0.1\"\ntls_port = {port}\n\
         key_file = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\ncrl_file = \"{}\"\n\
         tls_allowed_dn_list = [\"{}\"]\nmax_anonymous_clients = 20\n",
        server.key.display(),
        server.cert.display(),
        ca.cert.display(),
        crl.display(),
        pki::client_dn("client1"),
    );
    let daemon = TestDaemon::start_with(&config);
    let text = format!(
        "test+tls://localhost:{port}/default?pkipath={}",
        pkipath.display()
    );
    let uri = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    (daemon, uri)
}

/// `Connection::open` (connect, handshake, Version) in a loop on `tasks` tasks at once.
async fn measure_opens(uri: &ConnectUri, tasks: usize) -> anyhow::Result<Sample> {
    let mut set = JoinSet::new();
    let start = Instant::now();
    for _ in 0..tasks {
        let uri = uri.clone();
        set.spawn(async move {
            run_for(BUDGET, 10, || {
                let uri = uri.clone();
                async move {
                    if let Err(e) = Connection::open(&uri, false).await {
                        panic!("connect failed: {e}");
                    }
                }
            })
            .await
        });
    }
    let samples = set.join_all().await;
    Ok(Sample::merge(samples, start.elapsed()))
}
