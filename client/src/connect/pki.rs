//! Where the client's TLS files are, as libvirt looks them up (DESIGN.md "Names"): with
//! `?pkipath=DIR`, exactly `DIR/cacert.pem`, `DIR/clientcert.pem`, `DIR/clientkey.pem` and
//! `DIR/cacrl.pem` when present; otherwise each file per user under `~/.pki/vmgate/`, falling
//! back one by one to the system's `/etc/pki/CA/cacert.pem`, `/etc/pki/vmgate/clientcert.pem`,
//! `/etc/pki/vmgate/private/clientkey.pem` and `/etc/pki/CA/cacrl.pem`.
//!
//! This module only finds the files and says, when one is missing, where it looked and how
//! to make it; reading them is `tls`'s job.

use std::path::{Path, PathBuf};

/// The per-user directory under `$HOME`.
pub const USER_PKI_DIR: &str = ".pki/vmgate";
/// The system's CA certificate.
pub const SYSTEM_CA: &str = "/etc/pki/CA/cacert.pem";
/// The system's CA revocation list.
pub const SYSTEM_CRL: &str = "/etc/pki/CA/cacrl.pem";
/// The system's client certificate.
pub const SYSTEM_CERT: &str = "/etc/pki/vmgate/clientcert.pem";
/// The system's client key.
pub const SYSTEM_KEY: &str = "/etc/pki/vmgate/private/clientkey.pem";

/// The files a TLS connection uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPki {
    /// The CA the server's certificate must chain to.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A CRL to check the server's certificate against, when one is there.
    pub crl: Option<PathBuf>,
}

/// A file the client needs and could not find: `client certificate /p/clientcert.pem not
/// found; create one with ...`, or with the fallbacks `client certificate not found at
/// /home/u/.pki/vmgate/clientcert.pem or /etc/pki/vmgate/clientcert.pem; ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct MissingFile {
    /// What the file is: "client certificate".
    pub what: &'static str,
    /// Every place looked, in order.
    pub looked: Vec<PathBuf>,
    /// How to make it.
    pub fix: String,
}

impl MissingFile {
    fn message(&self) -> String {
        let names: Vec<String> = self
            .looked
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        match names.as_slice() {
            [one] => format!("{} {one} not found; {}", self.what, self.fix),
            _ => format!(
                "{} not found at {}; {}",
                self.what,
                names.join(" or "),
                self.fix
            ),
        }
    }
}

/// The kinds of file, with the per-user name, the system path and the fix.
#[derive(Clone, Copy)]
enum Kind {
    Ca,
    Cert,
    Key,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Ca => "CA certificate",
            Kind::Cert => "client certificate",
            Kind::Key => "client key",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Kind::Ca => "cacert.pem",
            Kind::Cert => "clientcert.pem",
            Kind::Key => "clientkey.pem",
        }
    }

    fn system(self) -> &'static str {
        match self {
            Kind::Ca => SYSTEM_CA,
            Kind::Cert => SYSTEM_CERT,
            Kind::Key => SYSTEM_KEY,
        }
    }

    fn fix(self, pkipath: Option<&Path>, first: &Path) -> String {
        let dir = match pkipath {
            Some(d) => d.display().to_string(),
            None => format!("~/{USER_PKI_DIR}"),
        };
        let other = match pkipath {
            Some(_) => "pass another ?pkipath=DIR",
            None => "pass ?pkipath=DIR",
        };
        match self {
            Kind::Ca => format!(
                "copy the CA's certificate to {}, or {other}",
                first.display()
            ),
            Kind::Cert | Kind::Key => format!(
                "create one with vmgate pki client-cert --ca-dir CADIR --cn NAME --out-dir {dir}, \
                 or {other}"
            ),
        }
    }
}

/// Finds the files for a connection; `home` is `$HOME` (None: no per-user directory).
pub fn locate(pkipath: Option<&Path>, home: Option<&Path>) -> Result<ClientPki, MissingFile> {
    locate_with(pkipath, home, Path::new("/"))
}

