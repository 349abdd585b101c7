//! The SASL user database as logins see it: an in-memory copy of the stored SCRAM
//! records (the daemon is the only writer, so the copy is kept in step on every change),
//! SCRAM-SHA-256 record making, and PLAIN checks against the same record. Lookups are
//! synchronous because rsasl's callbacks are.
//!
//! Unknown users must not be told apart from wrong passwords, in answers or in timing:
//! a PLAIN check for an unknown user runs the same PBKDF2 against a decoy record, and for
//! SCRAM rsasl fakes the salt when no record is given.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
};

use rand::RngCore;
use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
use sha2_10::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::UserRecord;

/// PBKDF2 iterations for new records: above SCRAM's minimum of 4096, cheap enough that a
/// login (client and server both run it for PLAIN) stays in milliseconds.
pub const SCRAM_ITERATIONS: u32 = 10_000;
/// Salt length for new records.
const SALT_LEN: usize = 16;
/// The longest user name accepted.
pub const MAX_USER_NAME_LEN: usize = 64;

/// Checks a user name: 1..=64 characters from letters, digits and `._@-`, not starting
/// with `-`. SCRAM escapes `,` and `=`, and ACL globs use `*` and `?`: none are allowed,
/// so the name a client sends is the name the ACL sees.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(format!(
            "user name {name:?} must be 1 to {MAX_USER_NAME_LEN} characters long"
        ));
    }
    if name.starts_with('-') {
        return Err(format!("user name {name:?} must not start with '-'"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._@-".contains(*c)))
    {
        return Err(format!(
            "user name {name:?} contains {bad:?}; use letters, digits and . _ @ - only"
        ));
    }
    Ok(())
}

/// Makes a SCRAM-SHA-256 record for `password` with a fresh salt.
pub fn make_record(name: &str, password: &[u8]) -> UserRecord {
    let mut salt = vec![0; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let (stored_key, server_key) = keys(password, SCRAM_ITERATIONS, &salt);
    UserRecord {
        name: name.to_owned(),
        iterations: SCRAM_ITERATIONS,
        salt,
        stored_key,
        server_key,
    }
}

/// StoredKey and ServerKey (RFC 5802) for a password.
fn keys(password: &[u8], iterations: u32, salt: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut salted = Default::default();
    hash_password::<Sha256>(password, iterations, salt, &mut salted);
    let (client_key, server_key) = derive_keys::<Sha256>(&salted[..]);
    (Sha256::digest(client_key).to_vec(), server_key[..].to_vec())
}

/// Whether `password` is the one `record` was made from, in constant time.
fn password_matches(record: &UserRecord, password: &[u8]) -> bool {
    let (stored_key, _) = keys(password, record.iterations, &record.salt);
    stored_key.ct_eq(&record.stored_key).into()
}

/// A record no password opens, checked instead of a missing user's.
fn decoy() -> &'static UserRecord {
    static DECOY: OnceLock<UserRecord> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut secret = [0; 32];
        rand::rng().fill_bytes(&mut secret);
        make_record("", &secret)
    })
}

/// The users logins are checked against.
#[derive(Default)]
pub struct UserDb {
    users: RwLock<HashMap<String, Arc<UserRecord>>>,
}

impl UserDb {
    pub fn new(records: Vec<UserRecord>) -> UserDb {
        let users = records
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        UserDb {
            users: RwLock::new(users),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<UserRecord>> {
        self.read().get(name).cloned()
    }

    /// Adds or replaces a record (after the store took it).
    pub fn put(&self, record: UserRecord) {
        self.write().insert(record.name.clone(), Arc::new(record));
    }

    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// The user names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Checks a PLAIN (or X509Plain) login. Takes as long for an unknown user as for a
    /// known one with a wrong password.
    pub fn check_password(&self, name: &str, password: &[u8]) -> bool {
        match self.get(name) {
            Some(record) => password_matches(&record, password),
            None => {
                let _ = password_matches(decoy(), password);
                false
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<UserRecord>>> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<UserRecord>>> {
        self.users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_check_plain_passwords_and_hold_no_password() {
        let record = make_record("alice", b"correct horse");
        assert!(record.iterations >= 4096);
        assert_eq!(record.stored_key.len(), 32);
        assert_eq!(record.server_key.len(), 32);
        let db = UserDb::new(vec![record.clone()]);
        assert!(db.check_password("alice", b"correct horse"));
        assert!(!db.check_password("alice", b"correct horsE"));
        assert!(!db.check_password("mallory", b"correct horse"));
        let other = make_record("alice", b"correct horse");
        assert_ne!(other.salt, record.salt, "fresh salt per record");
        assert_ne!(other.stored_key, record.stored_key);
    }

    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        let db = UserDb::new(vec![make_record("alice", b"pw")]);
        let time = |name: &str| {
            let start = std::time::Instant::now();
            for _ in 0..3 {
                db.check_password(name, b"wrong");
            }
            start.elapsed()
        };
        let _ = time("nobody"); // builds the decoy
        let (known, unknown) = (time("alice"), time("nobody"));
        // Both run PBKDF2 with the same iterations; a skipped hash would be ~1000x faster.
        assert!(
            unknown * 4 > known && known * 4 > unknown,
            "{known:?} vs {unknown:?}"
        );
    }

    #[test]
    fn user_names_are_plain() {
        for good in ["alice", "bob.smith", "svc_vnc-1", "alice@EXAMPLE.COM"] {
            check_user_name(good).expect(good);
        }
        for bad in ["", "-x", "a,b", "a=b", "a*", "a b", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }
}
