//! Tests of `uri`: every form DESIGN.md names, the canonical round trip, and each refusal.

use super::*;

fn ok(text: &str) -> ConnectUri {
    match ConnectUri::parse(text) {
        Ok(u) => u,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn err(text: &str) -> UriError {
    match ConnectUri::parse(text) {
        Ok(u) => panic!("{text} parsed as {u:?}"),
        Err(e) => e,
    }
}

fn local(driver: Driver) -> ConnectUri {
    ConnectUri {
        driver,
        transport: Transport::Unix,
        user: None,
        host: None,
        port: None,
        socket: None,
        pkipath: None,
        no_verify: false,
    }
}

fn remote(transport: Transport, host: &str) -> ConnectUri {
    ConnectUri {
        transport,
        host: Some(host.to_owned()),
        ..local(Driver::Qemu)
    }
}

#[test]
fn qemu_system() {
    assert_eq!(ok("qemu:///system"), local(Driver::Qemu));
    assert_eq!(ok("qemu+unix:///system"), local(Driver::Qemu));
}

#[test]
fn test_default() {
    assert_eq!(ok("test:///default"), local(Driver::Test));
}

#[test]
fn unix_socket_param() {
    let u = ok("qemu+unix:///system?socket=/x/y");
    assert_eq!(u.socket, Some(PathBuf::from("/x/y")));
    assert_eq!(u.transport, Transport::Unix);
    let u = ok("test+unix:///default?socket=/work/main/.state/run/vmgate-sock");
    assert_eq!(u.driver, Driver::Test);
    assert_eq!(
        u.socket,
        Some(PathBuf::from("/work/main/.state/run/vmgate-sock"))
    );
}

#[test]
fn percent_encoded_socket_path() {
    let u = ok("qemu+unix:///system?socket=/tmp/my%20dir/a%26b%3Dc%23d%25e");
    assert_eq!(u.socket, Some(PathBuf::from("/tmp/my dir/a&b=c#d%e")));
    // '+' is a plus sign in URIs, not a space.
    let u = ok("qemu:///system?socket=/tmp/a+b");
    assert_eq!(u.socket, Some(PathBuf::from("/tmp/a+b")));
    // Non-UTF-8 bytes are legal in paths.
    let u = ok("qemu:///system?socket=/tmp/%FF");
    assert_eq!(
        u.socket.as_deref().map(|p| p.as_os_str().as_bytes()),
        Some(&b"/tmp/\xff"[..])
    );
}

#[test]
fn tls_with_host_is_the_default() {
    assert_eq!(ok("qemu://host/system"), remote(Transport::Tls, "host"));
    assert_eq!(ok("qemu+tls://host/system"), remote(Transport::Tls, "host"));
}

#[test]
fn tls_with_port() {
    let u = ok("qemu+tls://host:1234/system");
    assert_eq!(u.port, Some(1234));
    assert_eq!(u.host.as_deref(), Some("host"));
    let u = ok("test+tls://host:16514/default");
    assert_eq!((u.driver, u.transport), (Driver::Test, Transport::Tls));
}

#[test]
fn tcp_with_user() {
    let u = ok("qemu+tcp://user@host/system");
    assert_eq!(u.transport, Transport::Tcp);
    assert_eq!(u.user.as_deref(), Some("user"));
    assert_eq!(u.host.as_deref(), Some("host"));
    let u = ok("qemu+tcp://alice%40corp@host:16509/system");
    assert_eq!(u.user.as_deref(), Some("alice@corp"));
    assert_eq!(u.port, Some(16509));
}

#[test]
fn user_on_a_unix_socket_is_the_sasl_user() {
    let u = ok("qemu+unix://bob@/system");
    assert_eq!(u.user.as_deref(), Some("bob"));
    assert_eq!(u.host, None);
}

#[test]
fn ipv6_hosts() {
    let u = ok("qemu+tls://[::1]:16514/system");
    assert_eq!(u.host.as_deref(), Some("::1"));
    assert_eq!(u.port, Some(16514));
    assert!(matches!(err("qemu+tls://::1/system"), UriError::BadHost(_)));
}

#[test]
fn pkipath_and_no_verify() {
    let u = ok("qemu+tls://host/system?pkipath=/home/a/pki");
    assert_eq!(u.pkipath, Some(PathBuf::from("/home/a/pki")));
    assert!(!u.no_verify);
    let u = ok("qemu+tls://host/system?no_verify=1");
    assert!(u.no_verify);
    let u = ok("qemu+tls://host/system?no_verify=0&pkipath=/p");
    assert!(!u.no_verify);
    assert_eq!(u.pkipath, Some(PathBuf::from("/p")));
}

#[test]
fn canonical_display() {
    for (input, canonical) in [
        ("qemu:///system", "qemu:///system"),
        ("qemu+unix:///system", "qemu:///system"),
        ("test:///default", "test:///default"),
        (
            "qemu+unix:///system?socket=/x/y",
            "qemu:///system?socket=/x/y",
        ),
        (
            "test+unix:///default?socket=/a%20b",
            "test:///default?socket=/a%20b",
        ),
        ("qemu://host/system", "qemu+tls://host/system"),
        ("qemu+tls://host:1234/system", "qemu+tls://host:1234/system"),
        ("qemu+tcp://user@host/system", "qemu+tcp://user@host/system"),
        (
            "qemu+tcp://alice%40corp@host/system",
            "qemu+tcp://alice%40corp@host/system",
        ),
        (
            "qemu+tls://[::1]:16514/system",
            "qemu+tls://[::1]:16514/system",
        ),
        (
            "qemu+tls://h/system?no_verify=1&pkipath=/p",
            "qemu+tls://h/system?pkipath=/p&no_verify=1",
        ),
        ("qemu+tls://h/system?no_verify=0", "qemu+tls://h/system"),
        (
            "qemu:///system?socket=/t/a%26b%3Fc",
            "qemu:///system?socket=/t/a%26b%3Fc",
        ),
    ] {
        assert_eq!(ok(input).to_string(), canonical, "display of {input}");
    }
}

#[test]
fn display_round_trips() {
    for input in [
        "qemu:///system",
        "test+unix:///default?socket=/run/x%20y/sock",
        "qemu+tls://user@example.org:16514/system?pkipath=/etc/p%23ki&no_verify=1",
        "qemu+tcp://[fe80::1]/system",
        "qemu:///system?socket=/tmp/%FF%25",
        "test+unix://a%3Ab@/default",
    ] {
        let parsed = ok(input);
        assert_eq!(ok(&parsed.to_string()), parsed, "round trip of {input}");
    }
}

#[test]
fn unknown_driver() {
    let e = err("xen:///system");
    assert_eq!(e, UriError::UnknownDriver("xen".into()));
    assert!(
        e.to_string().contains("qemu:///system and test:///default"),
        "{e}"
    );
}

#[test]
fn unknown_transport() {
    let e = err("qemu+ssh://host/system");
    assert_eq!(e, UriError::UnknownTransport("ssh".into()));
    assert!(e.to_string().contains("unix, tls or tcp"), "{e}");
}

#[test]
fn bad_path() {
    let e = err("qemu:///session");
    assert_eq!(
        e.to_string(),
        "path /session is not served; vmgate serves qemu:///system and test:///default"
    );
    assert!(matches!(err("test:///system"), UriError::BadPath { .. }));
    assert!(matches!(err("qemu:///default"), UriError::BadPath { .. }));
    assert!(matches!(err("qemu:///system/"), UriError::BadPath { .. }));
    assert_eq!(err("qemu+tls://host"), UriError::MissingPath);
}

#[test]
fn unknown_param() {
    let e = err("qemu:///system?sokcet=/x");
    assert_eq!(e, UriError::UnknownParam("sokcet".into()));
    assert!(e.to_string().contains("\"sokcet\""), "{e}");
    assert!(
        e.to_string().contains("socket, pkipath and no_verify"),
        "{e}"
    );
}

#[test]
fn bad_param_values() {
    assert_eq!(
        err("qemu:///system?socket="),
        UriError::EmptyParam("socket".into())
    );
    assert_eq!(
        err("qemu:///system?socket=/a&socket=/b"),
        UriError::DuplicateParam("socket".into())
    );
    assert_eq!(
        err("qemu+tls://h/system?no_verify=yes"),
        UriError::BadNoVerify("yes".into())
    );
    assert!(matches!(
        err("qemu:///system?socket=/a%2"),
        UriError::BadPercent(_)
    ));
    assert!(matches!(
        err("qemu:///system?socket=/a%zz"),
        UriError::BadPercent(_)
    ));
}

#[test]
fn params_for_the_wrong_transport() {
    let e = err("qemu+tls://h/system?socket=/x");
    assert!(
        matches!(e, UriError::ParamNotForTransport { name: "socket", .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "URI parameter socket applies to the unix transport only, not tls"
    );
    assert!(matches!(
        err("qemu:///system?pkipath=/p"),
        UriError::ParamNotForTransport {
            name: "pkipath",
            ..
        }
    ));
    assert!(matches!(
        err("qemu+tcp://h/system?no_verify=1"),
        UriError::ParamNotForTransport {
            name: "no_verify",
            ..
        }
    ));
}

#[test]
fn bad_port() {
    for (uri, port) in [
        ("qemu+tls://host:http/system", "http"),
        ("qemu+tls://host:0/system", "0"),
        ("qemu+tls://host:65536/system", "65536"),
        ("qemu+tls://host:/system", ""),
        ("qemu+tls://host:+12/system", "+12"),
    ] {
        assert_eq!(err(uri), UriError::BadPort(port.into()), "{uri}");
    }
    assert!(
        err("qemu+tls://host:99999/system")
            .to_string()
            .contains("1 to 65535")
    );
}

#[test]
fn host_and_transport_must_agree() {
    let e = err("qemu+unix://host/system");
    assert_eq!(
        e,
        UriError::UnixWithHost {
            driver: Driver::Qemu
        }
    );
    assert!(e.to_string().contains("qemu:///system"), "{e}");
    assert!(matches!(
        err("qemu+unix://:5/system"),
        UriError::UnixWithHost { .. }
    ));
    let e = err("qemu+tls:///system");
    assert_eq!(
        e,
        UriError::MissingHost {
            driver: Driver::Qemu,
            transport: Transport::Tls
        }
    );
    assert_eq!(
        e.to_string(),
        "the tls transport needs a host, e.g. qemu+tls://HOST/system"
    );
    assert!(matches!(
        err("test+tcp:///default"),
        UriError::MissingHost { .. }
    ));
}

#[test]
fn not_uris() {
    for text in [
        "",
        "qemu",
        "system",
        "/run/vmgate/vmgate-sock",
        "://system",
        "+tls://h/system",
    ] {
        assert!(matches!(err(text), UriError::Syntax { .. }), "{text}");
    }
    assert_eq!(err("qemu:///system#frag"), UriError::Fragment);
    assert_eq!(err("qemu+tcp://@host/system"), UriError::EmptyUser);
}

#[test]
fn resolve_prefers_the_argument() {
    assert_eq!(
        ConnectUri::resolve(Some("test:///default")).ok(),
        Some(local(Driver::Test))
    );
    assert_eq!(
        DEFAULT_URI.parse::<ConnectUri>().ok(),
        Some(local(Driver::Qemu))
    );
}

#[test]
fn env_errors_name_the_variable() {
    let e = UriError::FromEnv(Box::new(UriError::UnknownDriver("xen".into())));
    assert!(
        e.to_string()
            .starts_with("VMGATE_DEFAULT_URI: driver \"xen\""),
        "{e}"
    );
}