/// [`locate`] with the system paths under `root` (tests use a temporary directory).
pub fn locate_with(
    pkipath: Option<&Path>,
    home: Option<&Path>,
    root: &Path,
) -> Result<ClientPki, MissingFile> {
    let system = |p: &str| root.join(p.trim_start_matches('/'));
    let candidates = |kind: Kind| -> Vec<PathBuf> {
        match pkipath {
            Some(dir) => vec![dir.join(kind.file_name())],
            None => home
                .map(|h| h.join(USER_PKI_DIR).join(kind.file_name()))
                .into_iter()
                .chain([system(kind.system())])
                .collect(),
        }
    };
    let find = |kind: Kind| -> Result<PathBuf, MissingFile> {
        let looked = candidates(kind);
        match looked.iter().find(|p| p.is_file()) {
            Some(found) => Ok(found.clone()),
            None => Err(MissingFile {
                what: kind.what(),
                fix: kind.fix(
                    pkipath,
                    looked.first().map_or(Path::new(""), PathBuf::as_path),
                ),
                looked,
            }),
        }
    };
    let crl_candidates = match pkipath {
        Some(dir) => vec![dir.join("cacrl.pem")],
        None => home
            .map(|h| h.join(USER_PKI_DIR).join("cacrl.pem"))
            .into_iter()
            .chain([system(SYSTEM_CRL)])
            .collect(),
    };
    Ok(ClientPki {
        ca: find(Kind::Ca)?,
        cert: find(Kind::Cert)?,
        key: find(Kind::Key)?,
        crl: crl_candidates.into_iter().find(|p| p.is_file()),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, "x").expect("write");
    }

    #[test]
    fn pkipath_uses_exactly_that_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        for f in ["cacert.pem", "clientcert.pem", "clientkey.pem"] {
            touch(&pki.join(f));
        }
        let found = locate_with(Some(&pki), None, dir.path()).expect("found");
        assert_eq!(found.cert, pki.join("clientcert.pem"));
        assert_eq!(found.crl, None);
        touch(&pki.join("cacrl.pem"));
        let found = locate_with(Some(&pki), None, dir.path()).expect("found");
        assert_eq!(found.crl, Some(pki.join("cacrl.pem")));

        fs::remove_file(pki.join("clientcert.pem")).expect("rm");
        // The system file is not a fallback under pkipath.
        touch(&dir.path().join("etc/pki/vmgate/clientcert.pem"));
        let err = locate_with(Some(&pki), None, dir.path()).expect_err("missing");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "client certificate {} not found; create one with vmgate pki client-cert",
                pki.join("clientcert.pem").display()
            )),
            "{text}"
        );
        assert!(text.contains("pass another ?pkipath="), "{text}");
    }

    #[test]
    fn each_file_falls_back_to_the_system_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let home = root.join("home");
        touch(&home.join(".pki/vmgate/clientcert.pem"));
        touch(&home.join(".pki/vmgate/clientkey.pem"));
        touch(&root.join("etc/pki/CA/cacert.pem"));
        touch(&root.join("etc/pki/vmgate/clientcert.pem"));
        touch(&root.join("etc/pki/CA/cacrl.pem"));
        let found = locate_with(None, Some(&home), root).expect("found");
        assert_eq!(found.ca, root.join("etc/pki/CA/cacert.pem"));
        assert_eq!(found.cert, home.join(".pki/vmgate/clientcert.pem"));
        assert_eq!(found.key, home.join(".pki/vmgate/clientkey.pem"));
        assert_eq!(found.crl, Some(root.join("etc/pki/CA/cacrl.pem")));

        fs::remove_file(home.join(".pki/vmgate/clientkey.pem")).expect("rm");
        let err = locate_with(None, Some(&home), root).expect_err("no key");
        assert_eq!(err.what, "client key");
        assert_eq!(
            err.looked,
            [
                home.join(".pki/vmgate/clientkey.pem"),
                root.join("etc/pki/vmgate/private/clientkey.pem")
            ]
        );
        assert!(err.to_string().contains("pass ?pkipath=DIR"), "{err}");
    }
}
