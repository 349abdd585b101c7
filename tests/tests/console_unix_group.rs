//! UNIX-socket consoles (`vnc_auto_unix_socket`) reach the members of `unix_sock_group` and
//! nobody else: a client running as another user connects through the real filesystem
//! permissions (socat, run with that user's uid and gid), as the config documentation
//! promises.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::{Command, Stdio},
};

use vmgate_tests::{TestDaemon, require_tool, skip};

/// Debian's `users` group (gid 100), present on every install.
const GROUP: &str = "users";
const GROUP_ID: u32 = 100;
/// `nobody` and `nogroup`: a user outside the group.
const NOBODY: u32 = 65534;

/// What a client running as `uid`:`gid` reads from `socket` within two idle seconds: the
/// console's RFB greeting, or socat's error.
fn greeting_as(socket: &std::path::Path, uid: u32, gid: u32) -> (String, String) {
    use std::os::unix::process::CommandExt;
    let out = Command::new("socat")
        .args(["-T", "2", "-u"])
        .arg(format!("UNIX-CONNECT:{}", socket.display()))
        .arg("STDOUT")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .expect("run socat");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_socket_group_reaches_console_sockets_and_others_do_not() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root, to run a client as another user");
        return;
    }
    if !require_tool("socat", "socat") {
        return;
    }
    let d = TestDaemon::start_with(&format!(
        "unix_sock_group = \"{GROUP}\"\n[vnc]\nvnc_auto_unix_socket = true\n"
    ));
    // The test's own directory: other users may pass through it, as through /run.
    fs::set_permissions(d.dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = d.file("g.toml", "name = \"g\"\n[graphics]\ntype = \"vnc\"\n");
    d.vmgate(&["define", path.to_str().expect("path")]).ok();
    d.vmgate(&["start", "g"]).ok();
    let dir = d.sock_dir().join("vnc");
    let socket = dir.join("g.sock");

    let meta = fs::metadata(&dir).expect("socket directory");
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o710, GROUP_ID),
        "the directory lets the group through"
    );
    let meta = fs::metadata(&socket).expect("socket");
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, GROUP_ID));

    let (stdout, stderr) = greeting_as(&socket, NOBODY, GROUP_ID);
    assert_eq!(
        stdout, "RFB 003.008\n",
        "a group member is served: {stderr}"
    );
    let (stdout, stderr) = greeting_as(&socket, NOBODY, NOBODY);
    assert!(
        stdout.is_empty() && stderr.contains("Permission denied"),
        "others are not: {stdout:?} {stderr}"
    );
}
