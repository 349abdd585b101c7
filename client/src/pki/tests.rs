//! Unit tests of `vmgate pki`: what lands on disk (modes, refusals), what the certificates
//! contain (serials, DN order, names, usages) and what the CRL keeps. The end-to-end checks
//! against certtool, OpenSSL and rustls are in `tests/tests/pki.rs`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::ca::{self, read_cert_der};
use super::crl::{increment, trim_zeros};
use super::names::{Host, parse_dn};
use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn make_ca(dir: &Path) {
    init_ca(&InitCa {
        dir,
        cn: "Test CA",
        force: false,
    })
    .expect("init-ca");
}

fn make_client(ca_dir: &Path, out: &Path, cn: &str, dn: Option<&str>) -> PathBuf {
    client_cert(&ClientCert {
        ca_dir,
        cn,
        dn,
        out_dir: out,
        force: false,
    })
    .expect("client-cert");
    out.join("clientcert.pem")
}

fn with_cert<T>(path: &Path, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = read_cert_der(path).expect("read cert");
    let (_, cert) = X509Certificate::from_der(&der).expect("parse cert");
    f(&cert)
}

fn crl_serials(path: &Path) -> (Vec<Vec<u8>>, Vec<u8>) {
    let text = fs::read(path).expect("read crl");
    let pem = x509_parser::pem::Pem::iter_from_buffer(&text)
        .next()
        .expect("a PEM block")
        .expect("valid PEM");
    let (_, crl) = CertificateRevocationList::from_der(&pem.contents).expect("parse crl");
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| trim_zeros(r.raw_serial()).to_vec())
        .collect();
    let number = crl.crl_number().expect("crl number").to_bytes_be();
    (serials, number)
}

fn serial_of(path: &Path) -> Vec<u8> {
    with_cert(path, |c| trim_zeros(c.raw_serial()).to_vec())
}

#[test]
fn serials_are_unique_and_positive() {
    let many: HashSet<[u8; 16]> = (0..1000).map(|_| ca::new_serial()).collect();
    assert_eq!(many.len(), 1000);

    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let mut seen = HashSet::new();
    for i in 0..8 {
        let cert = make_client(&ca_dir, &dir.path().join(format!("c{i}")), "c", None);
        with_cert(&cert, |c| {
            let raw = c.raw_serial();
            // A DER INTEGER is negative when its first byte has the top bit set.
            assert!(raw[0] & 0x80 == 0, "negative serial {raw:02x?}");
            assert!(raw.len() <= 20, "serial longer than RFC 5280 allows");
            assert!(seen.insert(trim_zeros(raw).to_vec()), "serial reused");
        });
    }
}

#[test]
fn keys_are_0600_in_directories_created_0700() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("nested/ca");
    make_ca(&ca_dir);
    assert_eq!(mode(&ca_dir.join("cakey.pem")), 0o600);
    assert_eq!(mode(&ca_dir.join("cacert.pem")), 0o644);
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(mode(&dir.path().join("nested")), 0o700);

    let out = dir.path().join("srv");
    let vnc = dir.path().join("vnc");
    server_cert(&ServerCert {
        ca_dir: &ca_dir,
        hosts: &["host.example.org".to_owned()],
        out_dir: &out,
        vnc_dir: Some(&vnc),
        force: false,
    })
    .expect("server-cert");
    assert_eq!(mode(&out.join("private")), 0o700);
    assert_eq!(mode(&out.join("private/serverkey.pem")), 0o600);
    assert_eq!(mode(&vnc.join("server-key.pem")), 0o600);
    assert_eq!(mode(&vnc.join("server-cert.pem")), 0o644);
    assert_eq!(
        fs::read(vnc.join("ca-cert.pem")).expect("vnc ca"),
        fs::read(ca_dir.join("cacert.pem")).expect("ca")
    );
}

