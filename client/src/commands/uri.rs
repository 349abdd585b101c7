//! `uri`: the connection URI in canonical form. It needs no daemon: the URI is what the client
//! connects with.

use crate::session::Session;

pub fn run(session: &Session) -> String {
    format!("{}\n", session.uri())
}
