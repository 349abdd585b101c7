//! [`DefinitionError`]: what is wrong with a domain definition, one problem per line.
//!
//! Owns the formats users see from `vmgate define` and from the daemon's INVALID_ARGUMENT
//! answers: `source:line:column: message` for syntax and type errors, and
//! `source:line:column: field: message` for rule violations (the position when the field
//! appears in the text).

use std::fmt;
use std::path::PathBuf;

/// A TOML syntax error, unknown key, or value of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key it is about (`graphics.port`), when known.
    pub key: Option<String>,
    /// One line that names the key.
    pub message: String,
}

/// A value that breaks one of the definition rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted field name (`name`, `graphics.port`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Where the field is in the text, when the definition came from text.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a domain definition (or a path derived from it) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionError {
    /// The text is not TOML, or does not fit the schema.
    Parse {
        /// Where the text came from (a file name, or e.g. `<request>`).
        origin: String,
        /// Every problem found, in text order.
        problems: Vec<ParseProblem>,
    },
    /// The definition parsed but breaks rules; every broken rule is listed.
    Invalid {
        /// Where the text came from, when it came from text.
        origin: Option<String>,
        /// One entry per broken rule.
        errors: Vec<FieldError>,
    },
    /// A UNIX socket path is longer than `sun_path` can hold.
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
}

impl DefinitionError {
    /// The rule violations, if this is [`DefinitionError::Invalid`].
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            DefinitionError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

fn write_line(
    f: &mut fmt::Formatter<'_>,
    first: bool,
    origin: Option<&str>,
    position: Option<(usize, usize)>,
    text: &dyn fmt::Display,
) -> fmt::Result {
    if !first {
        writeln!(f)?;
    }
    match (origin.filter(|o| !o.is_empty()), position) {
        (Some(o), Some((line, column))) => write!(f, "{o}:{line}:{column}: {text}"),
        (Some(o), None) => write!(f, "{o}: {text}"),
        (None, _) => write!(f, "{text}"),
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefinitionError::Parse { origin, problems } => {
                for (i, p) in problems.iter().enumerate() {
                    write_line(f, i == 0, Some(origin), p.position, &p.message)?;
                }
                Ok(())
            }
            DefinitionError::Invalid { origin, errors } => {
                for (i, e) in errors.iter().enumerate() {
                    write_line(f, i == 0, origin.as_deref(), e.position, e)?;
                }
                Ok(())
            }
            DefinitionError::SocketPathTooLong { path, len } => write!(
                f,
                "UNIX socket path {} is {len} bytes long, over the limit of {} bytes ({} with \
                 the terminating NUL); use a shorter unix_sock_dir or guest name",
                path.display(),
                super::MAX_SOCKET_PATH,
                super::MAX_SOCKET_PATH + 1
            ),
        }
    }
}

impl std::error::Error for DefinitionError {}
