//! Reading the daemon config: [`Config`], [`load`] and [`parse_str`].
//!
//! This module owns turning a file into a [`Config`]: TOML parsing with one-line errors
//! that name the file, line, column and key; making relative paths relative to the config
//! file's directory; and the file-level warning about a world-readable file holding
//! `vnc_password`. It does not judge values (that is `validate`, which the daemon calls with
//! its own `Supported`) and never requires `state_dir` or `unix_sock_dir` to exist.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::daemon::DaemonConfig;
use crate::diag::{ConfigError, ConfigErrors, Diagnostic};
use crate::located::{self, Located};
use crate::qemu::QemuConfig;
use crate::storage::StorageConfig;
use crate::vnc::VncConfig;

/// The whole daemon config file (`/etc/vmgate/vmgated.toml`). Every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[daemon]`: sockets, listeners, authentication, TLS and limits (libvirtd.conf).
    pub daemon: DaemonConfig,
    /// `[storage]`: the database.
    pub storage: StorageConfig,
    /// `[vnc]`: the per-guest console gateways (qemu.conf's VNC keys).
    pub vnc: VncConfig,
    /// `[qemu]`: how the qemu driver runs guests (qemu.conf).
    pub qemu: QemuConfig,
}

/// A parsed config and the warnings found while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The config, relative paths already resolved.
    pub config: Config,
    /// File-level warnings (e.g. a readable file holding a password).
    pub warnings: Vec<Diagnostic>,
}

/// Reads and parses the config file at `path`. Run `validate` on the result.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let mut loaded = parse_str(&text, path)?;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if loaded.config.vnc.vnc_password.is_some() && mode & 0o004 != 0 {
            loaded.warnings.push(Diagnostic::new(
                "vnc.vnc_password",
                format!(
                    "{} holds a VNC password and every local user can read it (mode {mode:04o}); \
                     run chmod o-r {}",
                    path.display(),
                    path.display()
                ),
            ));
        }
    }
    Ok(loaded)
}

/// Parses config text as if read from `source`, whose directory anchors relative paths.
pub fn parse_str(text: &str, source: &Path) -> Result<Loaded, ConfigErrors> {
    let mut config: Config = located::parse(text).map_err(|errors| ConfigErrors {
        errors: errors.into_iter().map(|e| parse_error(source, e)).collect(),
    })?;
    let base = base_dir(source);
    resolve_paths(&mut config, &base).map_err(|message| {
        ConfigErrors::from(ConfigError::Parse {
            path: source.to_path_buf(),
            position: located::key_position(text, "storage.database_url"),
            key: Some("storage.database_url".to_string()),
            message,
        })
    })?;
    Ok(Loaded {
        config,
        warnings: Vec::new(),
    })
}

fn parse_error(source: &Path, located: Located) -> ConfigError {
    ConfigError::Parse {
        path: source.to_path_buf(),
        position: located.position,
        key: located.key,
        message: located.message,
    }
}

/// The directory relative paths are taken from, made absolute (without touching the
/// filesystem) because the daemon may change its working directory later.
pub(crate) fn base_dir(source: &Path) -> PathBuf {
    let dir = match source.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() && !path.as_os_str().is_empty() {
        *path = base.join(&*path);
    }
}

fn resolve_paths(config: &mut Config, base: &Path) -> Result<(), String> {
    let d = &mut config.daemon;
    for path in [
        &mut d.state_dir,
        &mut d.unix_sock_dir,
        &mut d.key_file,
        &mut d.cert_file,
        &mut d.ca_file,
        &mut config.vnc.vnc_tls_x509_cert_dir,
    ] {
        resolve(base, path);
    }
    for path in [
        &mut d.crl_file,
        &mut d.sasl_keytab,
        &mut config.vnc.vnc_sasl_keytab,
        &mut config.qemu.log_dir,
    ]
    .into_iter()
    .flatten()
    {
        resolve(base, path);
    }
    if let Some(url) = &mut config.storage.database_url
        && let Some(resolved) = resolve_sqlite_url(base, url)?
    {
        *url = resolved;
    }
    Ok(())
}

/// `sqlite://relative.db` (or `sqlite:relative.db`) becomes `sqlite://<base>/relative.db`.
fn resolve_sqlite_url(base: &Path, url: &str) -> Result<Option<String>, String> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with(":memory:") {
        return Ok(None);
    }
    let Some(base) = base.to_str() else {
        return Err(format!(
            "the relative SQLite path in \"{url}\" cannot be resolved because the config \
             directory {} is not valid UTF-8; write an absolute path",
            base.display()
        ));
    };
    Ok(Some(format!(
        "sqlite://{}/{rest}",
        base.trim_end_matches('/')
    )))
}

#[cfg(test)]
mod tests;
