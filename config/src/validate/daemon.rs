//! Rules for `[daemon]`: driver and feature availability, sockets and their permissions,
//! authentication per transport, SASL mechanisms and Kerberos settings, TLS files and
//! allowlists, client limits and keepalive.

use crate::Config;
use crate::daemon::DaemonConfig;
use crate::diag::Report;
use crate::domain::check_socket_path;
use crate::values::{AccessDriver, AuthKind, DriverKind};

use super::files::{check_private_key, check_readable};
use super::{Supported, check_nonzero, not_available, sasl};

pub(super) fn check(cfg: &Config, supported: &Supported, report: &mut Report) {
    check_driver(cfg, supported, report);
    check_sockets(cfg, supported, report);
    check_listeners(cfg, supported, report);
    check_sasl(cfg, supported, report);
    if cfg.daemon.listen_tls && supported.listen_tls {
        check_tls(cfg, report);
    }
    check_limits(cfg, report);
}

fn check_driver(cfg: &Config, supported: &Supported, report: &mut Report) {
    match cfg.daemon.driver {
        DriverKind::Qemu if !supported.qemu_driver => report.error(
            "daemon.driver",
            not_available("the qemu driver is", "set driver = \"test\""),
        ),
        DriverKind::Test if !supported.test_driver => report.error(
            "daemon.driver",
            not_available("the test driver is", "set driver = \"qemu\""),
        ),
        _ => {}
    }
}

fn check_sockets(cfg: &Config, supported: &Supported, report: &mut Report) {
    let d = &cfg.daemon;
    for (key, path) in [
        ("daemon.state_dir", &d.state_dir),
        ("daemon.unix_sock_dir", &d.unix_sock_dir),
    ] {
        if path.as_os_str().is_empty() {
            report.error(
                key,
                "is empty; name a directory (the daemon creates it at start)",
            );
        }
    }
    if !d.unix_sock_dir.as_os_str().is_empty() {
        for socket in [d.rw_socket_path(), d.ro_socket_path()] {
            if let Err(e) = check_socket_path(&socket) {
                report.error("daemon.unix_sock_dir", e.to_string());
            }
        }
    }
    if d.unix_sock_group.as_deref() == Some("") {
        report.error(
            "daemon.unix_sock_group",
            "is empty; name a group, or remove the key to use the daemon's own group",
        );
    }
    for (key, auth) in [
        ("daemon.auth_unix_ro", d.auth_unix_ro),
        ("daemon.auth_unix_rw", d.auth_unix_rw),
    ] {
        let name = key.trim_start_matches("daemon.");
        check_auth_supported(
            report,
            key,
            auth,
            supported,
            &format!("set {name} = \"none\""),
        );
    }
    if d.unix_sock_rw_perms.bits() & 0o002 != 0 && d.auth_unix_rw == AuthKind::None {
        report.warn(
            "daemon.unix_sock_rw_perms",
            format!(
                "\"{}\" lets every local user connect to the read-write socket, and with \
                 auth_unix_rw = \"none\" that gives them full control; set auth_unix_rw = \
                 \"polkit\" or unix_sock_rw_perms = \"0700\"",
                d.unix_sock_rw_perms
            ),
        );
    }
    if d.access_drivers.contains(&AccessDriver::Polkit) && !supported.polkit_access {
        report.error(
            "daemon.access_drivers",
            not_available("the polkit access driver is", "set access_drivers = []"),
        );
    }
    if d.access_drivers.len() > 1 {
        report.warn(
            "daemon.access_drivers",
            "lists \"polkit\" more than once; list it once",
        );
    }
}

fn check_auth_supported(report: &mut Report, key: &str, auth: AuthKind, s: &Supported, fix: &str) {
    match auth {
        AuthKind::Polkit if !s.polkit => {
            report.error(key, not_available("polkit authentication is", fix));
        }
        AuthKind::Sasl if !s.sasl => {
            report.error(key, not_available("SASL authentication is", fix))
        }
        _ => {}
    }
}

