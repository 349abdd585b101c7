//! Host setup at start: the daemon's directories, its umask, its open-file limit, and how
//! soon its allocator hands freed memory back. Every error names the path and what to do
//! about it.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
#[error("Cannot create {what} {path}: {source}; create it by hand or point {key} elsewhere")]
pub struct DirError {
    what: &'static str,
    key: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Creates `path` (and parents) with `mode` if it is missing. An existing directory keeps
/// its mode: the operator may have chosen it.
pub fn ensure_dir(
    path: &Path,
    mode: u32,
    what: &'static str,
    key: &'static str,
) -> Result<(), DirError> {
    let err = |source| DirError {
        what,
        key,
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(err)?;
    // The umask may have narrowed it; make it exactly what was asked.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)
}

/// Files the daemon creates are private unless it says otherwise (sockets get their
/// configured modes explicitly).
pub fn set_private_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Raises the soft open-file limit to the hard limit: every console session and API
/// client holds descriptors.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!("cannot raise the open-file limit from {soft}: {e}"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the open-file limit: {e}"),
    }
}

/// mimalloc's `mi_option_purge_delay`: the 16th `mi_option_e` in mimalloc 3's mimalloc.h
/// (the `libmimalloc-sys` crate has no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS as soon as a whole page of it is free. mimalloc
/// purges after a delay, but only when the thread that freed allocates again, so after a
/// burst of console sessions the idle worker threads kept every page they had (200 MB for
/// 5,000 sessions, still held once all had closed). An operator's `MIMALLOC_PURGE_DELAY`
/// wins.
pub fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: mi_option_set stores a value in mimalloc's table of options; it may be
    // called at any time, from any thread, and `MI_OPTION_PURGE_DELAY` is a valid option.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        #[allow(unsafe_code)]
        // SAFETY: reading an option is valid at any time.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // Defaults: 10 ms in mimalloc 2, 1000 ms in mimalloc 3; no neighbour has either.
            let default = get();
            assert!(
                matches!(default, 10 | 1000),
                "not the purge delay: {default}"
            );
        }
        return_freed_memory_promptly();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 0);
        }
    }

    #[test]
    fn creates_missing_directories_with_the_mode_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b");
        ensure_dir(&path, 0o700, "state directory", "state_dir").expect("create");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn impossible_directory_names_itself_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        fs::write(&file, b"x").expect("write");
        let err = ensure_dir(
            &file.join("sub"),
            0o755,
            "socket directory",
            "unix_sock_dir",
        )
        .expect_err("a file is in the way");
        let msg = err.to_string();
        assert!(
            msg.contains("socket directory") && msg.contains("unix_sock_dir"),
            "{msg}"
        );
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }
}
