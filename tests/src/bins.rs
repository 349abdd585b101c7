//! Finds the `vmgated` and `vmgate` binaries of this build (the target directory this test
//! or benchmark binary runs from) and rebuilds them first when any workspace source is
//! newer, so tests never run against a stale daemon. `CARGO_BIN_EXE_*` exists only inside a
//! binary's own package, hence this.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::SystemTime,
};

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/<profile>`: test binaries live in `target/<profile>/deps/`, the benchmark
/// binaries (`vmgate-bench`, same workspace, same target directory) in `target/<profile>/`
/// itself.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("the executable's directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn vmgated() -> PathBuf {
    fresh("vmgated")
}

pub fn vmgate() -> PathBuf {
    fresh("vmgate")
}

fn fresh(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(ensure_built);
    profile_dir().join(name)
}

fn ensure_built() {
    let dir = profile_dir();
    let oldest_binary = ["vmgated", "vmgate"]
        .iter()
        .map(|b| modified(&dir.join(b)))
        .min()
        .flatten();
    let root = workspace_root();
    let newest_source = ["daemon", "client", "config", "proto", "rfb", "Cargo.lock"]
        .iter()
        .filter_map(|d| newest(&root.join(d)))
        .max();
    let stale = match (oldest_binary, newest_source) {
        (Some(bin), Some(src)) => src > bin,
        _ => true,
    };
    if !stale {
        return;
    }
    let profile = dir.file_name().and_then(|p| p.to_str()).unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "vmgated", "-p", "vmgate", "--bins"]);
    // The binaries must have the features this test build has, or a rebuild would
    // silently drop Kerberos from under the tests that need it.
    if cfg!(feature = "gssapi") {
        cmd.args(["--features", "vmgated/gssapi,vmgate/gssapi"]);
    }
    if profile != "debug" {
        cmd.args([
            "--profile",
            if profile == "release" {
                "release"
            } else {
                profile
            },
        ]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building vmgated and vmgate failed");
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

/// The newest modification time of any file under `path`, skipping `target`.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = path.symlink_metadata().ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "target")
        .filter_map(|e| newest(&e.path()))
        .max()
}
