//! The API's client limits under attack, end to end: sockets that connect to the TLS or
//! TCP port and say nothing (slowloris), connections that never log in, a local user
//! filling the read-only socket, and a daemon out of file descriptors. In each case a
//! real client, the `vmgate` CLI, must still get in within a few seconds, and a client
//! over `max_clients` must be told why. Attackers connect from 127.0.0.2, the real client
//! from 127.0.0.1, so the daemon can tell them apart, as it would two hosts.

use std::{
    fs,
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    time::Duration,
};

use vmgate::{ConnectError, ConnectUri, Connection};
use vmgate_tests::{
    CliOutput, TestDaemon, pki, require_tool, run_vmgate, vmgate_login, wait_until,
};

/// How long a real client may take with the attack going on (it takes well under a second
/// without; before these limits it took the 30 s handshake timeout).
const PROMPT: Duration = Duration::from_secs(10);

/// The start of an HTTP/2 connection: the client preface and an empty SETTINGS frame. An
/// attacker that sends it holds a connection the server has accepted as HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Runs `f` on a thread of its own; None if it has not returned within `deadline`.
fn within<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(deadline).ok()
}

/// `count` TCP connections to `to` from the address 127.0.0.2, each sending `hello`.
fn attack_tcp(to: SocketAddr, count: usize, hello: &[u8]) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let attacker = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0));
    (0..count)
        .map(|_| {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(attacker).expect("bind 127.0.0.2");
            let stream = rt.block_on(socket.connect(to)).expect("connect");
            let mut stream = stream.into_std().expect("std stream");
            stream.set_nonblocking(false).expect("blocking");
            stream.write_all(hello).expect("send");
            stream.set_nonblocking(true).expect("nonblocking");
            stream
        })
        .collect()
}

/// How many of `conns` the daemon still holds open.
fn still_open<S: Read>(conns: &mut [S]) -> usize {
    conns
        .iter_mut()
        .filter_map(|conn| is_open(conn).then_some(()))
        .count()
}