#[test]
fn nothing_is_overwritten_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let before = fs::read(ca_dir.join("cacert.pem")).expect("read");
    let err = init_ca(&InitCa {
        dir: &ca_dir,
        cn: "Other",
        force: false,
    })
    .expect_err("must refuse");
    let text = err.to_string();
    assert!(
        text.contains("cacert.pem") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(fs::read(ca_dir.join("cacert.pem")).expect("read"), before);

    // A client certificate refused part-way leaves no new file behind.
    let out = dir.path().join("cli");
    fs::create_dir(&out).expect("mkdir");
    fs::write(out.join("clientkey.pem"), "old").expect("write");
    let err = client_cert(&ClientCert {
        ca_dir: &ca_dir,
        cn: "c",
        dn: None,
        out_dir: &out,
        force: false,
    })
    .expect_err("must refuse");
    assert!(err.to_string().contains("clientkey.pem"), "{err}");
    assert!(!out.join("clientcert.pem").exists());
    assert!(!out.join("cacert.pem").exists());

    // --force replaces, and a replaced key gets 0600 whatever the old file's mode was.
    fs::set_permissions(ca_dir.join("cakey.pem"), fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let report = init_ca(&InitCa {
        dir: &ca_dir,
        cn: "Other",
        force: true,
    })
    .expect("forced");
    assert!(report.files.iter().all(|w| w.outcome == Outcome::Replaced));
    assert_eq!(mode(&ca_dir.join("cakey.pem")), 0o600);
    assert_ne!(fs::read(ca_dir.join("cacert.pem")).expect("read"), before);
}

#[test]
fn an_identical_ca_copy_is_not_an_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let out = dir.path().join("cli");
    make_client(&ca_dir, &out, "a", None);
    fs::remove_file(out.join("clientcert.pem")).expect("rm");
    fs::remove_file(out.join("clientkey.pem")).expect("rm");
    let report = client_cert(&ClientCert {
        ca_dir: &ca_dir,
        cn: "a",
        dn: None,
        out_dir: &out,
        force: false,
    })
    .expect("the CA copy is the same");
    assert_eq!(report.files[0].outcome, Outcome::Unchanged);
}

#[test]
fn the_dn_keeps_the_given_order_with_the_cn_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let cert = make_client(
        &ca_dir,
        &dir.path().join("a"),
        "client1",
        Some("C=GB,ST=London,L=London,O=Example"),
    );
    assert_eq!(
        query_dn(&cert).expect("dn"),
        "C=GB,ST=London,L=London,O=Example,CN=client1"
    );
    let cert = make_client(
        &ca_dir,
        &dir.path().join("b"),
        "Jane Doe",
        Some(r"o=Example\, Inc, ou=Ops ,c=gb"),
    );
    assert_eq!(
        query_dn(&cert).expect("dn"),
        r"O=Example\, Inc,OU=Ops,C=GB,CN=Jane Doe"
    );
}

