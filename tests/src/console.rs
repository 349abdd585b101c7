//! What the console test suites share: a certtool PKI with the consoles' certificate
//! directory in QEMU's layout, the `[vnc]` config of a TLS console with its own port
//! range, guests started through the real CLI, the tools gtk-vnc needs, and readers of the
//! CLI's JSON (audit records, sessions) that wait for a condition with a deadline.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;

use crate::{
    TestDaemon,
    pki::{Ca, Issued, set_mode},
    require_library, require_tool,
    vnc::{TlsCreds, display_port},
    wait_until,
};

/// How long audit records may take to reach the database.
pub const AUDIT_DEADLINE: Duration = Duration::from_secs(10);

/// A CA made by certtool, the consoles' certificate directory with a server certificate
/// for 127.0.0.1 and localhost, and client1's certificate.
pub struct ConsolePki {
    pub dir: TempDir,
    pub ca: Ca,
    pub cert_dir: PathBuf,
    pub client: Issued,
}

impl ConsolePki {
    /// None (the test is skipped, or fails under CI) without certtool.
    pub fn new() -> Option<ConsolePki> {
        if !require_tool("certtool", "gnutls-bin") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vmgvnctls")
            .tempdir()
            .expect("temp dir");
        let ca = Ca::new(&dir.path().join("ca"), "vmgate VNC Test CA");
        let server = ca.server("server", &["127.0.0.1", "localhost"]);
        let cert_dir = dir.path().join("vnc");
        install_server_cert(&ca.cert, &server, &cert_dir);
        let client = ca.client("client1", "client1");
        Some(ConsolePki {
            dir,
            ca,
            cert_dir,
            client,
        })
    }

    pub fn server_cert(&self) -> PathBuf {
        self.cert_dir.join("server-cert.pem")
    }

    /// What an `RfbClient` trusts and presents.
    pub fn creds(&self, client: Option<&Issued>) -> TlsCreds {
        TlsCreds::new(&self.ca.cert, client, "127.0.0.1").expect("client TLS configuration")
    }
}

/// Puts the CA and `server` into `dir` as `vnc_tls_x509_cert_dir` (QEMU's layout) wants
/// them, each renamed into place, since a reload may read them at any time.
pub fn install_server_cert(ca_cert: &Path, server: &Issued, dir: &Path) {
    fs::create_dir_all(dir).expect("create the certificate directory");
    for (from, name) in [
        (ca_cert, "ca-cert.pem"),
        (server.cert.as_path(), "server-cert.pem"),
        (server.key.as_path(), "server-key.pem"),
    ] {
        let tmp = dir.join(format!(".{name}.new"));
        fs::copy(from, &tmp).expect("copy a PEM file");
        set_mode(&tmp, 0o600);
        fs::rename(&tmp, dir.join(name)).expect("rename a PEM file into place");
    }
}

/// A `[vnc]` section autoporting over `ports` (a range of the test's own), then `extra`
/// `[vnc]` keys.
pub fn vnc_section(ports: std::ops::RangeInclusive<u16>, extra: &str) -> String {
    format!(
        "\n[vnc]\nremote_display_port_min = {}\nremote_display_port_max = {}\n{extra}",
        ports.start(),
        ports.end()
    )
}

/// `[vnc]` with TLS and required client certificates from `cert_dir`, an autoport range
/// of 20 ports from `base` (unique per test), and `extra` `[vnc]` keys.
pub fn tls_console_config(base: u16, cert_dir: &Path, extra: &str) -> String {
    let tls = format!(
        "vnc_tls = true\nvnc_tls_x509_verify = true\nvnc_tls_x509_cert_dir = \"{}\"\n{extra}",
        cert_dir.display()
    );
    vnc_section(base..=base + 19, &tls)
}

/// Defines and starts `name` with a VNC console plus `graphics` lines; returns its port.
pub fn start_guest(d: &TestDaemon, name: &str, graphics: &str) -> u16 {
    let text = format!("name = \"{name}\"\n[graphics]\ntype = \"vnc\"\n{graphics}\n");
    let path = d.file(&format!("{name}.toml"), &text);
    d.vmgate(&["define", path.to_str().expect("utf-8 path")])
        .ok();
    d.vmgate(&["start", name]).ok();
    display_port(d, name)
}

/// gvnccapture, expect and nss_wrapper's library (None: the test is skipped).
pub fn gvnc_tools() -> Option<PathBuf> {
    if !(require_tool("gvnccapture", "gvncviewer") && require_tool("expect", "expect")) {
        return None;
    }
    require_library("libnss_wrapper.so", "libnss-wrapper")
}

/// `HOST:DISPLAY` for gvnccapture; the server certificate names 127.0.0.1.
pub fn target(port: u16) -> String {
    format!("127.0.0.1:{}", port - 5900)
}

pub fn json_array(text: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        other => panic!("not a JSON array ({other:?}):\n{text}"),
    }
}

/// The audit records of `domain` once `done` holds for them (panics with them otherwise).
pub fn audit_until(d: &TestDaemon, domain: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    if wait_until(AUDIT_DEADLINE, || {
        last = json_array(d.vmgate(&["audit", "--domain", domain, "--json"]).ok());
        done(&last)
    }) {
        return last;
    }
    panic!("audit of {domain} never got there:\n{last:#?}");
}

/// A string field of a JSON record ("" when absent).
pub fn field<'a>(record: &'a Value, name: &str) -> &'a str {
    record[name].as_str().unwrap_or_default()
}

/// The records of one event.
pub fn events<'a>(records: &'a [Value], event: &'a str) -> impl Iterator<Item = &'a Value> {
    records.iter().filter(move |r| field(r, "event") == event)
}

/// `vmgate console-sessions NAME --json`.
pub fn sessions(d: &TestDaemon, name: &str) -> Vec<Value> {
    json_array(d.vmgate(&["console-sessions", name, "--json"]).ok())
}
