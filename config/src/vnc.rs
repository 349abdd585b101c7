//! The `[vnc]` section: the per-guest VNC gateways (qemu.conf's `vnc_*` keys plus vmgate's
//! own SASL mechanism list and Kerberos settings, ACL default, throttling, lockout and audit
//! retention).
//!
//! This module owns the schema, the defaults DESIGN.md gives, and the FIPS lookup; checks
//! across keys and on the certificate directory live in `validate`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::values::{AclDefault, Secret, boolean};

/// Where the kernel says whether it runs in FIPS mode.
pub const FIPS_ENABLED_FILE: &str = "/proc/sys/crypto/fips_enabled";

/// `[vnc]`: how guests' consoles are served (qemu.conf's VNC keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VncConfig {
    /// IP address the per-guest VNC listeners bind.
    pub vnc_listen: String,
    /// Serve consoles on UNIX sockets `<unix_sock_dir>/vnc/<guest>.sock` instead of TCP ports.
    #[serde(deserialize_with = "boolean::de")]
    pub vnc_auto_unix_socket: bool,
    /// Offer VeNCrypt with x509 certificates from `vnc_tls_x509_cert_dir`.
    #[serde(deserialize_with = "boolean::de")]
    pub vnc_tls: bool,
    /// Directory holding ca-cert.pem, server-cert.pem, server-key.pem and optional ca-crl.pem.
    pub vnc_tls_x509_cert_dir: PathBuf,
    /// Require VNC clients to present a certificate signed by ca-cert.pem.
    #[serde(deserialize_with = "boolean::de")]
    pub vnc_tls_x509_verify: bool,
    /// VNC password for guests that set none of their own; at most 8 bytes.
    pub vnc_password: Option<Secret>,
    /// Authenticate console users with SASL (needs `vnc_tls`, unless GSSAPI is offered: it
    /// alone has a security layer).
    #[serde(deserialize_with = "boolean::de")]
    pub vnc_sasl: bool,
    /// First TCP port given to a guest console with autoport (display 0 is 5900).
    pub remote_display_port_min: u16,
    /// Last TCP port given to a guest console with autoport.
    pub remote_display_port_max: u16,
    /// SASL mechanisms offered on consoles: SCRAM-SHA-256, PLAIN, GSSAPI. (vmgate)
    pub vnc_sasl_mechanisms: Vec<String>,
    /// Keytab holding the console service key (`<vnc_sasl_service>/<host>@REALM`) for
    /// GSSAPI; unset means the system default keytab (`KRB5_KTNAME`, else /etc/krb5.keytab).
    /// (vmgate)
    pub vnc_sasl_keytab: Option<PathBuf>,
    /// Kerberos service name of console logins: clients ask for `<service>/<host>@REALM`.
    /// (vmgate)
    pub vnc_sasl_service: String,
    /// A realm whose principals are named without it (`alice@EXAMPLE.COM` becomes `alice`) in
    /// the console ACL, sessions and audit; principals of other realms keep `@REALM`. Unset
    /// means every principal keeps its realm. (vmgate)
    pub vnc_sasl_local_realm: Option<String>,
    /// Whether a guest with no console ACL rules admits (`allow`) or refuses (`deny`)
    /// sessions that present an identity. (vmgate)
    pub vnc_acl_default: AclDefault,
    /// Unauthenticated console connections allowed per guest; when full, a new one evicts
    /// the oldest of the source with the most, never the lone connection of another source.
    /// (vmgate)
    pub vnc_max_pending: u32,
    /// Unauthenticated console connections allowed per guest from one source address (or
    /// local uid); a new one evicts that source's oldest. OpenSSH's PerSourceMaxStartups.
    /// (vmgate)
    pub vnc_max_pending_per_source: u32,
    /// Console sessions (authenticated and pending) the daemon holds at once over all
    /// guests; unset means (the file-descriptor limit - a reserve for the API) / 2, since
    /// a session behind QEMU holds two descriptors. (vmgate)
    pub vnc_max_sessions: Option<u32>,
    /// Seconds a console client has to finish authenticating. (vmgate)
    pub vnc_handshake_timeout_secs: u64,
    /// Failed logins from one source within the window that trigger a lockout. (vmgate)
    pub vnc_auth_max_failures: u32,
    /// Seconds over which failed logins are counted. (vmgate)
    pub vnc_auth_failure_window_secs: u64,
    /// Seconds a source stays locked out. (vmgate)
    pub vnc_auth_lockout_secs: u64,
    /// Days console audit records are kept. (vmgate)
    pub audit_max_age_days: u32,
    /// Console audit records kept at most; the oldest go first, in the same pruning pass
    /// as `audit_max_age_days`. (vmgate)
    pub audit_max_rows: u64,
    /// Whether the host runs in FIPS mode (no DES, so no VNC passwords); unset means read
    /// /proc/sys/crypto/fips_enabled.
    #[serde(deserialize_with = "boolean::de_opt")]
    pub fips: Option<bool>,
}

impl Default for VncConfig {
    fn default() -> Self {
        VncConfig {
            vnc_listen: "127.0.0.1".to_string(),
            vnc_auto_unix_socket: false,
            vnc_tls: false,
            vnc_tls_x509_cert_dir: PathBuf::from("/etc/pki/vmgate-vnc"),
            vnc_tls_x509_verify: false,
            vnc_password: None,
            vnc_sasl: false,
            remote_display_port_min: 5900,
            remote_display_port_max: 65535,
            vnc_sasl_mechanisms: vec!["SCRAM-SHA-256".to_string(), "PLAIN".to_string()],
            vnc_sasl_keytab: None,
            vnc_sasl_service: "vnc".to_string(),
            vnc_sasl_local_realm: None,
            vnc_acl_default: AclDefault::Allow,
            vnc_max_pending: 20,
            vnc_max_pending_per_source: 4,
            vnc_max_sessions: None,
            vnc_handshake_timeout_secs: 60,
            vnc_auth_max_failures: 5,
            vnc_auth_failure_window_secs: 60,
            vnc_auth_lockout_secs: 60,
            audit_max_age_days: 90,
            audit_max_rows: 10_000_000,
            fips: None,
        }
    }
}

impl VncConfig {
    /// Whether FIPS rules apply: the `fips` key when set, else whether
    /// /proc/sys/crypto/fips_enabled reads `1`, else false.
    pub fn fips_enabled(&self) -> bool {
        self.fips_enabled_from(Path::new(FIPS_ENABLED_FILE))
    }

    pub(crate) fn fips_enabled_from(&self, proc_file: &Path) -> bool {
        self.fips.unwrap_or_else(|| {
            std::fs::read_to_string(proc_file).is_ok_and(|text| text.trim() == "1")
        })
    }
}