#[test]
fn bad_dns_are_refused_with_the_reason() {
    for (dn, why) in [
        ("CN=x", "--cn"),
        ("C=GB,C=FR", "twice"),
        ("EMAIL=a@b", "unknown attribute"),
        ("C=GBR", "two-letter"),
        ("O=", "empty"),
        ("O=x,", "TYPE=VALUE"),
        (r"O=x\", "lone"),
    ] {
        let err = parse_dn(dn).expect_err(dn).to_string();
        assert!(err.contains(why), "{dn}: {err}");
        assert!(err.contains("C=GB,ST=London"), "{dn}: no example in {err}");
    }
}

#[test]
fn hosts_are_dns_names_or_ip_addresses() {
    assert_eq!(
        Host::parse("Host.Example.org").expect("dns"),
        Host::Dns("host.example.org".to_owned())
    );
    assert!(matches!(Host::parse("192.0.2.1"), Ok(Host::Ip(_))));
    assert!(matches!(Host::parse("[::1]"), Ok(Host::Ip(_))));
    assert!(matches!(Host::parse("*.example.org"), Ok(Host::Dns(_))));
    for bad in ["", "a..b", "-a.b", "a_b.example", "host.", "a b"] {
        let err = Host::parse(bad).expect_err(bad).to_string();
        assert!(err.contains("--host"), "{err}");
    }
}

#[test]
fn server_certificates_carry_every_host_and_server_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let out = dir.path().join("srv");
    let hosts = ["h1.example.org", "192.0.2.7", "h1.example.org", "::1"].map(str::to_owned);
    server_cert(&ServerCert {
        ca_dir: &ca_dir,
        hosts: &hosts,
        out_dir: &out,
        vnc_dir: None,
        force: false,
    })
    .expect("server-cert");
    let path = out.join("servercert.pem");
    assert_eq!(query_dn(&path).expect("dn"), "CN=h1.example.org");
    with_cert(&path, |c| {
        let san = c.subject_alternative_name().expect("san").expect("has san");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::IPAddress(ip) => format!("IP:{}", ip.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["DNS:h1.example.org", "IP:4", "IP:16"]);
        let eku = c.extended_key_usage().expect("eku").expect("has eku");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        let ku = c.key_usage().expect("ku").expect("has ku");
        assert!(ku.value.digital_signature() && ku.value.key_encipherment());
        assert!(!c.is_ca());
        assert!(c.iter_extensions().any(|e| matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
    });
}

#[test]
fn client_certificates_name_the_cn_only_when_it_is_a_host_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let host_like = make_client(&ca_dir, &dir.path().join("a"), "client1", None);
    with_cert(&host_like, |c| {
        let san = c.subject_alternative_name().expect("san").expect("has san");
        assert!(matches!(
            san.value.general_names.as_slice(),
            [GeneralName::DNSName("client1")]
        ));
        let eku = c.extended_key_usage().expect("eku").expect("has eku");
        assert!(eku.value.client_auth && !eku.value.server_auth);
    });
    let person = make_client(&ca_dir, &dir.path().join("b"), "Jane Doe", None);
    with_cert(&person, |c| {
        assert!(c.subject_alternative_name().expect("san").is_none());
    });
}

#[test]
fn the_crl_keeps_earlier_revocations_and_counts_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    make_ca(&ca_dir);
    let a = make_client(&ca_dir, &dir.path().join("a"), "a", None);
    let b = make_client(&ca_dir, &dir.path().join("b"), "b", None);
    let crl = ca_dir.join("cacrl.pem");
    let vnc = dir.path().join("vnc");
    let rev = |cert: &Path| {
        revoke(&Revoke {
            ca_dir: &ca_dir,
            cert,
            vnc_dir: Some(&vnc),
        })
        .expect("revoke")
    };
    rev(&a);
    assert_eq!(crl_serials(&crl), (vec![serial_of(&a)], vec![1]));
    rev(&b);
    assert_eq!(
        crl_serials(&crl),
        (vec![serial_of(&a), serial_of(&b)], vec![2])
    );
    let again = rev(&a).to_string();
    assert!(again.contains("already revoked"), "{again}");
    assert_eq!(
        crl_serials(&crl),
        (vec![serial_of(&a), serial_of(&b)], vec![3])
    );
    assert_eq!(
        fs::read(&crl).expect("crl"),
        fs::read(vnc.join("ca-crl.pem")).expect("vnc crl")
    );
}

#[test]
fn revoke_refuses_certificates_of_another_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    make_ca(&ours);
    // Same name, different key: only the signature tells them apart.
    make_ca(&theirs);
    let cert = make_client(&theirs, &dir.path().join("c"), "c", None);
    let err = revoke(&Revoke {
        ca_dir: &ours,
        cert: &cert,
        vnc_dir: None,
    })
    .expect_err("not ours");
    assert!(matches!(err, PkiError::NotIssuedByCa { .. }), "{err}");
    assert!(!ours.join("cacrl.pem").exists());

    let err = revoke(&Revoke {
        ca_dir: &ours,
        cert: &ours.join("cacert.pem"),
        vnc_dir: None,
    })
    .expect_err("the CA itself");
    assert!(err.to_string().contains("CA certificate itself"), "{err}");
}

#[test]
fn a_missing_ca_says_how_to_make_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("none");
    let err = client_cert(&ClientCert {
        ca_dir: &ca_dir,
        cn: "c",
        dn: None,
        out_dir: &dir.path().join("out"),
        force: false,
    })
    .expect_err("no CA")
    .to_string();
    let expected = format!(
        "{}/cacert.pem not found; create a CA with vmgate pki init-ca --dir {}",
        ca_dir.display(),
        ca_dir.display()
    );
    assert_eq!(err, expected);
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_key_that_does_not_match_the_ca_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    make_ca(&a);
    make_ca(&b);
    fs::copy(b.join("cakey.pem"), a.join("cakey.pem")).expect("copy");
    let err = ca::Ca::load(&a).expect_err("mismatch").to_string();
    assert!(err.contains("cakey.pem is not the key of"), "{err}");
}

#[test]
fn crl_numbers_count_in_big_endian() {
    assert_eq!(increment(vec![0]), [1]);
    assert_eq!(increment(vec![0x01, 0xff]), [0x02, 0x00]);
    assert_eq!(increment(vec![0xff, 0xff]), [0x01, 0x00, 0x00]);
    assert_eq!(hex(&[0, 0, 0xab, 0x01]), "ab01");
}
