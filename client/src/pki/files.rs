//! Writing what `pki` makes. All the files of one command are checked before any is written,
//! so a refusal leaves nothing half done. Modes are given when a file is created (keys 0600,
//! certificates 0644, directories 0700), never set afterwards, so a key is never readable by
//! others even for a moment. A new file is created exclusively (a file appearing meanwhile is
//! not clobbered); a replaced one (`--force`, or a CRL, which every revocation updates) is
//! written beside it and renamed over it, so a daemon reloading it reads the old or the new
//! file, never half of one, and the new file has the new mode whatever the old one had.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::PkiError;

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and CRLs (they are public).
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of the directories `pki` creates.
pub const DIR_MODE: u32 = 0o700;

/// One file to write.
#[derive(Debug)]
pub struct Output {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl Output {
    pub fn key(path: PathBuf, pem: String) -> Output {
        Output {
            path,
            contents: pem.into_bytes(),
            mode: KEY_MODE,
        }
    }

    pub fn public(path: PathBuf, pem: String) -> Output {
        Output {
            path,
            contents: pem.into_bytes(),
            mode: PUBLIC_MODE,
        }
    }
}

/// What became of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Replaced,
    /// The file already held exactly these bytes (a CA certificate copied again).
    Unchanged,
}

/// A file `pki` wrote or left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub outcome: Outcome,
    pub mode: u32,
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.outcome {
            Outcome::Created => "Wrote",
            Outcome::Replaced => "Replaced",
            Outcome::Unchanged => "Unchanged",
        };
        write!(f, "{verb} {}", self.path.display())?;
        if self.mode == KEY_MODE && self.outcome != Outcome::Unchanged {
            write!(f, " (private key, mode 0600)")?;
        }
        Ok(())
    }
}

/// Writes `outputs`, refusing to replace any existing file whose contents differ unless
/// `replace` is set. Nothing is written when any file is refused.
pub fn write_all(outputs: Vec<Output>, replace: bool) -> Result<Vec<Written>, PkiError> {
    let mut plan = Vec::with_capacity(outputs.len());
    for out in outputs {
        let outcome = match fs::read(&out.path) {
            Ok(old) if old == out.contents => Outcome::Unchanged,
            Ok(_) if replace => Outcome::Replaced,
            Ok(_) => return Err(PkiError::Exists(out.path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Created,
            Err(err) => {
                return Err(PkiError::Read {
                    path: out.path,
                    err,
                });
            }
        };
        plan.push((out, outcome));
    }
    let mut written = Vec::with_capacity(plan.len());
    for (out, outcome) in plan {
        if outcome != Outcome::Unchanged {
            if let Some(dir) = out.path.parent() {
                ensure_dir(dir)?;
            }
            match outcome {
                Outcome::Created => create_new(&out.path, &out.contents, out.mode)?,
                _ => replace_file(&out.path, &out.contents, out.mode)?,
            }
        }
        written.push(Written {
            path: out.path,
            outcome,
            mode: out.mode,
        });
    }
    Ok(written)
}

/// Creates `dir` and its missing parents with mode 0700; an existing directory is left as it is.
pub fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|err| PkiError::CreateDir {
            path: dir.to_owned(),
            err,
        })
}

fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(PkiError::Exists(path.to_owned()));
        }
        Err(err) => {
            return Err(PkiError::Write {
                path: path.to_owned(),
                err,
            });
        }
    };
    if let Err(err) = file.write_all(contents).and_then(|()| file.sync_all()) {
        // A half-written key or certificate is worse than none.
        let _ = fs::remove_file(path);
        return Err(PkiError::Write {
            path: path.to_owned(),
            err,
        });
    }
    Ok(())
}

fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover from a killed run of this same pid would make create_new fail.
    let _ = fs::remove_file(&tmp);
    create_new(&tmp, contents, mode).map_err(|e| match e {
        PkiError::Write { err, .. } => PkiError::Write {
            path: path.to_owned(),
            err,
        },
        other => other,
    })?;
    fs::rename(&tmp, path).map_err(|err| {
        let _ = fs::remove_file(&tmp);
        PkiError::Write {
            path: path.to_owned(),
            err,
        }
    })
}
