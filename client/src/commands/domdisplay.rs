//! `domdisplay DOMAIN`: the console as a URI (`vnc://127.0.0.1:0`, `vnc+unix:///PATH`), the
//! same text `dominfo` shows after `Graphics:`.

use vmgate::ClientError;
use vmgate::console::display::{console_of, dom_display};

use super::domain_ref;
use crate::session::Session;

pub async fn run(session: &mut Session, key: &str) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let info = conn.domain.info(domain_ref(key)).await?.into_inner();
    Ok(dom_display(console_of(&info)?))
}
