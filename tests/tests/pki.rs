//! `vmgate pki` end to end: the real binary makes a CA, server and client certificates and a
//! CRL, and other implementations judge them: GnuTLS `certtool` (verification, the SANs, key
//! purposes, the CRL; the subject as `query-dn` prints it, for certtool's own certificates
//! too), `openssl crl`, and rustls, which the daemon and the client use (an in-memory mutual
//! TLS handshake, refused with "revoked" once the client certificate is in the CRL). Every run
//! points `-c` at a daemon that does not exist: `pki` must never connect.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use vmgate_tests::{CliOutput, require_tool, run_vmgate};

/// A URI whose daemon does not exist.
const NO_DAEMON: &str = "test+unix:///default?socket=/nonexistent/vmgate-sock";
const CLIENT_DN: &str = "C=GB,ST=London,L=London,O=Example";

/// Runs `vmgate -c NO_DAEMON pki ARGS...`.
fn pki(args: &[&str]) -> CliOutput {
    let mut full = vec!["-c", NO_DAEMON, "pki"];
    full.extend_from_slice(args);
    run_vmgate(&full, None)
}

fn text(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A PKI made by `vmgate pki`: `ca/`, `srv/` (+ `vnc/`) for localhost, 127.0.0.1 and ::1, and
/// two clients `cli/` (client1, with a DN) and `cli2/` (client2).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki_dir = tempfile::tempdir().expect("tempdir");
        let p = Pki { dir: pki_dir };
        let (ca, srv, vnc) = (p.path("ca"), p.path("srv"), p.path("vnc"));
        pki(&["init-ca", "--dir", text(&ca), "--cn", "Test CA"]).ok();
        pki(&[
            "server-cert",
            "--ca-dir",
            text(&ca),
            "--host",
            "localhost",
            "--host",
            "127.0.0.1",
            "--host",
            "::1",
            "--out-dir",
            text(&srv),
            "--vnc-dir",
            text(&vnc),
        ])
        .ok();
        for (cn, out, dn) in [
            ("client1", "cli", Some(CLIENT_DN)),
            ("client2", "cli2", None),
        ] {
            let out = p.path(out);
            let mut args = vec![
                "client-cert",
                "--ca-dir",
                text(&ca),
                "--cn",
                cn,
                "--out-dir",
                text(&out),
            ];
            if let Some(dn) = dn {
                args.extend(["--dn", dn]);
            }
            pki(&args).ok();
        }
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn revoke(&self, cert: &str) -> String {
        let out = pki(&[
            "revoke",
            "--ca-dir",
            text(&self.path("ca")),
            text(&self.path(cert)),
            "--vnc-dir",
            text(&self.path("vnc")),
        ]);
        out.ok().to_owned()
    }
}

/// Runs certtool; returns whether it succeeded and its stdout and stderr together.
fn certtool(args: &[&str]) -> (bool, String) {
    tool("certtool", args)
}

/// A key and a self-signed certificate made by certtool from `template`.
fn certtool_self_signed(key: &Path, cert: &Path, template: &str) {
    let info = cert.with_extension("info");
    fs::write(&info, template).expect("template");
    let (ok, out) = certtool(&["--generate-privkey", "--outfile", text(key)]);
    assert!(ok, "{out}");
    let (ok, out) = certtool(&[
        "--generate-self-signed",
        "--load-privkey",
        text(key),
        "--template",
        text(&info),
        "--outfile",
        text(cert),
    ]);
    assert!(ok, "{out}");
}

fn tool(name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(name).args(args).output().expect("run tool");
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), all)
}

fn info(cert: &Path) -> String {
    let (ok, out) = certtool(&["-i", "--infile", text(cert)]);
    assert!(ok, "certtool -i {}: {out}", cert.display());
    out
}

