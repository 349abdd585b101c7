//! `pki init-ca | server-cert | client-cert | query-dn | revoke`: the CA, certificates and CRL
//! for TLS, so that nobody has to learn certtool. Only argument parsing lives here; the work
//! is `vmgate::pki`'s. It never needs the daemon, so it never opens the session's connection.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use vmgate::ClientError;
use vmgate::pki;

#[derive(Debug, Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a certificate authority: DIR/cacert.pem and DIR/cakey.pem (mode 0600)
    InitCa {
        /// Directory for the CA, created 0700 if missing (libvirt's is /etc/pki/CA)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name
        #[arg(long, value_name = "NAME", default_value = "vmgate CA")]
        cn: String,
        /// Replace existing files
        #[arg(long)]
        force: bool,
    },
    /// Issue a server certificate in libvirt's layout (and QEMU's with --vnc-dir)
    ///
    /// Writes OUT/servercert.pem and OUT/private/serverkey.pem, and with --vnc-dir also
    /// V/ca-cert.pem, V/server-cert.pem and V/server-key.pem.
    ServerCert {
        /// The CA's directory (made by init-ca)
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// A DNS name or IP address clients connect to (repeat for more; the first is the CN)
        #[arg(long = "host", value_name = "NAME|IP", required = true)]
        hosts: Vec<String>,
        /// Directory for libvirt's layout (e.g. /etc/pki/vmgate)
        #[arg(long, value_name = "OUT")]
        out_dir: PathBuf,
        /// Also write QEMU's layout here (vnc_tls_x509_cert_dir, e.g. /etc/pki/vmgate-vnc)
        #[arg(long, value_name = "V")]
        vnc_dir: Option<PathBuf>,
        /// Replace existing files
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate, usable as ?pkipath=OUT
    ///
    /// Writes OUT/cacert.pem, OUT/clientcert.pem and OUT/clientkey.pem (~/.pki/vmgate is the
    /// default place the client looks).
    ClientCert {
        /// The CA's directory (made by init-ca)
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The client's common name (last in the DN)
        #[arg(long, value_name = "NAME")]
        cn: String,
        /// Attributes before the CN, in order, e.g. 'C=GB,ST=London,L=London,O=Example'
        #[arg(long, value_name = "DN")]
        dn: Option<String>,
        /// Directory for the files
        #[arg(long, value_name = "OUT")]
        out_dir: PathBuf,
        /// Replace existing files
        #[arg(long)]
        force: bool,
    },
    /// Print a certificate's subject DN as tls_allowed_dn_list matches it
    QueryDn {
        /// The certificate (PEM or DER)
        #[arg(value_name = "CERT")]
        cert: PathBuf,
    },
    /// Revoke a certificate: add it to DIR/cacrl.pem (and V/ca-crl.pem)
    Revoke {
        /// The CA's directory (made by init-ca)
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The certificate to revoke (issued by this CA)
        #[arg(value_name = "CERT")]
        cert: PathBuf,
        /// Also write the CRL as QEMU's ca-crl.pem in this directory
        #[arg(long, value_name = "V")]
        vnc_dir: Option<PathBuf>,
    },
}

pub fn run(args: &PkiArgs) -> Result<String, ClientError> {
    let report = match &args.command {
        PkiCommand::InitCa { dir, cn, force } => pki::init_ca(&pki::InitCa {
            dir,
            cn,
            force: *force,
        })?,
        PkiCommand::ServerCert {
            ca_dir,
            hosts,
            out_dir,
            vnc_dir,
            force,
        } => pki::server_cert(&pki::ServerCert {
            ca_dir,
            hosts,
            out_dir,
            vnc_dir: vnc_dir.as_deref(),
            force: *force,
        })?,
        PkiCommand::ClientCert {
            ca_dir,
            cn,
            dn,
            out_dir,
            force,
        } => pki::client_cert(&pki::ClientCert {
            ca_dir,
            cn,
            dn: dn.as_deref(),
            out_dir,
            force: *force,
        })?,
        PkiCommand::QueryDn { cert } => return Ok(format!("{}\n", pki::query_dn(cert)?)),
        PkiCommand::Revoke {
            ca_dir,
            cert,
            vnc_dir,
        } => pki::revoke(&pki::Revoke {
            ca_dir,
            cert,
            vnc_dir: vnc_dir.as_deref(),
        })?,
    };
    Ok(report.to_string())
}