fn check_listeners(cfg: &Config, supported: &Supported, report: &mut Report) {
    let d = &cfg.daemon;
    if d.listen_addr
        .as_deref()
        .is_some_and(|a| a.trim().is_empty())
    {
        report.error(
            "daemon.listen_addr",
            "is empty; write an address such as \"0.0.0.0\" or \"::\", or remove the key to \
             listen on all interfaces",
        );
    }
    for (key, auth) in [
        ("daemon.auth_tcp", d.auth_tcp),
        ("daemon.auth_tls", d.auth_tls),
    ] {
        if auth == AuthKind::Polkit {
            let name = key.trim_start_matches("daemon.");
            let good = if name == "auth_tcp" { "sasl" } else { "none" };
            report.error(
                key,
                format!(
                    "\"polkit\" can only judge local processes, not network clients; set \
                     {name} = \"{good}\""
                ),
            );
        }
    }
    if d.listen_tls {
        if !supported.listen_tls {
            report.error(
                "daemon.listen_tls",
                not_available("TLS listeners are", "set listen_tls = false"),
            );
        }
        check_auth_supported(
            report,
            "daemon.auth_tls",
            d.auth_tls,
            supported,
            "set auth_tls = \"none\"",
        );
        if d.tls_port == 0 {
            report.warn(
                "daemon.tls_port",
                "is 0, so the TLS listener gets a random port clients cannot know; set a port \
                 such as 16514",
            );
        }
    }
    if d.listen_tcp {
        if !supported.listen_tcp {
            report.error(
                "daemon.listen_tcp",
                not_available("plain TCP listeners are", "set listen_tcp = false"),
            );
        }
        check_auth_supported(
            report,
            "daemon.auth_tcp",
            d.auth_tcp,
            supported,
            "set listen_tcp = false",
        );
        check_tcp_security(cfg, report);
        if d.tcp_port == 0 {
            report.warn(
                "daemon.tcp_port",
                "is 0, so the TCP listener gets a random port clients cannot know; set a port \
                 such as 16509",
            );
        }
    }
    if d.listen_tls && d.listen_tcp && d.tls_port == d.tcp_port && d.tls_port != 0 {
        report.error(
            "daemon.tcp_port",
            format!(
                "tcp_port and tls_port are both {}; give the listeners different ports",
                d.tcp_port
            ),
        );
    }
    if d.access_drivers.contains(&AccessDriver::Polkit) && (d.listen_tls || d.listen_tcp) {
        report.warn(
            "daemon.access_drivers",
            "\"polkit\" can only judge local processes, so every TCP and TLS caller will be \
             refused; use access_drivers = [] to serve remote clients",
        );
    }
    if !sasl_transports(d).is_empty()
        && d.sasl_allowed_username_list
            .as_ref()
            .is_some_and(Vec::is_empty)
    {
        report.warn(
            "daemon.sasl_allowed_username_list",
            "is empty, so EVERY SASL user is refused; list user globs such as [\"admin\", \
             \"ops-*\"], or remove the key to not check user names",
        );
    }
}

/// The `auth_*` keys whose transport is on and asks for SASL. `auth_tcp` and `auth_tls`
/// count only with their listener on (socket activation turns `listen_*` on before the
/// config is validated).
fn sasl_transports(d: &DaemonConfig) -> Vec<&'static str> {
    [
        ("auth_unix_ro", d.auth_unix_ro, true),
        ("auth_unix_rw", d.auth_unix_rw, true),
        ("auth_tcp", d.auth_tcp, d.listen_tcp),
        ("auth_tls", d.auth_tls, d.listen_tls),
    ]
    .into_iter()
    .filter(|&(_, auth, on)| on && auth == AuthKind::Sasl)
    .map(|(name, _, _)| name)
    .collect()
}

fn check_sasl(cfg: &Config, supported: &Supported, report: &mut Report) {
    let d = &cfg.daemon;
    let key = "daemon.sasl_mechanisms";
    let keytab = d.sasl_keytab.as_deref();
    sasl::check_keys(
        report,
        &sasl::SaslKeys {
            prefix: "daemon.sasl_",
            mechanisms: &d.sasl_mechanisms,
            service: &d.sasl_service,
            default_service: "libvirt",
            local_realm: d.sasl_local_realm.as_deref(),
            keytab,
        },
    );
    let transports = sasl_transports(d);
    let Some(first) = transports.first() else {
        return;
    };
    if d.sasl_mechanisms.is_empty() {
        report.error(
            key,
            format!(
                "is empty while {first} = \"sasl\", so nobody could log in; list \
                 \"SCRAM-SHA-256\" and/or \"PLAIN\""
            ),
        );
        return;
    }
    let has_gssapi = sasl::lists_gssapi(&d.sasl_mechanisms);
    if has_gssapi && !supported.gssapi {
        report.error(key, sasl::gssapi_not_available());
    }
    if transports.contains(&"auth_tcp") && d.sasl_mechanisms.iter().all(|m| m == sasl::GSSAPI) {
        report.warn(
            key,
            "lists only \"GSSAPI\", which is not offered on plain TCP (its security layer \
             cannot wrap HTTP/2), so nobody can log in over listen_tcp; use TLS \
             (listen_tls, qemu+tls://), or also list \"SCRAM-SHA-256\" for test setups",
        );
    }
    // GSSAPI is never offered on plain TCP, so only the other transports read the keytab.
    if has_gssapi && supported.gssapi && transports.iter().any(|&t| t != "auth_tcp") {
        sasl::check_keytab_file(report, "daemon.sasl_keytab", keytab);
    }
}