/// certtool's serial of a certificate, without the sign byte.
fn serial(cert: &Path) -> String {
    let out = info(cert);
    let hex = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial Number (hex): "))
        .expect("a serial line")
        .to_owned();
    hex.trim_start_matches("00").to_owned()
}

/// Whether certtool's CRL listing names `serial` (both without the sign-padding `00`).
fn crl_lists(out: &str, serial: &str) -> bool {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number (hex): "))
        .any(|s| s.trim_start_matches("00") == serial)
}

/// certtool's subject line, which GnuTLS prints in RFC 4514 order (last RDN first),
/// reordered into certificate order as `query-dn` prints it.
fn certtool_subject_in_certificate_order(cert: &Path) -> String {
    let out = info(cert);
    let subject = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Subject: "))
        .expect("a subject line");
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in subject.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts.reverse();
    parts.join(",")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn certtool_verifies_and_reads_what_pki_makes() {
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    let p = Pki::new();
    let ca = p.path("ca/cacert.pem");
    for cert in [
        "srv/servercert.pem",
        "cli/clientcert.pem",
        "vnc/server-cert.pem",
    ] {
        let (ok, out) = certtool(&[
            "--verify",
            "--load-ca-certificate",
            text(&ca),
            "--infile",
            text(&p.path(cert)),
        ]);
        assert!(ok && out.contains("Verified"), "{cert}: {out}");
    }

    let ca_info = info(&ca);
    for needle in [
        "Certificate Authority (CA): TRUE",
        "Certificate signing",
        "CRL signing",
        "Subject: CN=Test CA",
    ] {
        assert!(ca_info.contains(needle), "CA lacks {needle:?}: {ca_info}");
    }
    let server = info(&p.path("srv/servercert.pem"));
    for needle in [
        "DNSname: localhost",
        "IPAddress: 127.0.0.1",
        "IPAddress: ::1",
        "TLS WWW Server",
        "Digital signature",
        "Key encipherment",
        "Subject: CN=localhost",
        "Certificate Authority (CA): FALSE",
    ] {
        assert!(server.contains(needle), "server lacks {needle:?}: {server}");
    }
    assert!(!server.contains("TLS WWW Client"), "{server}");
    let client = info(&p.path("cli/clientcert.pem"));
    for needle in ["TLS WWW Client", "DNSname: client1"] {
        assert!(client.contains(needle), "client lacks {needle:?}: {client}");
    }
    assert!(!client.contains("TLS WWW Server"), "{client}");
    assert_ne!(
        serial(&p.path("cli/clientcert.pem")),
        serial(&p.path("cli2/clientcert.pem"))
    );

    // The layouts: libvirt's, QEMU's and ?pkipath='s, keys private.
    let same = |a: &str, b: &str| {
        assert_eq!(
            fs::read(p.path(a)).expect(a),
            fs::read(p.path(b)).expect(b),
            "{a} != {b}"
        );
    };
    same("vnc/ca-cert.pem", "ca/cacert.pem");
    same("cli/cacert.pem", "ca/cacert.pem");
    same("vnc/server-cert.pem", "srv/servercert.pem");
    same("vnc/server-key.pem", "srv/private/serverkey.pem");
    for key in [
        "ca/cakey.pem",
        "srv/private/serverkey.pem",
        "vnc/server-key.pem",
        "cli/clientkey.pem",
    ] {
        assert_eq!(mode(&p.path(key)), 0o600, "{key}");
    }
    for dir in ["ca", "srv", "srv/private", "vnc", "cli"] {
        assert_eq!(mode(&p.path(dir)), 0o700, "{dir}");
    }
}

#[test]
fn revoke_makes_a_crl_that_certtool_and_openssl_read() {
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    let p = Pki::new();
    let (ca, crl) = (p.path("ca/cacert.pem"), p.path("ca/cacrl.pem"));
    let (s1, s2) = (
        serial(&p.path("cli/clientcert.pem")),
        serial(&p.path("cli2/clientcert.pem")),
    );
    let out = p.revoke("cli/clientcert.pem");
    assert!(out.contains(&s1) && out.contains("(revoked)"), "{out}");
    let (ok, out) = certtool(&[
        "--verify-crl",
        "--load-ca-certificate",
        text(&ca),
        "--infile",
        text(&crl),
    ]);
    assert!(ok && out.contains("Verified"), "{out}");
    assert!(crl_lists(&out, &s1), "{out}");

    // A second revocation keeps the first, under the next CRL number.
    p.revoke("cli2/clientcert.pem");
    let (ok, out) = certtool(&["--crl-info", "--infile", text(&crl)]);
    assert!(ok, "{out}");
    assert!(out.contains("Revoked certificates (2)"), "{out}");
    assert!(out.contains(&s1) && out.contains(&s2), "{out}");
    assert!(out.contains("CRL Number (not critical): 02"), "{out}");
    assert_eq!(
        fs::read(&crl).expect("crl"),
        fs::read(p.path("vnc/ca-crl.pem")).expect("vnc crl")
    );

    // GnuTLS itself refuses the revoked certificate with this CRL, and not the server's.
    let verify = |cert: &str| {
        certtool(&[
            "--verify",
            "--load-ca-certificate",
            text(&ca),
            "--load-crl",
            text(&crl),
            "--infile",
            text(&p.path(cert)),
        ])
    };
    let (ok, out) = verify("cli/clientcert.pem");
    assert!(!ok && out.contains("revoked"), "{out}");
    let (ok, out) = verify("srv/servercert.pem");
    assert!(ok, "{out}");

    if require_tool("openssl", "openssl") {
        let (ok, out) = tool("openssl", &["crl", "-in", text(&crl), "-noout", "-text"]);
        assert!(ok, "{out}");
        for s in [&s1, &s2] {
            let line = format!("Serial Number: {}", s.to_uppercase());
            assert!(out.contains(&line), "{line} not in {out}");
        }
        let (ok, out) = tool(
            "openssl",
            &["crl", "-in", text(&crl), "-noout", "-CAfile", text(&ca)],
        );
        assert!(ok, "openssl crl -CAfile: {out}");
    }
}

#[test]
fn query_dn_prints_the_subject_in_certificate_order() {
    if !require_tool("certtool", "gnutls-bin") {
        return;
    }
    let p = Pki::new();
    let mine = p.path("cli/clientcert.pem");
    let dn = pki(&["query-dn", text(&mine)]).ok().to_owned();
    assert_eq!(dn, format!("{CLIENT_DN},CN=client1\n"));
    assert_eq!(dn.trim_end(), certtool_subject_in_certificate_order(&mine));

    // A certificate certtool made, with a comma inside a value.
    let d = p.path("gnutls");
    fs::create_dir(&d).expect("mkdir");
    let cert = d.join("cert.pem");
    certtool_self_signed(
        &d.join("key.pem"),
        &cert,
        "country = GB\nstate = London\nlocality = London\norganization = \"Example, Inc\"\n\
         unit = Ops\ncn = alice\ntls_www_client\nsigning_key\nexpiration_days = 30\n",
    );
    let dn = pki(&["query-dn", text(&cert)]).ok().trim_end().to_owned();
    assert_eq!(dn, certtool_subject_in_certificate_order(&cert));
    assert_eq!(
        dn,
        r"C=GB,ST=London,L=London,O=Example\, Inc,OU=Ops,CN=alice"
    );
}

#[test]
fn a_certtool_ca_signs_once_its_key_is_pkcs8() {
    if !require_tool("certtool", "gnutls-bin") || !require_tool("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    fs::create_dir(&ca).expect("mkdir");
    let key = ca.join("cakey.pem");
    certtool_self_signed(
        &key,
        &ca.join("cacert.pem"),
        "cn = GnuTLS CA\nca\ncert_signing_key\ncrl_signing_key\n",
    );
    let out_dir = dir.path().join("cli");
    let args = [
        "client-cert",
        "--ca-dir",
        text(&ca),
        "--cn",
        "bob",
        "--out-dir",
        text(&out_dir),
    ];
    // certtool writes a SEC1 key, which ring cannot sign with: the error says how to convert.
    let err = pki(&args).err().to_owned();
    assert!(
        err.contains("cakey.pem") && err.contains("openssl pkcs8"),
        "{err}"
    );
    let p8 = dir.path().join("p8.pem");
    let (ok, out) = tool(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            text(&key),
            "-out",
            text(&p8),
        ],
    );
    assert!(ok, "{out}");
    fs::rename(&p8, &key).expect("rename");
    pki(&args).ok();
    let (ok, out) = certtool(&[
        "--verify",
        "--load-ca-certificate",
        text(&ca.join("cacert.pem")),
        "--infile",
        text(&out_dir.join("clientcert.pem")),
    ]);
    assert!(ok && out.contains("Verified"), "{out}");
    // Revoking against a certtool CA: the CRL names the CA's own key identifier.
    pki(&[
        "revoke",
        "--ca-dir",
        text(&ca),
        text(&out_dir.join("clientcert.pem")),
    ])
    .ok();
    let (ok, out) = certtool(&[
        "--verify-crl",
        "--load-ca-certificate",
        text(&ca.join("cacert.pem")),
        "--infile",
        text(&ca.join("cacrl.pem")),
    ]);
    assert!(ok && out.contains("Verified"), "{out}");
}

#[test]
fn errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let err = pki(&[
        "client-cert",
        "--ca-dir",
        text(&ca),
        "--cn",
        "x",
        "--out-dir",
        text(&dir.path().join("out")),
    ])
    .err()
    .to_owned();
    assert_eq!(
        err,
        format!(
            "error: {0}/cacert.pem not found; create a CA with vmgate pki init-ca --dir {0}\n",
            ca.display()
        )
    );

    pki(&["init-ca", "--dir", text(&ca)]).ok();
    let err = pki(&["init-ca", "--dir", text(&ca)]).err().to_owned();
    assert!(
        err.contains(&format!(
            "{}/cacert.pem already exists; pass --force",
            ca.display()
        )),
        "{err}"
    );
    pki(&["init-ca", "--dir", text(&ca), "--force"]).ok();

    let other = dir.path().join("other");
    pki(&["init-ca", "--dir", text(&other)]).ok();
    let cli = dir.path().join("cli");
    pki(&[
        "client-cert",
        "--ca-dir",
        text(&other),
        "--cn",
        "x",
        "--out-dir",
        text(&cli),
    ])
    .ok();
    let err = pki(&[
        "revoke",
        "--ca-dir",
        text(&ca),
        text(&cli.join("clientcert.pem")),
    ])
    .err()
    .to_owned();
    assert!(err.contains("was not issued by the CA"), "{err}");

    let err = pki(&["query-dn", text(&cli.join("clientkey.pem"))])
        .err()
        .to_owned();
    assert!(err.contains("is not an X.509 certificate"), "{err}");
    let err = pki(&[
        "server-cert",
        "--ca-dir",
        text(&ca),
        "--host",
        "bad_name",
        "--out-dir",
        text(&dir.path().join("srv")),
    ])
    .err()
    .to_owned();
    assert!(err.contains("--host \"bad_name\""), "{err}");
}

