//! RFC 5802's grammar for the two messages a SCRAM client sends, checked before rsasl
//! parses them. rsasl 2.3.1's parser slices attributes without checking their length and
//! panics on messages as short as `n,,`; nothing that fails this grammar reaches it.
//!
//! What passes is what RFC 5802 section 7 allows, narrowed to what this server does:
//! - no channel binding: the GS2 flag is `n` or `y`, never `p=` (no `-PLUS` mechanism is
//!   offered), and the final message's `c=` must carry the GS2 header back unchanged;
//! - no mandatory extension (`m=`), which the RFC says a server must then refuse;
//! - optional extensions only under names SCRAM does not already use, so that an
//!   extension can never be taken for the proof or the nonce.
//!
//! [`ScramGuard`] checks one exchange's messages in order and ties them together (the
//! same GS2 header, a nonce that extends the client's, a proof as long as the digest).
//!
//! Pure functions over bytes: nothing here panics on any input, allocates more than the
//! message's own size, or judges a credential (that stays with rsasl and the user
//! database).

/// Why a client's SCRAM message was refused. Never shown to the client, who hears only
/// that authentication failed; the text is for the daemon's debug log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("SCRAM message is not UTF-8")]
    NotUtf8,
    #[error("SCRAM message has no {0}")]
    Missing(&'static str),
    #[error("Malformed SCRAM {0}")]
    Malformed(&'static str),
    #[error("Channel binding {0:?} is not offered")]
    ChannelBinding(String),
    #[error("Mandatory SCRAM extensions (m=) are not supported")]
    MandatoryExtension,
    #[error("SCRAM extension {0}= reuses a SCRAM attribute name")]
    ReservedExtension(char),
    #[error("SCRAM channel binding does not match the GS2 header")]
    BindingMismatch,
    #[error("SCRAM nonce does not extend the client's nonce")]
    NonceMismatch,
    #[error("SCRAM proof is {0} bytes, not {1}")]
    ProofLength(usize, usize),
    #[error("SCRAM exchange expects no further client message")]
    Unexpected,
}

/// A client-first-message that follows the grammar.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst<'a> {
    /// The GS2 header as sent (`n,,`, `y,a=alice,`): what the final `c=` must encode.
    pub gs2_header: &'a [u8],
    /// The authorization identity, unescaped.
    pub authzid: Option<String>,
    /// The user name, unescaped (`=2C` is `,`, `=3D` is `=`).
    pub username: String,
    /// The client's nonce.
    pub nonce: &'a str,
}

/// A client-final-message that follows the grammar.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFinal<'a> {
    /// `c=`, decoded.
    pub channel_binding: Vec<u8>,
    /// The client's nonce followed by the server's.
    pub nonce: &'a str,
    /// `p=`, decoded.
    pub proof: Vec<u8>,
}

/// Attribute names RFC 5802 defines; an extension may not take one.
const SCRAM_ATTRIBUTES: &[char] = &['a', 'c', 'e', 'i', 'm', 'n', 'p', 'r', 's', 'v'];

/// Parses `gs2-header client-first-message-bare`.
pub fn client_first(msg: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::NotUtf8)?;
    let mut fields = text.split(',');
    let flag = fields.next().unwrap_or_default();
    match flag {
        "n" | "y" => {}
        _ => {
            return Err(match flag.strip_prefix("p=") {
                Some(name) if is_cb_name(name) => ScramError::ChannelBinding(name.to_owned()),
                _ => ScramError::Malformed("channel binding flag"),
            });
        }
    }
    let authzid_field = fields.next().ok_or(ScramError::Missing("GS2 header"))?;
    let authzid = match authzid_field {
        "" => None,
        field => Some(
            field
                .strip_prefix("a=")
                .and_then(saslname)
                .ok_or(ScramError::Malformed("authorization identity"))?,
        ),
    };
    // The flag, the authzid and the two commas after them.
    let header_len = flag.len() + authzid_field.len() + 2;
    let (gs2_header, bare) = match (msg.get(..header_len), text.get(header_len..)) {
        (Some(header), Some(bare)) => (header, bare),
        _ => return Err(ScramError::Missing("GS2 header")),
    };

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let username = first
        .strip_prefix("n=")
        .ok_or(ScramError::Missing("user name"))?;
    let username = saslname(username).ok_or(ScramError::Malformed("user name"))?;
    let nonce = nonce_then_extensions(attrs)?;
    Ok(ClientFirst {
        gs2_header,
        authzid,
        username,
        nonce,
    })
}

/// Parses `channel-binding "," nonce ["," extensions] "," proof`.
pub fn client_final(msg: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::NotUtf8)?;
    let (without_proof, proof) = text.rsplit_once(',').ok_or(ScramError::Missing("proof"))?;
    let proof = proof
        .strip_prefix("p=")
        .ok_or(ScramError::Missing("proof"))?;
    let proof = base64(proof).ok_or(ScramError::Malformed("proof"))?;

    let mut attrs = without_proof.split(',');
    let binding = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(ScramError::Missing("channel binding"))?;
    let channel_binding = base64(binding).ok_or(ScramError::Malformed("channel binding"))?;
    let nonce = nonce_then_extensions(attrs)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
    })
}

