//! What loading and validating a config reports: [`ConfigError`]s (the file cannot be read
//! or parsed), and [`Diagnostic`]s (errors and warnings about one key, from `validate`).
//!
//! Owns the formats operators see: `file:line:column: message` for parse errors and
//! `[section] key: message` for diagnostics. Every message is one self-contained line, so
//! the daemon can print a list of them as is; that is why [`ConfigError::Read`] shows its
//! I/O error inline instead of as a `source`.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error or warning about one config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted key, `section.key` (e.g. `vnc.vnc_password`).
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about `key` (`section.key`).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key.split_once('.') {
            Some((section, key)) => write!(f, "[{section}] {key}: {}", self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// The result of `validate`: errors stop the daemon (exit 1), warnings are printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems the daemon must not start with.
    pub errors: Vec<Diagnostic>,
    /// Problems worth telling the operator about.
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    /// True when there are no errors (warnings are allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(key, message));
    }

    pub(crate) fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(key, message));
    }
}

/// Why a config file could not be turned into a [`crate::Config`].
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong type.
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line and column, when known.
        position: Option<(usize, usize)>,
        /// Dotted key the error is about (`daemon.tls_port`), when known.
        key: Option<String>,
        /// One line, naming the key.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(
                    f,
                    "{}: cannot read the config file: {error}",
                    path.display()
                )
            }
            ConfigError::Parse {
                path,
                position: Some((line, column)),
                message,
                ..
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
            ConfigError::Parse {
                path,
                position: None,
                message,
                ..
            } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in a config file, one per line when displayed.
#[derive(Debug)]
pub struct ConfigErrors {
    /// The errors, in file order.
    pub errors: Vec<ConfigError>,
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