/// Reads what the daemon sent on `conn`: a read that would block means open, the end of
/// the stream (or an error) closed.
fn is_open(conn: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// A daemon that already has the user alice (password `alice-pw`), restarted with `extra`.
fn daemon_with_alice(extra: &str) -> TestDaemon {
    TestDaemon::start_with_users(&[("alice", "alice-pw")], extra)
}

/// An auth file (mode 0600) with alice's password for `host`.
fn alice_auth_file(dir: &Path, host: &str) -> PathBuf {
    let path = dir.join("auth.toml");
    let text = format!(
        "[[credentials]]\nhost = {host:?}\nusername = \"alice\"\npassword = \"alice-pw\"\n"
    );
    fs::write(&path, text).expect("write the auth file");
    pki::set_mode(&path, 0o600);
    path
}

fn tcp_config(port: u16, extra: &str) -> String {
    format!(
        "listen_tcp = true\nlisten_addr = \"127.0.0.1\"\ntcp_port = {port}\ntcp_min_ssf = 0\n{extra}"
    )
}

/// `vmgate -c test+tcp://127.0.0.1:PORT/default list --all`, logging in as alice, within
/// [`PROMPT`].
#[track_caller]
fn tcp_login_lists(port: u16) {
    let dir = tempfile::tempdir().expect("dir");
    let auth = alice_auth_file(dir.path(), "127.0.0.1");
    let uri = format!("test+tcp://127.0.0.1:{port}/default");
    let out = within(PROMPT, move || {
        vmgate_login(&uri, Some(&auth), &["list", "--all"], None)
    })
    .expect("the login over TCP finishes promptly during the attack");
    assert!(out.ok().contains("Name"), "{out:?}");
}

#[test]
fn idle_sockets_on_the_tls_port_do_not_keep_a_client_waiting() {
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let tls = pki::ApiTls::new(dir.path());
    let port = pki::free_port();
    let d = TestDaemon::start_with(&format!(
        "listen_tls = true\nlisten_addr = \"127.0.0.1\"\ntls_port = {port}\n{}",
        tls.files()
    ));
    // More than max_anonymous_clients (20), none sending a ClientHello.
    let mut idle = attack_tcp(SocketAddr::from(([127, 0, 0, 1], port)), 30, b"");
    let uri = tls.uri(port);
    let out = within(PROMPT, move || {
        run_vmgate(&["-c", &uri, "list", "--all"], None)
    })
    .expect("the TLS client gets in promptly while idle sockets hold the port");
    assert!(out.ok().contains("Name"), "{out:?}");
    // Over the limit the oldest idle ones went at once; the rest go when the 5 s for a
    // first byte have passed.
    assert!(
        still_open(&mut idle) <= 20,
        "at most max_anonymous_clients stay"
    );
    assert!(
        wait_until(PROMPT, || still_open(&mut idle) == 0),
        "sockets that send no ClientHello are closed after 5 s:\n{}",
        d.log()
    );
}

#[test]
fn idle_connections_on_the_tcp_port_are_bounded_and_a_login_still_works() {
    let port = pki::free_port();
    let d = daemon_with_alice(&tcp_config(port, "max_anonymous_clients = 5\n"));
    let mut idle = attack_tcp(SocketAddr::from(([127, 0, 0, 1], port)), 30, H2_PREFACE);
    // Before the login deadline (30 s by default): only the eviction can close them.
    assert!(
        wait_until(Duration::from_secs(5), || still_open(&mut idle) <= 5),
        "connections that never log in are held beyond max_anonymous_clients:\n{}",
        d.log()
    );
    tcp_login_lists(port);
    assert!(still_open(&mut idle) <= 5);
}

#[test]
fn connections_that_do_not_log_in_are_closed_after_auth_timeout_secs() {
    let port = pki::free_port();
    let d = daemon_with_alice(&tcp_config(
        port,
        "auth_unix_rw = \"sasl\"\nauth_timeout_secs = 2\n",
    ));
    let mut tcp = attack_tcp(SocketAddr::from(([127, 0, 0, 1], port)), 10, H2_PREFACE);
    let mut unix: Vec<UnixStream> = (0..10)
        .map(|_| {
            let mut s = UnixStream::connect(d.rw_socket()).expect("connect");
            s.write_all(H2_PREFACE).expect("send");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    // Keepalive alone would take 30 s (5 probes 5 s apart) to close them.
    assert!(
        wait_until(Duration::from_secs(8), || still_open(&mut tcp) == 0
            && still_open(&mut unix) == 0),
        "connections that never logged in are still open after auth_timeout_secs:\n{}",
        d.log()
    );
    assert!(
        d.log().contains("did not log in within auth_timeout_secs"),
        "{}",
        d.log()
    );
    // A client that does log in is not hurried out.
    tcp_login_lists(port);
}

/// Opens client-library connections to the read-only socket until the daemon refuses one;
/// returns those it accepted and the refusal.
fn fill_read_only_socket(
    d: &TestDaemon,
    rt: &tokio::runtime::Runtime,
) -> (Vec<Connection>, ConnectError) {
    let uri: ConnectUri = format!("test+unix:///default?socket={}", d.ro_socket().display())
        .parse()
        .expect("uri");
    let mut held = Vec::new();
    for _ in 0..200 {
        match rt.block_on(Connection::open(&uri, true)) {
            Ok(conn) => held.push(conn),
            Err(refused) => return (held, refused),
        }
    }
    panic!("200 read-only clients and no refusal:\n{}", d.log());
}

#[test]
fn a_full_read_only_socket_leaves_room_on_the_read_write_socket() {
    let d = TestDaemon::start_with("max_clients = 40\nmax_clients_rw_reserve = 4\n");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (held, refused) = fill_read_only_socket(&d, &rt);
    assert!(held.len() >= 30, "{} read-only clients", held.len());
    let message = refused.to_string();
    assert!(
        matches!(refused, ConnectError::TooManyClients { .. })
            && message.contains("refused the connection: too many clients (max_clients = 40")
            && message.contains("4 of them kept for the read-write socket"),
        "{message}"
    );
    // The CLI says the same to the next read-only client...
    let ro = run_vmgate(
        &[
            "-c",
            &format!("test+unix:///default?socket={}", d.ro_socket().display()),
            "-r",
            "list",
        ],
        None,
    );
    assert!(
        ro.err()
            .contains("refused the connection: too many clients"),
        "{ro:?}"
    );
    assert!(!ro.err().contains("version handshake"), "{ro:?}");
    // ...while root still gets in on the read-write socket.
    let rw: CliOutput = within(PROMPT, {
        let uri = d.uri();
        move || run_vmgate(&["-c", &uri, "list", "--all"], None)
    })
    .expect("the rw socket answers");
    assert!(rw.ok().contains("Name"), "{rw:?}");
    drop(held);
}

/// The daemon's open descriptors.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[test]
fn the_read_write_socket_answers_when_the_daemon_is_out_of_descriptors() {
    if !require_tool("prlimit", "util-linux") {
        return;
    }
    let d = TestDaemon::start();
    let pid = d.pid().expect("running");
    // Room for 40 more descriptors: the read-only clients below take them all.
    let limit = open_fds(pid) + 40;
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit");
    assert!(status.success(), "prlimit failed");
    let connect = || {
        let mut s = UnixStream::connect(d.ro_socket()).expect("connect");
        s.write_all(H2_PREFACE).expect("send");
        s
    };
    let mut held: Vec<UnixStream> = (0..60).map(|_| connect()).collect();
    assert!(
        wait_until(PROMPT, || d.log().contains("out of file descriptors")),
        "the daemon never ran out of descriptors:\n{}",
        d.log()
    );
    // More clients keep coming while it is out.
    held.extend((0..40).map(|_| connect()));
    let out = within(PROMPT, {
        let uri = d.uri();
        move || run_vmgate(&["-c", &uri, "list", "--all"], None)
    })
    .expect("the rw socket answers while the daemon is out of descriptors");
    assert!(out.ok().contains("Name"), "{out:?}");
    let log = d.log();
    let complaints = log
        .lines()
        .filter(|l| l.contains("accept failed") || l.contains("out of file descriptors"))
        .count();
    assert!(complaints <= 4, "logged per failure, not per burst:\n{log}");
    assert!(
        log.contains(
            "vmgate-sock: out of file descriptors; serving its clients on the daemon's reserve"
        ),
        "the rw client was served on the reserve:\n{log}"
    );
    drop(held);
}