/// `nonce ["," extensions]`, the part both client messages share after their first
/// attribute; returns the nonce.
fn nonce_then_extensions<'a>(
    mut attrs: impl Iterator<Item = &'a str>,
) -> Result<&'a str, ScramError> {
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Missing("nonce"))?;
    if !is_printable(nonce) {
        return Err(ScramError::Malformed("nonce"));
    }
    extensions(attrs)?;
    Ok(nonce)
}

/// `1*(value-safe-char / "=2C" / "=3D")`, unescaped; None when it is not one.
fn saslname(escaped: &str) -> Option<String> {
    if escaped.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\0' | ',' => return None,
            '=' => match (chars.next(), chars.next()) {
                (Some('2'), Some('C')) => out.push(','),
                (Some('3'), Some('D')) => out.push('='),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// `cb-name = 1*(ALPHA / DIGIT / "." / "-")` (RFC 5056).
fn is_cb_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A nonce: one or more printable ASCII characters other than `,`.
fn is_printable(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21..=0x2b | 0x2d..=0x7e))
}

/// `attr-val *("," attr-val)` with `attr-val = ALPHA "=" 1*value-char`.
fn extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for attr in attrs {
        let mut chars = attr.chars();
        let (Some(name), Some('=')) = (chars.next(), chars.next()) else {
            return Err(ScramError::Malformed("extension"));
        };
        let value = chars.as_str();
        if !name.is_ascii_alphabetic() || value.is_empty() || value.contains('\0') {
            return Err(ScramError::Malformed("extension"));
        }
        if SCRAM_ATTRIBUTES.contains(&name) {
            return Err(ScramError::ReservedExtension(name));
        }
    }
    Ok(())
}

/// The value of one base64 character; None for anything else (padding included).
fn sextet(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes `*base64-4 [base64-3 / base64-2]`, canonical form only (padded, unused bits
/// zero), as rsasl's decoder wants it; None when it is not that.
fn base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let last = (i + 1) * 4 == bytes.len();
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc = 0_u32;
        for &b in chunk.iter().take(4 - pad) {
            acc = acc << 6 | sextet(b)?;
        }
        acc <<= 6 * pad;
        let [_, b0, b1, b2] = acc.to_be_bytes();
        let decoded = [b0, b1, b2];
        // The bits past the data must be zero, or two texts would decode alike.
        if decoded.iter().skip(3 - pad).any(|&b| b != 0) {
            return None;
        }
        out.extend(decoded.iter().take(3 - pad));
    }
    Some(out)
}

/// Where an exchange is.
#[derive(Debug)]
enum GuardState {
    First,
    Final {
        gs2_header: Vec<u8>,
        client_nonce: String,
    },
    Over,
}

/// Checks the client's messages of one SCRAM exchange, in order: the first message, then
/// the final one, then nothing more. Any error ends the exchange.
#[derive(Debug)]
pub struct ScramGuard {
    proof_len: usize,
    state: GuardState,
}

impl ScramGuard {
    /// A guard for `mechanism`; None when it is not a SCRAM mechanism this knows.
    pub fn for_mechanism(mechanism: &str) -> Option<ScramGuard> {
        let proof_len = match mechanism {
            "SCRAM-SHA-1" => 20,
            "SCRAM-SHA-256" => 32,
            "SCRAM-SHA-512" => 64,
            _ => return None,
        };
        Some(ScramGuard {
            proof_len,
            state: GuardState::First,
        })
    }

    /// Checks the client's next message (None when it sent none).
    pub fn check(&mut self, msg: Option<&[u8]>) -> Result<(), ScramError> {
        let state = std::mem::replace(&mut self.state, GuardState::Over);
        match state {
            GuardState::First => {
                let first = client_first(msg.ok_or(ScramError::Missing("client-first"))?)?;
                self.state = GuardState::Final {
                    gs2_header: first.gs2_header.to_vec(),
                    client_nonce: first.nonce.to_owned(),
                };
                Ok(())
            }
            GuardState::Final {
                gs2_header,
                client_nonce,
            } => {
                let last = client_final(msg.ok_or(ScramError::Missing("client-final"))?)?;
                if last.channel_binding != gs2_header {
                    return Err(ScramError::BindingMismatch);
                }
                if last.nonce.len() <= client_nonce.len() || !last.nonce.starts_with(&client_nonce)
                {
                    return Err(ScramError::NonceMismatch);
                }
                if last.proof.len() != self.proof_len {
                    return Err(ScramError::ProofLength(last.proof.len(), self.proof_len));
                }
                Ok(())
            }
            GuardState::Over => Err(ScramError::Unexpected),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
