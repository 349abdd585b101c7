//! `vncdisplay DOMAIN`: the VNC display as virsh prints it (`127.0.0.1:0`), or the socket path
//! of a UNIX-socket console.

use vmgate::ClientError;
use vmgate::console::display::{console_of, vnc_display};

use super::{domain_ref, summary};
use crate::session::Session;

pub async fn run(session: &mut Session, key: &str) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let info = conn.domain.info(domain_ref(key)).await?.into_inner();
    let display = console_of(&info)?;
    Ok(vnc_display(&summary(&info)?.name, display)?)
}