/// Files for one side of a handshake.
struct Side<'a> {
    cert: &'a Path,
    key: &'a Path,
}

/// A mutual-TLS handshake in memory with rustls on both ends, the server requiring a client
/// certificate from `ca` (checked against `crl` when given), then one round trip. Returns
/// the server's and the client's outcome.
async fn handshake(
    ca: &Path,
    crl: Option<&Path>,
    server: Side<'_>,
    client: Side<'_>,
    name: &str,
) -> (Result<(), String>, Result<(), String>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("CA PEM"))
        .expect("CA accepted");
    let roots = Arc::new(roots);
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    if let Some(crl) = crl {
        verifier =
            verifier.with_crls([CertificateRevocationListDer::from_pem_file(crl).expect("CRL")]);
    }
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier.build().expect("verifier"))
        .with_single_cert(
            vec![CertificateDer::from_pem_file(server.cert).expect("server cert")],
            PrivateKeyDer::from_pem_file(server.key).expect("server key"),
        )
        .expect("server config");
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(client.cert).expect("client cert")],
            PrivateKeyDer::from_pem_file(client.key).expect("client key"),
        )
        .expect("client config");
    let name = ServerName::try_from(name.to_owned()).expect("server name");

    let (c, s) = tokio::io::duplex(1 << 16);
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())
    });
    let connector = TlsConnector::from(Arc::new(client_config));
    let client_result = async {
        let mut tls = connector
            .connect(name, c)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    let client_result = tokio::time::timeout(Duration::from_secs(10), client_result)
        .await
        .unwrap_or_else(|_| Err("client timed out".to_owned()));
    let server_result = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .map_err(|_| "server timed out".to_owned())
        .and_then(|joined| joined.map_err(|e| e.to_string()))
        .and_then(|r| r);
    (server_result, client_result)
}

