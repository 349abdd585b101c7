//! `version`: the client's and the daemon's versions, the driver, and the hypervisor's version
//! as the daemon reported them in the connection handshake (no further call is made).

use vmgate::ClientError;

use crate::session::Session;

pub async fn run(session: &mut Session) -> Result<String, ClientError> {
    let daemon = &session.conn().await?.daemon;
    // virsh writes "QEMU 7.2.0"; the daemon sends the bare version.
    let hypervisor = match (daemon.driver.as_str(), daemon.hypervisor_version.as_str()) {
        ("qemu", v) if v.starts_with(|c: char| c.is_ascii_digit()) => format!("QEMU {v}"),
        ("test", v) if v.starts_with(|c: char| c.is_ascii_digit()) => format!("test {v}"),
        (_, v) => v.to_owned(),
    };
    Ok(format!(
        "Client: vmgate {}\nDaemon: vmgated {}\nDriver: {}\nHypervisor: {hypervisor}\n",
        env!("CARGO_PKG_VERSION"),
        daemon.daemon_version,
        daemon.driver,
    ))
}
