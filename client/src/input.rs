//! Files the user hands the CLI (a definition for `define`), read with the daemon's own size
//! limit: a file over it is refused from its size before it is read, and a pipe is read only
//! up to the limit plus one byte, so `vmgate define /dev/zero` cannot fill memory. Only
//! regular files and anonymous pipes (`/dev/stdin`, a shell's `<(...)`) are read: opening a
//! named FIFO would wait for a writer forever, and a device is not a definition. An anonymous
//! pipe is the operator's own on purpose and is read until it ends, as before.

use std::{
    fs::{self, File},
    io::{self, Read},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::OFlag;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {err}", path = .path.display())]
    Read { path: PathBuf, err: io::Error },
    #[error(
        "{path} is {size} bytes, over the {} limit for {what}; nothing was sent",
        human(*.limit),
        path = .path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: usize,
        what: &'static str,
    },
    #[error(
        "{path} holds more than the {} limit for {what}; nothing was sent",
        human(*.limit),
        path = .path.display()
    )]
    PipeTooLarge {
        path: PathBuf,
        limit: usize,
        what: &'static str,
    },
    #[error(
        "{path} is a {kind}, not a regular file; give the path of a file holding {what}, \
         or /dev/stdin with {what} piped or redirected into vmgate",
        path = .path.display()
    )]
    NotAFile {
        path: PathBuf,
        kind: &'static str,
        what: &'static str,
    },
    #[error("{path} is not UTF-8 text; {what} is TOML, which is UTF-8", path = .path.display())]
    NotUtf8 { path: PathBuf, what: &'static str },
}

/// `limit` bytes as a person reads it: `1 MiB (1048576 bytes)`.
fn human(limit: usize) -> String {
    const MIB: usize = 1 << 20;
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB ({limit} bytes)", limit / MIB)
    } else {
        format!("{limit} bytes")
    }
}

/// Reads the text file `path`, at most `limit` bytes of `what` ("a domain definition").
/// Blocking: call it off the async threads.
pub fn read_text(path: &Path, limit: usize, what: &'static str) -> Result<String, InputError> {
    let read_err = |err| InputError::Read {
        path: path.to_path_buf(),
        err,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(read_err(io::Error::from(io::ErrorKind::IsADirectory)));
    }
    let not_a_file = |kind| InputError::NotAFile {
        path: path.to_path_buf(),
        kind,
        what,
    };
    let file = if kind.is_file() {
        check_size(path, meta.len(), limit, what)?;
        // Not blocking: should the path become a FIFO after the check, opening it must not
        // wait for a writer (the type is checked again on the open file).
        let file = File::options()
            .read(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(path)
            .map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.file_type().is_file() {
            return Err(not_a_file("file that changed type while it was opened"));
        }
        check_size(path, meta.len(), limit, what)?;
        file
    } else if kind.is_fifo() {
        if !is_anonymous_pipe(path) {
            return Err(not_a_file("named FIFO"));
        }
        // A pipe's open never waits (only a named FIFO's does).
        File::open(path).map_err(read_err)?
    } else if kind.is_char_device() {
        return Err(not_a_file("character device"));
    } else if kind.is_block_device() {
        return Err(not_a_file("block device"));
    } else if kind.is_socket() {
        return Err(not_a_file("socket"));
    } else {
        return Err(not_a_file("special file"));
    };
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > limit {
        return Err(if kind.is_file() {
            // The file grew after its size was checked.
            InputError::TooLarge {
                path: path.to_path_buf(),
                size: bytes.len() as u64,
                limit,
                what,
            }
        } else {
            InputError::PipeTooLarge {
                path: path.to_path_buf(),
                limit,
                what,
            }
        });
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotUtf8 {
        path: path.to_path_buf(),
        what,
    })
}

fn check_size(path: &Path, size: u64, limit: usize, what: &'static str) -> Result<(), InputError> {
    if size > limit as u64 {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
            what,
        });
    }
    Ok(())
}

/// Whether `path` leads, through symbolic links such as `/dev/stdin` -> `/proc/self/fd/0`,
/// to a pipe rather than to a FIFO in a filesystem: the kernel shows a pipe as the link
/// target `pipe:[INODE]`.
fn is_anonymous_pipe(path: &Path) -> bool {
    let mut current = path.to_path_buf();
    // Linux follows at most 40 links.
    for _ in 0..40 {
        let Ok(target) = fs::read_link(&current) else {
            return false;
        };
        if target.to_string_lossy().starts_with("pipe:[") {
            return true;
        }
        current = match current.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHAT: &str = "a domain definition";

    #[test]
    fn regular_files_up_to_the_limit_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.toml");
        fs::write(&path, "name = \"a\"\n").expect("write");
        assert_eq!(read_text(&path, 11, WHAT).expect("read"), "name = \"a\"\n");
        let err = read_text(&path, 10, WHAT).expect_err("over");
        assert!(
            matches!(err, InputError::TooLarge { size: 11, .. }),
            "{err}"
        );
        assert!(
            err.to_string().ends_with(
                "is 11 bytes, over the 10 bytes limit for a domain definition; nothing was sent"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_limit_reads_in_mib() {
        assert_eq!(human(1 << 20), "1 MiB (1048576 bytes)");
        assert_eq!(human(1024), "1024 bytes");
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        for (path, kind) in [
            (fifo.as_path(), "is a named FIFO"),
            (Path::new("/dev/zero"), "is a character device"),
        ] {
            let err = read_text(path, 1 << 20, WHAT).expect_err("refused");
            assert!(err.to_string().contains(kind), "{err}");
            assert!(err.to_string().contains("or /dev/stdin with"), "{err}");
        }
        let err = read_text(dir.path(), 1 << 20, WHAT).expect_err("directory");
        assert!(matches!(err, InputError::Read { .. }), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = read_text(&missing, 1 << 20, WHAT).expect_err("missing");
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn not_utf8_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bin.toml");
        fs::write(&path, b"\xff\xfe").expect("write");
        let err = read_text(&path, 10, WHAT).expect_err("binary");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