#[tokio::test]
async fn rustls_accepts_the_certificates_and_refuses_a_revoked_one() {
    let p = Pki::new();
    let ca = p.path("ca/cacert.pem");
    let (srv_cert, srv_key) = (
        p.path("srv/servercert.pem"),
        p.path("srv/private/serverkey.pem"),
    );
    let server = || Side {
        cert: &srv_cert,
        key: &srv_key,
    };
    let (c1_cert, c1_key) = (p.path("cli/clientcert.pem"), p.path("cli/clientkey.pem"));
    let (c2_cert, c2_key) = (p.path("cli2/clientcert.pem"), p.path("cli2/clientkey.pem"));
    let client1 = || Side {
        cert: &c1_cert,
        key: &c1_key,
    };
    let client2 = || Side {
        cert: &c2_cert,
        key: &c2_key,
    };

    for name in ["localhost", "127.0.0.1", "::1"] {
        let (s, c) = handshake(&ca, None, server(), client1(), name).await;
        assert_eq!((s, c), (Ok(()), Ok(())), "connecting to {name}");
    }
    // QEMU's copy is the same pair.
    let (vnc_cert, vnc_key) = (p.path("vnc/server-cert.pem"), p.path("vnc/server-key.pem"));
    let vnc = Side {
        cert: &vnc_cert,
        key: &vnc_key,
    };
    let (s, c) = handshake(&ca, None, vnc, client2(), "localhost").await;
    assert_eq!((s, c), (Ok(()), Ok(())));

    // A name the certificate does not carry is refused by the client.
    let (_, c) = handshake(&ca, None, server(), client1(), "elsewhere.example").await;
    let err = c.expect_err("wrong name");
    assert!(err.contains("not valid for name"), "{err}");

    // After revoke, the server refuses client1 with "revoked" and still admits client2.
    p.revoke("cli/clientcert.pem");
    let crl = p.path("ca/cacrl.pem");
    let (s, c) = handshake(&ca, Some(&crl), server(), client1(), "localhost").await;
    let err = s.expect_err("revoked client admitted");
    assert!(err.to_lowercase().contains("revoked"), "{err}");
    assert!(c.is_err(), "the client must see the refusal");
    let (s, c) = handshake(&ca, Some(&crl), server(), client2(), "localhost").await;
    assert_eq!((s, c), (Ok(()), Ok(())));
    // QEMU's copy of the CRL works the same.
    let vnc_crl = p.path("vnc/ca-crl.pem");
    let (s, _) = handshake(&ca, Some(&vnc_crl), server(), client1(), "localhost").await;
    assert!(s.is_err());
}
