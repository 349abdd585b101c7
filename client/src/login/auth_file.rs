//! The credentials file the client logs in with when there is no terminal to prompt on:
//! `VMGATE_AUTH_FILE`, default `$XDG_CONFIG_HOME/vmgate/auth.toml` (or
//! `~/.config/vmgate/auth.toml`), holding `[[credentials]]` tables with `host`,
//! `username` and `password`. It holds passwords, so it is refused when its group or
//! others can read it.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// A user name and password.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The host as the connection URI names it (`localhost` for a UNIX socket); `*` globs.
    host: String,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    credentials: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error(
        "refusing to use {path}: it holds passwords but its group or others can read it \
         (mode {mode:04o}); run chmod 600 {path}"
    )]
    Insecure { path: String, mode: u32 },
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: {err}")]
    Parse { path: String, err: String },
    #[error("VMGATE_AUTH_FILE names {0}, which does not exist")]
    Missing(String),
}

/// The auth file's path.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("VMGATE_AUTH_FILE") {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    config.join("vmgate").join("auth.toml")
}

/// The credentials for `host` (and `user`, when the URI names one), if the file has them.
/// A missing default file is no error; a missing `VMGATE_AUTH_FILE` is.
pub fn lookup(
    path: &Path,
    host: &str,
    user: Option<&str>,
) -> Result<Option<Credentials>, AuthFileError> {
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var_os("VMGATE_AUTH_FILE").is_some() {
                return Err(AuthFileError::Missing(shown));
            }
            return Ok(None);
        }
        Err(err) => return Err(AuthFileError::Read { path: shown, err }),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AuthFileError::Insecure { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(|err| AuthFileError::Read {
        path: shown.clone(),
        err,
    })?;
    let file: AuthFile = toml::from_str(&text).map_err(|e| AuthFileError::Parse {
        path: shown,
        err: e.to_string(),
    })?;
    Ok(file
        .credentials
        .into_iter()
        .find(|e| {
            vmgate_config::x509::glob_match(&e.host, host) && user.is_none_or(|u| u == e.username)
        })
        .map(|e| Credentials {
            username: e.username,
            password: e.password,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, mode: u32, text: &str) -> PathBuf {
        let path = dir.join("auth.toml");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    const FILE: &str = "[[credentials]]\nhost = \"h1\"\nusername = \"alice\"\npassword = \"a\"\n\
                        [[credentials]]\nhost = \"*\"\nusername = \"bob\"\npassword = \"b\"\n";

    #[test]
    fn credentials_are_found_by_host_and_user() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write(dir.path(), 0o600, FILE);
        let found = |host, user| {
            lookup(&path, host, user)
                .expect("lookup")
                .map(|c| c.username)
        };
        assert_eq!(found("h1", None).as_deref(), Some("alice"));
        assert_eq!(found("h1", Some("bob")).as_deref(), Some("bob"));
        assert_eq!(found("other", None).as_deref(), Some("bob"));
        assert_eq!(found("h1", Some("carol")), None);
    }

    #[test]
    fn a_file_others_can_read_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write(dir.path(), 0o640, FILE);
        let err = lookup(&path, "h1", None).expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let path = write(dir.path(), 0o600, "[[credentials]]\nhost = \"h\"\n");
        assert!(matches!(
            lookup(&path, "h", None),
            Err(AuthFileError::Parse { .. })
        ));
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let c = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
