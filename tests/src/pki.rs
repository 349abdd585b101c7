//! Test PKIs made with GnuTLS `certtool`, the way libvirt's TLS guide has an operator make
//! them (RSA keys, templates with `tls_www_server`/`tls_www_client`), so the daemon and the
//! client are tested against certificates they did not make themselves. Callers check
//! `require_tool("certtool", "gnutls-bin")` first.
//!
//! Everything is written under a directory the test owns; private keys are made 0600 as an
//! operator would (certtool writes them with the umask's mode).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

/// The DN fields every client certificate here gets before its CN, in certificate order.
pub const CLIENT_DN_PREFIX: &str = "C=GB,ST=London,L=London,O=Harness";

/// The allowlist form of a client certificate's DN made by [`Ca::client`].
pub fn client_dn(cn: &str) -> String {
    format!("{CLIENT_DN_PREFIX},CN={cn}")
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The kind of key every certificate of a [`Ca`] gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA 2048, as libvirt's guide makes them.
    Rsa2048,
    /// ECDSA P-256.
    EcdsaP256,
}

impl KeyType {
    fn args(self) -> &'static [&'static str] {
        match self {
            KeyType::Rsa2048 => &["--key-type=rsa", "--bits=2048"],
            KeyType::EcdsaP256 => &["--key-type=ecdsa", "--curve=secp256r1"],
        }
    }
}

/// A certificate authority on disk.
pub struct Ca {
    dir: PathBuf,
    keys: KeyType,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new self-signed CA with RSA keys in `dir` (created), named `cn`.
    pub fn new(dir: &Path, cn: &str) -> Ca {
        Ca::with_keys(dir, cn, KeyType::Rsa2048)
    }

    /// A new self-signed CA whose certificates all get `keys`.
    pub fn with_keys(dir: &Path, cn: &str, keys: KeyType) -> Ca {
        fs::create_dir_all(dir).expect("create the PKI directory");
        let ca = Ca {
            dir: dir.to_path_buf(),
            keys,
            cert: dir.join("cacert.pem"),
            key: dir.join("cakey.pem"),
        };
        genkey(&ca.key, keys);
        let template = ca.template(
            "ca",
            &format!("cn = {cn}\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 30\n"),
        );
        certtool(&[
            "--generate-self-signed",
            "--load-privkey",
            path(&ca.key),
            "--template",
            path(&template),
            "--outfile",
            path(&ca.cert),
        ]);
        ca
    }

    fn template(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.info"));
        fs::write(&path, text).expect("write a certtool template");
        path
    }

