//! File checks for features that are turned on: the file exists, is a regular file, is
//! readable by the user running the check, and, for private keys, is not readable by other
//! users (error) or by its group (warning); for other secrets (Kerberos keytabs), any access
//! by group or others is a warning.
//!
//! Owns only reading metadata and opening files; it never changes them.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::diag::Report;

/// Reports whether `path` can be read; `fix` says how else to resolve it.
/// Returns true when the file is readable.
pub(super) fn check_readable(report: &mut Report, key: &str, path: &Path, fix: &str) -> bool {
    let shown = path.display();
    let problem = match fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => format!("{shown} does not exist"),
        Err(e) => format!("{shown} cannot be examined ({e})"),
        Ok(meta) if meta.is_dir() => format!("{shown} is a directory, not a file"),
        // opening a FIFO would block the check, and a socket or device is no config file
        Ok(meta) if !meta.is_file() => format!("{shown} is not a regular file"),
        Ok(_) => match File::open(path) {
            Ok(_) => return true,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                format!("{shown} is not readable by the user running this check")
            }
            Err(e) => format!("{shown} cannot be read ({e})"),
        },
    };
    report.error(key, format!("{problem}; {fix}"));
    false
}

/// Like [`check_readable`], and then the private-key rules on its permission bits.
pub(super) fn check_private_key(report: &mut Report, key: &str, path: &Path, fix: &str) {
    if !check_readable(report, key, path, fix) {
        return;
    }
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    let shown = path.display();
    if mode & 0o004 != 0 {
        report.error(
            key,
            format!(
                "private key {shown} is readable by every user (mode {mode:04o}); \
                 run chmod 0600 {shown}"
            ),
        );
    } else if mode & 0o040 != 0 {
        report.warn(
            key,
            format!(
                "private key {shown} is readable by its group (mode {mode:04o}); \
                 run chmod 0600 {shown} unless that group is meant to read it"
            ),
        );
    }
}

/// Like [`check_readable`], and then a warning when its group or others have any access: for
/// secrets the daemon's user alone should hold, such as a keytab.
pub(super) fn check_secret_file(report: &mut Report, key: &str, path: &Path, fix: &str) {
    if !check_readable(report, key, path, fix) {
        return;
    }
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let shown = path.display();
        report.warn(
            key,
            format!(
                "{shown} is readable by group or others (mode {mode:04o}), and whoever reads \
                 it can pose as the service; chmod 600 it"
            ),
        );
    }
}
