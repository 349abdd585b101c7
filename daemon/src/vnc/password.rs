//! A console's VNC password as the gateway holds it: the secret, when it stops working,
//! and a generation number that each password session remembers, so a change can cut
//! exactly the sessions that logged in with an older password.

use time::OffsetDateTime;
use vmgate_config::Secret;

/// The password in force for one console.
#[derive(Clone, Debug, Default)]
pub struct PasswordState {
    pub password: Option<Secret>,
    pub valid_to: Option<OffsetDateTime>,
    pub generation: u64,
}

/// Why a password login cannot succeed whatever the client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    Expired,
}

impl PasswordState {
    /// The password to check a response against, unless it has expired.
    pub fn usable(&self, now: OffsetDateTime) -> Result<Option<&Secret>, Unusable> {
        match (&self.password, self.valid_to) {
            (Some(_), Some(to)) if now >= to => Err(Unusable::Expired),
            (password, _) => Ok(password.as_ref()),
        }
    }

    pub fn is_set(&self) -> bool {
        self.password.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_past_its_validity_is_unusable() {
        let now = OffsetDateTime::now_utc();
        let state = PasswordState {
            password: Some(Secret::new("pw")),
            valid_to: Some(now - time::Duration::seconds(1)),
            generation: 1,
        };
        assert_eq!(state.usable(now).err(), Some(Unusable::Expired));
        let state = PasswordState {
            valid_to: Some(now + time::Duration::hours(1)),
            ..state
        };
        assert!(state.usable(now).is_ok_and(|p| p.is_some()));
    }
}