fn check_tcp_security(cfg: &Config, report: &mut Report) {
    let d = &cfg.daemon;
    match d.auth_tcp {
        AuthKind::None => report.warn(
            "daemon.auth_tcp",
            "is \"none\" with listen_tcp = true, so anyone who can reach tcp_port gets full \
             control; set auth_tcp = \"sasl\" or use listen_tls instead",
        ),
        // GSSAPI's layer cannot wrap HTTP/2 and SCRAM has none, so no API login on plain
        // TCP ever reaches a security strength above 0.
        AuthKind::Sasl if d.tcp_min_ssf > 0 => report.error(
            "daemon.tcp_min_ssf",
            format!(
                "{} needs a SASL security layer, and none can wrap the API's HTTP/2 stream \
                 (SCRAM-SHA-256 has none; GSSAPI is offered only on UNIX sockets and TLS), \
                 so nobody could log in over TCP; use listen_tls, or set tcp_min_ssf = 0 \
                 for test setups only",
                d.tcp_min_ssf
            ),
        ),
        AuthKind::Sasl if d.tcp_min_ssf == 0 => report.warn(
            "daemon.tcp_min_ssf",
            "is 0, so SASL on plain TCP runs without a security layer and the API traffic is \
             not encrypted; use it for test setups only, and listen_tls otherwise",
        ),
        _ => {}
    }
}

fn check_tls(cfg: &Config, report: &mut Report) {
    let d = &cfg.daemon;
    let fix =
        |key: &str| format!("create it, point {key} at the right file, or set listen_tls = false");
    check_private_key(report, "daemon.key_file", &d.key_file, &fix("key_file"));
    check_readable(report, "daemon.cert_file", &d.cert_file, &fix("cert_file"));
    check_readable(report, "daemon.ca_file", &d.ca_file, &fix("ca_file"));
    if let Some(crl) = &d.crl_file {
        check_readable(report, "daemon.crl_file", crl, &fix("crl_file"));
    }
    if d.tls_no_verify_certificate {
        report.warn(
            "daemon.tls_no_verify_certificate",
            "is true, so TLS clients are admitted without checking their certificates; set it \
             to false outside of tests",
        );
    }
    if d.tls_allowed_dn_list.as_ref().is_some_and(Vec::is_empty) {
        report.warn(
            "daemon.tls_allowed_dn_list",
            "is EMPTY, so EVERY TLS client is refused, locking everyone out; list DN globs \
             such as [\"C=GB,O=Example,CN=*\"], or remove the key to not check DNs",
        );
    }
}

fn check_limits(cfg: &Config, report: &mut Report) {
    let d = &cfg.daemon;
    let nobody = "would refuse every connection";
    check_nonzero(report, "daemon.max_clients", d.max_clients.into(), nobody);
    check_nonzero(
        report,
        "daemon.max_anonymous_clients",
        d.max_anonymous_clients.into(),
        "would refuse every connection, since each starts unauthenticated",
    );
    check_nonzero(
        report,
        "daemon.auth_timeout_secs",
        d.auth_timeout_secs.into(),
        "would close every connection that must log in before it can",
    );
    check_nonzero(
        report,
        "daemon.max_client_requests",
        d.max_client_requests.into(),
        "would let no client make a request",
    );
    if d.max_anonymous_clients > d.max_clients && d.max_clients > 0 {
        report.error(
            "daemon.max_anonymous_clients",
            format!(
                "{} is more than max_clients ({}); set it no higher than max_clients",
                d.max_anonymous_clients, d.max_clients
            ),
        );
    }
    if d.keepalive_interval == 0 || d.keepalive_interval < -1 {
        report.error(
            "daemon.keepalive_interval",
            format!(
                "{} is not an interval; set a number of seconds, or -1 to disable keepalive",
                d.keepalive_interval
            ),
        );
    }
}
