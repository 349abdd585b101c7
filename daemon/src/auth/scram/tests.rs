//! The grammar by example (what real clients send, what the attacks sent) and by property
//! (arbitrary input never panics; generated valid messages always pass).

use proptest::prelude::*;

use super::*;

/// Client-first messages that panicked rsasl 2.3.1's parser (issue 14, item 5).
pub const PANICKED_RSASL: &[&[u8]] = &[
    b"n,,",
    b"n,,n=alice,",
    b"n,a,n=alice,r=abc",
    b"n,,n",
    b"n,,n=alice,r",
];

/// Our own base64 encoder, to build messages the decoder must take back.
fn encode64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut acc = 0_u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (acc >> (18 - 6 * i)) & 63;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn what_real_clients_send_passes() {
    // Cyrus SASL (gtk-vnc, libvirt) and rsasl's own client.
    let first = client_first(b"n,,n=alice,r=rOprNGfwEbeRWgbNEkqO").expect("valid");
    assert_eq!(
        first,
        ClientFirst {
            gs2_header: b"n,,",
            authzid: None,
            username: "alice".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO",
        }
    );
    let first = client_first(b"y,a=al=3Dice,n=b=2Cob,r=x~!,t=ext=ra").expect("valid");
    assert_eq!(first.gs2_header, b"y,a=al=3Dice,");
    assert_eq!(first.authzid.as_deref(), Some("al=ice"));
    assert_eq!(first.username, "b,ob");

    let last = client_final(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
          p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    )
    .expect("valid");
    assert_eq!(last.channel_binding, b"n,,");
    assert_eq!(
        last.nonce,
        "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    );
    assert_eq!(last.proof.len(), 32);
    let last = client_final(b"c=eSw=,r=ab,x=1,p=").expect("an extension, an empty proof");
    assert_eq!(last.channel_binding, b"y,");
    assert!(last.proof.is_empty());
}

#[test]
fn the_messages_that_panicked_rsasl_are_refused() {
    let expected = [
        ScramError::Missing("user name"),
        ScramError::Missing("nonce"),
        ScramError::Malformed("authorization identity"),
        ScramError::Missing("user name"),
        ScramError::Missing("nonce"),
    ];
    for (msg, want) in PANICKED_RSASL.iter().zip(expected) {
        assert_eq!(
            client_first(msg),
            Err(want),
            "{}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn client_first_follows_the_grammar() {
    let refused: &[(&[u8], ScramError)] = &[
        (b"", ScramError::Malformed("channel binding flag")),
        (b"n", ScramError::Missing("GS2 header")),
        (b"n,", ScramError::Missing("GS2 header")),
        (b"x,,n=a,r=b", ScramError::Malformed("channel binding flag")),
        (
            b"p=,,n=a,r=b",
            ScramError::Malformed("channel binding flag"),
        ),
        (
            b"p=tls-unique,,n=a,r=b",
            ScramError::ChannelBinding("tls-unique".into()),
        ),
        (
            b"n,a=,n=a,r=b",
            ScramError::Malformed("authorization identity"),
        ),
        (
            b"n,z=x,n=a,r=b",
            ScramError::Malformed("authorization identity"),
        ),
        (b"n,,m=x,n=a,r=b", ScramError::MandatoryExtension),
        (b"n,,r=b,n=a", ScramError::Missing("user name")),
        (b"n,,n=,r=b", ScramError::Malformed("user name")),
        (b"n,,n=a=2c,r=b", ScramError::Malformed("user name")),
        (b"n,,n=a=,r=b", ScramError::Malformed("user name")),
        (b"n,,n=a=3,r=b", ScramError::Malformed("user name")),
        (b"n,,n=a\0b,r=b", ScramError::Malformed("user name")),
        (b"n,,n=a,r=", ScramError::Malformed("nonce")),
        (b"n,,n=a,r=b c", ScramError::Malformed("nonce")),
        (b"n,,n=a,r=\xc3\xa9", ScramError::Malformed("nonce")),
        (b"n,,n=a,x=b", ScramError::Missing("nonce")),
        (b"n,,n=a,r=b,", ScramError::Malformed("extension")),
        (b"n,,n=a,r=b,x", ScramError::Malformed("extension")),
        (b"n,,n=a,r=b,x=", ScramError::Malformed("extension")),
        (b"n,,n=a,r=b,1=x", ScramError::Malformed("extension")),
        (b"n,,n=a,r=b,p=x", ScramError::ReservedExtension('p')),
        (b"n,,n=\xff,r=b", ScramError::NotUtf8),
    ];
    for (msg, want) in refused {
        assert_eq!(
            client_first(msg).as_ref().err(),
            Some(want),
            "{}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn client_final_follows_the_grammar() {
    let proof = encode64(&[7; 32]);
    let refused: Vec<(String, ScramError)> = vec![
        (String::new(), ScramError::Missing("proof")),
        ("c".into(), ScramError::Missing("proof")),
        ("c=biws,r=ab".into(), ScramError::Missing("proof")),
        (
            format!("r=ab,p={proof}"),
            ScramError::Missing("channel binding"),
        ),
        (format!("c=biws,p={proof}"), ScramError::Missing("nonce")),
        (
            format!("c=biws,x=1,p={proof}"),
            ScramError::Missing("nonce"),
        ),
        (
            format!("c=biws,r=,p={proof}"),
            ScramError::Malformed("nonce"),
        ),
        (
            format!("c=biw,r=ab,p={proof}"),
            ScramError::Malformed("channel binding"),
        ),
        (
            format!("c=b=ws,r=ab,p={proof}"),
            ScramError::Malformed("channel binding"),
        ),
        (
            format!("c=biws,r=ab,,p={proof}"),
            ScramError::Malformed("extension"),
        ),
        (
            format!("c=biws,r=ab,p=x,p={proof}"),
            ScramError::ReservedExtension('p'),
        ),
        (
            format!("c=biws,r=ab,p={proof},"),
            ScramError::Missing("proof"),
        ),
        ("c=biws,r=ab,p=abc".into(), ScramError::Malformed("proof")),
        (
            "c=biws,r=ab,p=ab==cd==".into(),
            ScramError::Malformed("proof"),
        ),
        ("c=biws,r=ab,p=a===".into(), ScramError::Malformed("proof")),
        // Unused bits set: these would decode like "bQ==" and "big=".
        ("c=biws,r=ab,p=bY==".into(), ScramError::Malformed("proof")),
        ("c=biws,r=ab,p=bih=".into(), ScramError::Malformed("proof")),
    ];
    for (msg, want) in &refused {
        assert_eq!(
            client_final(msg.as_bytes()).as_ref().err(),
            Some(want),
            "{msg}"
        );
    }
}

#[test]
fn base64_takes_only_the_canonical_form() {
    assert_eq!(base64(""), Some(Vec::new()));
    assert_eq!(base64("biws"), Some(b"n,,".to_vec()));
    assert_eq!(base64("eSw="), Some(b"y,".to_vec()));
    assert_eq!(base64("eQ=="), Some(b"y".to_vec()));
    for bad in [
        "eR==", "eSx=", "e===", "====", "eQ", "eQ==eQ==", "e Q=", "eQ=\0",
    ] {
        assert_eq!(base64(bad), None, "{bad:?}");
    }
}

/// A guard that has seen `first`.
fn guard_after(first: &str) -> ScramGuard {
    let mut guard = ScramGuard::for_mechanism("SCRAM-SHA-256").expect("a SCRAM mechanism");
    guard.check(Some(first.as_bytes())).expect("valid first");
    guard
}

#[test]
fn the_guard_ties_the_final_message_to_the_first() {
    assert!(ScramGuard::for_mechanism("PLAIN").is_none());
    let proof = encode64(&[1; 32]);
    let good = format!("c=biws,r=abcSERVER,p={proof}");
    assert_eq!(
        guard_after("n,,n=alice,r=abc").check(Some(good.as_bytes())),
        Ok(())
    );
    let with_authzid = format!("c={},r=abcS,p={proof}", encode64(b"n,a=alice,"));
    let mut guard = guard_after("n,a=alice,n=alice,r=abc");
    assert_eq!(guard.check(Some(with_authzid.as_bytes())), Ok(()));
    assert_eq!(guard.check(Some(b"c=biws")), Err(ScramError::Unexpected));

    let cases = [
        (
            format!("c=eSws,r=abcS,p={proof}"),
            ScramError::BindingMismatch,
        ),
        (format!("c=biws,r=abc,p={proof}"), ScramError::NonceMismatch),
        (
            format!("c=biws,r=xbcS,p={proof}"),
            ScramError::NonceMismatch,
        ),
        (
            format!("c=biws,r=abcS,p={}", encode64(&[1; 20])),
            ScramError::ProofLength(20, 32),
        ),
    ];
    for (last, want) in cases {
        let mut guard = guard_after("n,,n=alice,r=abc");
        assert_eq!(guard.check(Some(last.as_bytes())), Err(want), "{last}");
        assert_eq!(
            guard.check(Some(good.as_bytes())),
            Err(ScramError::Unexpected)
        );
    }

    let mut guard = ScramGuard::for_mechanism("SCRAM-SHA-256").expect("SCRAM");
    assert_eq!(guard.check(None), Err(ScramError::Missing("client-first")));
    assert_eq!(
        guard.check(Some(b"n,,n=a,r=b")),
        Err(ScramError::Unexpected)
    );
    let mut guard = guard_after("n,,n=alice,r=abc");
    assert_eq!(guard.check(None), Err(ScramError::Missing("client-final")));
}

/// Bytes that SCRAM messages are made of, so that generated input reaches deep.
fn scram_ish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"nypacrmx=,23CDbiws+/A\0\xc3\xa9 ".to_vec();
    proptest::collection::vec(proptest::sample::select(alphabet), 0..40)
}

/// A saslname as a client escapes it, and what it stands for.
fn saslname_pair() -> impl Strategy<Value = (String, String)> {
    "[a-zA-Z0-9 é,=._@-]{1,12}".prop_map(|name| {
        let escaped = name.replace('=', "=3D").replace(',', "=2C");
        (escaped, name)
    })
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = client_first(&msg);
        let _ = client_final(&msg);
        let _ = base64(&String::from_utf8_lossy(&msg));
        let mut guard = ScramGuard::for_mechanism("SCRAM-SHA-256").expect("SCRAM");
        let _ = guard.check(Some(&msg));
        let _ = guard.check(Some(&msg));
    }

    #[test]
    fn scram_shaped_input_never_panics(first in scram_ish(), last in scram_ish()) {
        let _ = client_first(&first);
        let _ = client_final(&last);
        let mut guard = guard_after("n,,n=alice,r=abc");
        let _ = guard.check(Some(&last));
        let mut prefixed = b"n,,n=alice,r=abc".to_vec();
        prefixed.extend_from_slice(&first);
        let _ = client_first(&prefixed);
        let mut prefixed = b"c=biws,r=abcd".to_vec();
        prefixed.extend_from_slice(&last);
        let _ = client_final(&prefixed);
    }

    #[test]
    fn valid_messages_pass_and_unescape(
        flag in prop_oneof![Just("n"), Just("y")],
        authzid in proptest::option::of(saslname_pair()),
        (user, name) in saslname_pair(),
        nonce in "[!-+\\--~]{1,24}",
        server_nonce in "[!-+\\--~]{1,24}",
        ext in proptest::option::of("[bdfghjkloqtuwxyzA-Z]=[a-z=é]{1,8}"),
        proof in proptest::collection::vec(any::<u8>(), 32),
    ) {
        let header = match &authzid {
            Some((escaped, _)) => format!("{flag},a={escaped},"),
            None => format!("{flag},,"),
        };
        let ext = ext.map(|e| format!(",{e}")).unwrap_or_default();
        let first = format!("{header}n={user},r={nonce}{ext}");
        let parsed = client_first(first.as_bytes()).expect("valid client-first");
        prop_assert_eq!(parsed.gs2_header, header.as_bytes());
        prop_assert_eq!(parsed.username, name);
        prop_assert_eq!(parsed.authzid, authzid.map(|(_, n)| n));
        let last = format!(
            "c={},r={nonce}{server_nonce}{ext},p={}",
            encode64(header.as_bytes()),
            encode64(&proof)
        );
        let mut guard = ScramGuard::for_mechanism("SCRAM-SHA-256").expect("SCRAM");
        prop_assert_eq!(guard.check(Some(first.as_bytes())), Ok(()));
        prop_assert_eq!(guard.check(Some(last.as_bytes())), Ok(()));
    }

    #[test]
    fn base64_takes_back_what_was_encoded(data in proptest::collection::vec(any::<u8>(), 0..100)) {
        prop_assert_eq!(base64(&encode64(&data)), Some(data));
    }
}
