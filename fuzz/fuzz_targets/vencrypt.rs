//! VeNCrypt's version and subtype exchange (`vmgate_rfb::vencrypt`), as the gateway runs
//! it after a client chose security type 19: the client's version, then its 4-byte
//! subtype choice against the subtypes offered.
//!
//! Input: one byte selecting which subtypes are offered (a bit each), then the client's
//! two version bytes and four choice bytes. Checks: no panic; the version is accepted
//! exactly when it is 0.2, and the reply lists the offer; only an offered subtype is
//! chosen, and its code is what the client sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmgate_rfb::vencrypt::{self, Subtype};

const ALL: [Subtype; 4] = [
    Subtype::X509None,
    Subtype::X509Vnc,
    Subtype::X509Plain,
    Subtype::X509Sasl,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mask, rest)) = data.split_first() else {
        return;
    };
    let offered: Vec<Subtype> = ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect();
    let Some((version, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    match vencrypt::version_reply(*version, &offered) {
        Ok(reply) => {
            assert_eq!(*version, vencrypt::VERSION);
            assert_eq!(usize::from(reply[1]), offered.len());
            let codes: Vec<u32> = reply[2..]
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let expected: Vec<u32> = offered.iter().map(|s| s.code()).collect();
            assert_eq!(codes, expected);
        }
        Err(refusal) => {
            assert_ne!(*version, vencrypt::VERSION);
            assert_eq!(refusal, [1]);
        }
    }
    let Some(choice) = rest.first_chunk::<4>() else {
        return;
    };
    let chosen = vencrypt::parse_choice(*choice, &offered);
    if let Some(subtype) = chosen {
        assert!(offered.contains(&subtype));
        assert_eq!(subtype.code(), u32::from_be_bytes(*choice));
        assert!(subtype.name().starts_with("vencrypt-x509"));
    } else {
        assert!(
            !offered
                .iter()
                .any(|s| s.code() == u32::from_be_bytes(*choice))
        );
    }
    assert_eq!(
        vencrypt::choice_ack(chosen.is_some()),
        [u8::from(chosen.is_some())]
    );
});
