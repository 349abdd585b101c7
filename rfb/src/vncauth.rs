//! VNC authentication, security type 2 (RFC 6143 §7.2.2).
//!
//! Owns the DES challenge-response arithmetic: the key schedule quirk (password
//! zero-padded or truncated to 8 bytes, each byte bit-reversed), the response, a
//! constant-time check of a client's response, and challenge generation. It does
//! not decide which password applies to which guest.

use des::Des;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use subtle::ConstantTimeEq;

/// Length of the challenge and of the response.
pub const CHALLENGE_LEN: usize = 16;

/// A fresh random challenge from the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn generate_challenge() -> [u8; CHALLENGE_LEN] {
    rand::random()
}

/// The response a client sends: each 8-byte half of the challenge DES-ECB encrypted
/// with the VNC key derived from `password`. Only the first 8 bytes of the password
/// count, as in every VNC implementation.
pub fn vnc_auth_response(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    let cipher = Des::new(&key.into());
    let mut out = [0u8; CHALLENGE_LEN];
    for (dst, src) in out.chunks_exact_mut(8).zip(challenge.chunks_exact(8)) {
        let mut block = des::cipher::Block::<Des>::default();
        block.copy_from_slice(src);
        cipher.encrypt_block(&mut block);
        dst.copy_from_slice(&block);
    }
    out
}

/// Whether `response` is right for `password` and `challenge`, compared in constant time.
pub fn verify_vnc_auth(
    password: &[u8],
    challenge: &[u8; CHALLENGE_LEN],
    response: &[u8; CHALLENGE_LEN],
) -> bool {
    vnc_auth_response(password, challenge)
        .ct_eq(response)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_password_zero_challenge() {
        // Checked against openssl (see crates.md §6): DES-ECB of a zero block under
        // the bit-reversed key of "password".
        let half = [0xff, 0x97, 0x50, 0x2e, 0x94, 0x22, 0xf0, 0x89];
        let response = vnc_auth_response(b"password", &[0; 16]);
        assert_eq!(response[..8], half);
        assert_eq!(response[8..], half);
    }

    #[test]
    fn only_eight_bytes_of_the_password_count() {
        let c = generate_challenge();
        assert_eq!(
            vnc_auth_response(b"password", &c),
            vnc_auth_response(b"password-and-more", &c)
        );
        // Zero padding: "pass" is "pass\0\0\0\0".
        assert_eq!(
            vnc_auth_response(b"pass", &c),
            vnc_auth_response(b"pass\0\0\0\0", &c)
        );
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong() {
        let c = generate_challenge();
        let good = vnc_auth_response(b"secret", &c);
        assert!(verify_vnc_auth(b"secret", &c, &good));
        assert!(!verify_vnc_auth(b"Secret", &c, &good));
        let mut bad = good;
        bad[15] ^= 1;
        assert!(!verify_vnc_auth(b"secret", &c, &bad));
    }

    #[test]
    fn challenges_differ() {
        assert_ne!(generate_challenge(), generate_challenge());
    }
}
