//! `undefine DOMAIN`: removes a definition. The domain is looked up first so the message can
//! use its name even when a UUID was given, and the UUID found is what gets undefined.

use vmgate::ClientError;

use super::domain_ref;
use crate::session::Session;

pub async fn run(session: &mut Session, key: &str) -> Result<String, ClientError> {
    let conn = session.conn().await?;
    let domain = conn.domain.lookup(domain_ref(key)).await?.into_inner();
    let target = if domain.uuid.is_empty() {
        key
    } else {
        &domain.uuid
    };
    conn.domain.undefine(domain_ref(target)).await?;
    Ok(format!("Domain '{}' has been undefined\n", domain.name))
}
