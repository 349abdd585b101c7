//! The `[daemon]` section: what libvirtd.conf configures (driver, sockets, listeners,
//! authentication, TLS files, client limits and keepalive), with libvirt's key names and
//! vmgate's defaults as DESIGN.md lists them.
//!
//! This module owns the schema and defaults only; checks across keys and on files live in
//! `validate`, and relative paths are resolved by `load`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::values::{AccessDriver, AuthKind, DriverKind, SocketMode, boolean};

/// The CRL libvirt uses when `crl_file` is not set and this file exists.
pub const DEFAULT_CRL_FILE: &str = "/etc/pki/CA/cacrl.pem";

/// `[daemon]`: the management daemon itself (libvirtd.conf).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Which driver runs guests: `"qemu"` (real QEMU processes) or `"test"` (in-process
    /// guests with a synthetic framebuffer).
    pub driver: DriverKind,
    /// Where the daemon keeps its database and per-guest state; created 0700 at start.
    pub state_dir: PathBuf,
    /// Directory of the API sockets `vmgate-sock` and `vmgate-sock-ro`; created 0755 at start.
    pub unix_sock_dir: PathBuf,
    /// Group owning the API sockets; unset means the daemon's own group.
    pub unix_sock_group: Option<String>,
    /// Permissions of the read-only socket, as an octal string.
    pub unix_sock_ro_perms: SocketMode,
    /// Permissions of the read-write socket, as an octal string.
    pub unix_sock_rw_perms: SocketMode,
    /// Authentication on the read-only UNIX socket: `none`, `polkit` or `sasl`.
    pub auth_unix_ro: AuthKind,
    /// Authentication on the read-write UNIX socket: `none`, `polkit` or `sasl`.
    pub auth_unix_rw: AuthKind,
    /// Authentication on the plain TCP listener: `sasl` or `none`.
    pub auth_tcp: AuthKind,
    /// Authentication on the TLS listener on top of the client certificate: `none` or `sasl`.
    pub auth_tls: AuthKind,
    /// Listen for API connections over TLS on `tls_port`.
    #[serde(deserialize_with = "boolean::de")]
    pub listen_tls: bool,
    /// Listen for API connections over plain TCP on `tcp_port` (needs SASL).
    #[serde(deserialize_with = "boolean::de")]
    pub listen_tcp: bool,
    /// Address the TCP and TLS listeners bind; unset means all interfaces.
    pub listen_addr: Option<String>,
    /// Port of the TLS listener.
    pub tls_port: u16,
    /// Port of the plain TCP listener.
    pub tcp_port: u16,
    /// Minimum SASL security strength factor on plain TCP. vmgate (unlike libvirt) accepts 0:
    /// SASL without a security layer, for test setups only.
    pub tcp_min_ssf: u32,
    /// Access control drivers: `[]` (none beyond authentication) or `["polkit"]`.
    pub access_drivers: Vec<AccessDriver>,
    /// The server's TLS private key (PEM).
    pub key_file: PathBuf,
    /// The server's TLS certificate (PEM).
    pub cert_file: PathBuf,
    /// The CA certificate that client certificates must chain to (PEM).
    pub ca_file: PathBuf,
    /// The certificate revocation list; unset means /etc/pki/CA/cacrl.pem when that exists.
    pub crl_file: Option<PathBuf>,
    /// Accept TLS clients without checking their certificate (testing only).
    #[serde(deserialize_with = "boolean::de")]
    pub tls_no_verify_certificate: bool,
    /// Globs over the client certificate DN (`C=GB,ST=London,...,CN=host`); unset means
    /// not checked, an empty list admits nobody.
    pub tls_allowed_dn_list: Option<Vec<String>>,
    /// Globs over SASL user names; unset means not checked, an empty list admits nobody.
    pub sasl_allowed_username_list: Option<Vec<String>>,
    /// SASL mechanisms offered on API connections with `auth_* = "sasl"`: SCRAM-SHA-256,
    /// PLAIN, GSSAPI. (vmgate; libvirt takes them from Cyrus SASL's mech_list)
    pub sasl_mechanisms: Vec<String>,
    /// Keytab holding the API service key (`<sasl_service>/<host>@REALM`) for GSSAPI; unset
    /// means the system default keytab (`KRB5_KTNAME`, else /etc/krb5.keytab). (vmgate)
    pub sasl_keytab: Option<PathBuf>,
    /// Kerberos service name of API logins: clients ask for `<service>/<host>@REALM`, and
    /// libvirt's clients for `libvirt/<host>@REALM`. (vmgate)
    pub sasl_service: String,
    /// A realm whose principals are named without it (`alice@EXAMPLE.COM` becomes `alice`) in
    /// `sasl_allowed_username_list` and the API's idea of the user; principals of other
    /// realms keep `@REALM`. Unset means every principal keeps its realm. (vmgate)
    pub sasl_local_realm: Option<String>,
    /// Maximum number of concurrent API connections.
    pub max_clients: u32,
    /// Of `max_clients`, the connections only the read-write UNIX socket may use, so that
    /// clients of the read-only socket (or of TCP and TLS) cannot lock root out; never more
    /// than half of `max_clients`, 0 for none. (vmgate)
    pub max_clients_rw_reserve: u32,
    /// Maximum number of API connections still waiting to authenticate: in the TLS
    /// handshake, or connected but not yet through a required SASL login. Over it the
    /// oldest idle one of the source (address or local uid) with the most is closed; new
    /// connections are always accepted.
    pub max_anonymous_clients: u32,
    /// Seconds a connection that must log in with SASL has to finish, counted from
    /// connect; then it is closed. (vmgate)
    pub auth_timeout_secs: u32,
    /// Maximum number of requests one client may have in progress at once.
    pub max_client_requests: u32,
    /// Seconds between keepalive probes to an idle client; -1 disables keepalive.
    pub keepalive_interval: i32,
    /// Unanswered keepalive probes after which a client is disconnected.
    pub keepalive_count: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            driver: DriverKind::Qemu,
            state_dir: PathBuf::from("/var/lib/vmgate"),
            unix_sock_dir: PathBuf::from("/run/vmgate"),
            unix_sock_group: None,
            unix_sock_ro_perms: SocketMode::WORLD,
            unix_sock_rw_perms: SocketMode::OWNER,
            auth_unix_ro: AuthKind::None,
            auth_unix_rw: AuthKind::None,
            auth_tcp: AuthKind::Sasl,
            auth_tls: AuthKind::None,
            listen_tls: false,
            listen_tcp: false,
            listen_addr: None,
            tls_port: 16514,
            tcp_port: 16509,
            tcp_min_ssf: 56,
            access_drivers: Vec::new(),
            key_file: PathBuf::from("/etc/pki/vmgate/private/serverkey.pem"),
            cert_file: PathBuf::from("/etc/pki/vmgate/servercert.pem"),
            ca_file: PathBuf::from("/etc/pki/CA/cacert.pem"),
            crl_file: None,
            tls_no_verify_certificate: false,
            tls_allowed_dn_list: None,
            sasl_allowed_username_list: None,
            sasl_mechanisms: vec!["SCRAM-SHA-256".to_string(), "PLAIN".to_string()],
            sasl_keytab: None,
            sasl_service: "libvirt".to_string(),
            sasl_local_realm: None,
            max_clients: 5000,
            max_clients_rw_reserve: 16,
            max_anonymous_clients: 20,
            auth_timeout_secs: 30,
            max_client_requests: 5,
            keepalive_interval: 5,
            keepalive_count: 5,
        }
    }
}

impl DaemonConfig {
    /// The CRL to load: `crl_file` when set, else /etc/pki/CA/cacrl.pem if it exists (as
    /// libvirt does), else none.
    pub fn effective_crl_file(&self) -> Option<PathBuf> {
        self.crl_file_or(Path::new(DEFAULT_CRL_FILE))
    }

    pub(crate) fn crl_file_or(&self, fallback: &Path) -> Option<PathBuf> {
        match &self.crl_file {
            Some(path) => Some(path.clone()),
            None if fallback.exists() => Some(fallback.to_path_buf()),
            None => None,
        }
    }

    /// The read-write API socket, `<unix_sock_dir>/vmgate-sock`.
    pub fn rw_socket_path(&self) -> PathBuf {
        self.unix_sock_dir.join("vmgate-sock")
    }

    /// The read-only API socket, `<unix_sock_dir>/vmgate-sock-ro`.
    pub fn ro_socket_path(&self) -> PathBuf {
        self.unix_sock_dir.join("vmgate-sock-ro")
    }
}