    /// Signs a certificate for a new key with the template `text`; files `<name>-cert.pem`
    /// and `<name>-key.pem`.
    pub fn issue(&self, name: &str, text: &str) -> Issued {
        let issued = Issued {
            cert: self.dir.join(format!("{name}-cert.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        genkey(&issued.key, self.keys);
        let template = self.template(name, text);
        certtool(&[
            "--generate-certificate",
            "--load-privkey",
            path(&issued.key),
            "--load-ca-certificate",
            path(&self.cert),
            "--load-ca-privkey",
            path(&self.key),
            "--template",
            path(&template),
            "--outfile",
            path(&issued.cert),
        ]);
        issued
    }

    /// A server certificate whose subjectAltNames are `hosts` (names and IP addresses).
    pub fn server(&self, name: &str, hosts: &[&str]) -> Issued {
        let mut text = format!(
            "organization = Harness\ncn = {}\n",
            hosts.first().unwrap_or(&name)
        );
        for host in hosts {
            let kind = match host.parse::<std::net::IpAddr>() {
                Ok(_) => "ip_address",
                Err(_) => "dns_name",
            };
            text.push_str(&format!("{kind} = {host}\n"));
        }
        text.push_str("tls_www_server\nencryption_key\nsigning_key\nexpiration_days = 30\n");
        self.issue(name, &text)
    }

    /// An old-style server certificate with only a CN, which webpki cannot match.
    pub fn server_without_san(&self, name: &str, cn: &str) -> Issued {
        self.issue(
            name,
            &format!(
                "organization = Harness\ncn = {cn}\ntls_www_server\nencryption_key\nsigning_key\n\
                 expiration_days = 30\n"
            ),
        )
    }

    fn client_template(cn: &str, validity: &str) -> String {
        format!(
            "country = GB\nstate = London\nlocality = London\norganization = Harness\ncn = {cn}\n\
             tls_www_client\nencryption_key\nsigning_key\n{validity}"
        )
    }

    /// A client certificate with the DN [`client_dn`]`(cn)`.
    pub fn client(&self, name: &str, cn: &str) -> Issued {
        self.issue(name, &Self::client_template(cn, "expiration_days = 30\n"))
    }

    /// A client certificate that expired in 2020.
    pub fn expired_client(&self, name: &str, cn: &str) -> Issued {
        let validity = "activation_date = \"2020-01-01 00:00:00\"\n\
                        expiration_date = \"2020-02-01 00:00:00\"\n";
        self.issue(name, &Self::client_template(cn, validity))
    }

    /// Writes a CRL revoking `revoked` (none: an empty CRL) to `out`.
    pub fn crl(&self, revoked: &[&Issued], out: &Path) {
        let template = self.template("crl", "crl_next_update = 30\n");
        let mut args = vec![
            "--generate-crl",
            "--load-ca-privkey",
            path(&self.key),
            "--load-ca-certificate",
            path(&self.cert),
            "--template",
            path(&template),
        ];
        // certtool reads one certificate per --load-certificate, so revoke from one bundle.
        let bundle = self.dir.join("revoked-bundle.pem");
        if !revoked.is_empty() {
            let mut text = String::new();
            for issued in revoked {
                text.push_str(&fs::read_to_string(&issued.cert).expect("read a certificate"));
            }
            fs::write(&bundle, text).expect("write the bundle");
            args.extend(["--load-certificate", path(&bundle)]);
        }
        let tmp = out.with_extension("tmp");
        args.extend(["--outfile", path(&tmp)]);
        certtool(&args);
        // Renamed into place, as an operator's tooling should, so a reload never reads half.
        fs::rename(&tmp, out).expect("move the CRL into place");
    }

    /// A `?pkipath=` directory for `client`: `cacert.pem` (this CA), `clientcert.pem`,
    /// `clientkey.pem` (0600).
    pub fn pkipath(&self, client: &Issued, dir: &Path) -> PathBuf {
        pkipath_with_ca(&self.cert, client, dir)
    }
}

/// What a test of the TLS API needs, under one directory: a CA, the daemon's certificate
/// for `localhost`, and the pkipath of a client `client1`.
pub struct ApiTls {
    pub ca: Ca,
    pub server: Issued,
    pub pkipath: PathBuf,
}

impl ApiTls {
    pub fn new(dir: &Path) -> ApiTls {
        let ca = Ca::new(&dir.join("ca"), "vmgate Test CA");
        let server = ca.server("server", &["localhost"]);
        let client = ca.client("client1", "client1");
        let pkipath = ca.pkipath(&client, &dir.join("pki"));
        ApiTls {
            ca,
            server,
            pkipath,
        }
    }

    /// The daemon's `key_file`, `cert_file` and `ca_file` lines.
    pub fn files(&self) -> String {
        format!(
            "key_file = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\n",
            self.server.key.display(),
            self.server.cert.display(),
            self.ca.cert.display()
        )
    }

    /// The client's URI for the test driver behind `port`.
    pub fn uri(&self, port: u16) -> String {
        format!(
            "test+tls://localhost:{port}/default?pkipath={}",
            self.pkipath.display()
        )
    }
}

/// A `?pkipath=` directory trusting `ca_cert` and presenting `client`.
pub fn pkipath_with_ca(ca_cert: &Path, client: &Issued, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).expect("create the pkipath directory");
    fs::copy(ca_cert, dir.join("cacert.pem")).expect("copy cacert.pem");
    fs::copy(&client.cert, dir.join("clientcert.pem")).expect("copy clientcert.pem");
    let key = dir.join("clientkey.pem");
    fs::copy(&client.key, &key).expect("copy clientkey.pem");
    set_mode(&key, 0o600);
    dir.to_path_buf()
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn genkey(out: &Path, keys: KeyType) {
    let mut args = vec!["--generate-privkey"];
    args.extend_from_slice(keys.args());
    args.extend(["--outfile", path(out)]);
    certtool(&args);
    set_mode(out, 0o600);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn certtool(args: &[&str]) {
    let out = Command::new("certtool")
        .args(args)
        .output()
        .expect("run certtool");
    assert!(
        out.status.success(),
        "certtool {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP port free on 127.0.0.1 right now (the OS picks it; the daemon binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}
