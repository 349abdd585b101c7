//! `Connection::open` against the fake daemon: the handshake, and each way opening can fail.

mod fake;

use std::path::PathBuf;

use fake::Fake;
use vmgate::{ClientError, ConnectError, ConnectUri, Connection};
use vmgate_proto::v1::{ListFilter, ListRequest};

fn uri(text: &str) -> ConnectUri {
    ConnectUri::parse(text).expect("valid URI")
}

#[tokio::test]
async fn open_does_the_version_handshake() {
    let fake = Fake::start("test").await;
    let conn = Connection::open(&uri(&fake.uri("test")), false)
        .await
        .expect("opens");
    assert_eq!(conn.daemon.driver, "test");
    assert_eq!(conn.daemon.daemon_version, "0.1.0");
    assert_eq!(conn.uri.socket.as_deref(), Some(fake.socket.as_path()));
    assert_eq!(fake.handshakes(), 1);
}

#[tokio::test]
async fn a_missing_daemon_is_reported_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("nobody-home");
    let text = format!("test+unix:///default?socket={}", socket.display());
    let err = Connection::open(&uri(&text), false)
        .await
        .expect_err("no daemon");
    assert!(matches!(err, ConnectError::NotRunning { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&socket.display().to_string()), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    assert!(
        msg.contains("is vmgated running? start it with `vmgated --config FILE`"),
        "{msg}"
    );
    assert!(
        msg.contains("-c 'test+unix:///default?socket=PATH'"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_stale_socket_is_a_daemon_not_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("stale");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    let text = format!("qemu+unix:///system?socket={}", socket.display());
    let err = Connection::open(&uri(&text), false)
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectError::NotRunning { .. }), "{err:?}");
}

#[tokio::test]
async fn the_driver_must_match() {
    let fake = Fake::start("test").await;
    let err = Connection::open(&uri(&fake.uri("qemu")), false)
        .await
        .expect_err("driver mismatch");
    assert_eq!(
        err.to_string(),
        format!(
            "this daemon serves the test driver; connect with test:///default \
             (or test+unix:///default?socket={})",
            fake.socket.display()
        )
    );
}

#[tokio::test]
async fn tcp_without_a_listener_names_the_target_and_the_setting() {
    // Port 1 on loopback: nothing listens there.
    let err = Connection::open(&uri("qemu+tcp://127.0.0.1:1/system"), false)
        .await
        .expect_err("nothing listens");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && text.contains("listen_tcp"),
        "{text}"
    );
}

#[tokio::test]
async fn tls_without_client_files_names_the_missing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "qemu+tls://localhost:1/system?pkipath={}",
        dir.path().display()
    );
    let err = Connection::open(&uri(&text), false)
        .await
        .expect_err("no files");
    assert!(matches!(err, ConnectError::MissingFile(_)), "{err:?}");
    let ca = dir.path().join("cacert.pem");
    assert!(
        err.to_string()
            .starts_with(&format!("CA certificate {} not found", ca.display())),
        "{err}"
    );
}

#[tokio::test]
async fn readonly_picks_the_ro_socket() {
    let u = uri("qemu:///system");
    assert_eq!(
        vmgate::connect::socket_path(&u, true),
        PathBuf::from("/run/vmgate/vmgate-sock-ro")
    );
    assert_eq!(
        vmgate::connect::socket_path(&u, false),
        PathBuf::from("/run/vmgate/vmgate-sock")
    );
    let u = uri("qemu:///system?socket=/x/y");
    assert_eq!(
        vmgate::connect::socket_path(&u, true),
        PathBuf::from("/x/y")
    );
}

#[tokio::test]
async fn a_non_grpc_socket_fails_the_handshake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("not-grpc");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    tokio::spawn(async move {
        // Accept and hang up at once, as something that is not vmgated might.
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let text = format!("test+unix:///default?socket={}", socket.display());
    let err = Connection::open(&uri(&text), false)
        .await
        .expect_err("not grpc");
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
    assert!(err.to_string().contains("is it vmgated's socket?"), "{err}");
}

#[tokio::test]
async fn a_daemon_that_goes_away_is_a_lost_connection() {
    let mut fake = Fake::start("test").await;
    let mut conn = Connection::open(&uri(&fake.uri("test")), false)
        .await
        .expect("opens");
    fake.stop().await;
    let status = conn
        .domain
        .list(ListRequest {
            filter: ListFilter::All.into(),
        })
        .await
        .expect_err("daemon gone");
    let err = ClientError::from(status);
    assert!(matches!(err, ClientError::Lost(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("lost the connection to vmgated: "),
        "{err}"
    );
}
