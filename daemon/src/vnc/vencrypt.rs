//! VeNCrypt (RFB security type 19) as QEMU and gtk-vnc speak it: the 0.2 version
//! exchange, one offered subtype, the acknowledgement, then TLS in the middle of the RFB
//! stream and the inner authentication inside it. Only the X509 subtypes exist here
//! (rustls has no anonymous suites); numbers as QEMU and gtk-vnc use them. The pure wire
//! pieces live in the RFB crate (`vmgate_rfb::vencrypt`) and are re-exported here;
//! `VencryptTls` holds the reloadable rustls configuration built from
//! `vnc_tls_x509_cert_dir` (QEMU's file layout).

use std::{
    path::PathBuf,
    sync::{Arc, PoisonError, RwLock},
};

use rustls::ServerConfig;

pub use vmgate_rfb::vencrypt::{Subtype, VERSION, choice_ack, parse_choice, version_reply};

use crate::tls::{self, ClientCerts, ServerFiles, TlsError};

/// The consoles' TLS configuration, rebuilt in place on reload.
pub struct VencryptTls {
    files: ServerFiles,
    clients: ClientCerts,
    current: RwLock<Arc<ServerConfig>>,
}

impl VencryptTls {
    /// Loads `ca-cert.pem`, `server-cert.pem`, `server-key.pem` and, when present,
    /// `ca-crl.pem` from `dir`; with `verify`, clients must present a certificate the CA
    /// signed (and the CRL does not list).
    pub fn load(dir: PathBuf, verify: bool) -> Result<VencryptTls, TlsError> {
        let crl = dir.join("ca-crl.pem");
        let files = ServerFiles {
            cert: dir.join("server-cert.pem"),
            key: dir.join("server-key.pem"),
            ca: dir.join("ca-cert.pem"),
            crl: crl.exists().then_some(crl),
        };
        let clients = if verify {
            ClientCerts::Required { allowed_dns: None }
        } else {
            ClientCerts::NotRequested
        };
        let config = tls::server_config(&files, &clients, &[])?;
        Ok(VencryptTls {
            files,
            clients,
            current: RwLock::new(config),
        })
    }

    /// Whether clients must present a certificate, which then identifies them (its DN).
    pub fn verifies_clients(&self) -> bool {
        matches!(self.clients, ClientCerts::Required { .. })
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the files; on error the old configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut files = self.files.clone();
        let crl = files.ca.with_file_name("ca-crl.pem");
        files.crl = crl.exists().then_some(crl);
        let fresh = tls::server_config(&files, &self.clients, &[])?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl crate::reload::ReloadTls for VencryptTls {
    fn name(&self) -> &str {
        "vnc"
    }

    fn reload(&self) -> Result<(), TlsError> {
        VencryptTls::reload(self)
    }
}
