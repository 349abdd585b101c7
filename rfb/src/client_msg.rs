//! Client-to-server messages (RFC 6143 §7.5) and QEMU's extensions.
//!
//! Owns [`ClientMessage`], its encoder and the incremental decoder
//! [`decode_client_message`]. Every variable-length field is checked against its
//! bound before anything is allocated, so a decoder fed any bytes allocates at most
//! the bounded message it returns.
//!
//! Beyond the core set (0, 2, 3, 4, 5, 6) it understands the messages QEMU's VNC
//! server accepts, so a gateway in front of QEMU can parse everything a client may
//! legitimately send it:
//! - 251 SetDesktopSize (with the ExtendedDesktopSize pseudo-encoding): fixed
//!   8-byte header then 16 bytes per screen (at most 255 screens).
//! - 255 QEMU client message, sub-type byte at offset 1: sub-type 0 is the QEMU
//!   extended key event (12 bytes: u16 down-flag, u32 keysym, u32 XT keycode);
//!   sub-type 1 is audio with a u16 operation at offset 2: 0 enable and 1 disable
//!   (4 bytes), 2 set-format (10 bytes: u8 sample format, u8 channels, u32 Hz).
//!   Any other sub-type or audio operation is [`RfbError::Unsupported`]: its size
//!   is unknown, so the stream cannot be resynchronised (QEMU drops such clients too).
//!   Values inside these messages are not range-checked here; the receiver decides.
//! - ClientCutText with a negative length (as i32) is the Extended Clipboard form:
//!   the payload (absolute value of the length, same bound) is returned uninterpreted.

use super::RfbError;
use super::pixel::{PIXEL_FORMAT_LEN, PixelFormat};
use super::rect::{Rect, Screen};
use super::wire::{Reader, check_len, need, put_i32, put_padding, put_u8, put_u16, put_u32};

/// Largest cut-text payload (either direction, plain or extended).
pub const MAX_CUT_TEXT: usize = 1024 * 1024;
/// Largest encoding list in SetEncodings.
pub const MAX_ENCODINGS: usize = 1024;
/// Longest client message on the wire: a ClientCutText at [`MAX_CUT_TEXT`].
pub const MAX_CLIENT_MESSAGE_LEN: usize = 8 + MAX_CUT_TEXT;

/// Client message type numbers.
pub mod client_type {
    pub const SET_PIXEL_FORMAT: u8 = 0;
    pub const SET_ENCODINGS: u8 = 2;
    pub const FRAMEBUFFER_UPDATE_REQUEST: u8 = 3;
    pub const KEY_EVENT: u8 = 4;
    pub const POINTER_EVENT: u8 = 5;
    pub const CLIENT_CUT_TEXT: u8 = 6;
    pub const SET_DESKTOP_SIZE: u8 = 251;
    pub const QEMU: u8 = 255;
}

/// QEMU audio control (client message 255, sub-type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuAudio {
    Enable,
    Disable,
    SetFormat {
        format: u8,
        channels: u8,
        frequency: u32,
    },
}

/// A decoded client-to-server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    SetPixelFormat(PixelFormat),
    /// Encoding numbers in the client's order of preference (signed: pseudo-encodings
    /// are negative).
    SetEncodings(Vec<i32>),
    FramebufferUpdateRequest {
        incremental: bool,
        rect: Rect,
    },
    KeyEvent {
        down: bool,
        key: u32,
    },
    PointerEvent {
        buttons: u8,
        x: u16,
        y: u16,
    },
    /// Latin-1 text.
    ClientCutText(Vec<u8>),
    /// The Extended Clipboard payload of a negative-length ClientCutText.
    ClientCutTextExtended(Vec<u8>),
    SetDesktopSize {
        width: u16,
        height: u16,
        screens: Vec<Screen>,
    },
    QemuExtendedKeyEvent {
        down: bool,
        keysym: u32,
        keycode: u32,
    },
    QemuAudio(QemuAudio),
}

impl ClientMessage {
    /// Appends the wire form to `out`. Fails (writing nothing) when a list or text is
    /// over its bound.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RfbError> {
        use client_type::*;
        match self {
            Self::SetPixelFormat(pf) => {
                put_u8(out, SET_PIXEL_FORMAT);
                put_padding(out, 3);
                out.extend_from_slice(&pf.encode());
            }
            Self::SetEncodings(list) => {
                let n = check_len("encoding list", list.len() as u64, MAX_ENCODINGS)?;
                put_u8(out, SET_ENCODINGS);
                put_padding(out, 1);
                put_u16(out, n as u16);
                list.iter().for_each(|&e| put_i32(out, e));
            }
            Self::FramebufferUpdateRequest { incremental, rect } => {
                put_u8(out, FRAMEBUFFER_UPDATE_REQUEST);
                put_u8(out, u8::from(*incremental));
                for v in [rect.x, rect.y, rect.width, rect.height] {
                    put_u16(out, v);
                }
            }
            Self::KeyEvent { down, key } => {
                put_u8(out, KEY_EVENT);
                put_u8(out, u8::from(*down));
                put_padding(out, 2);
                put_u32(out, *key);
            }
            Self::PointerEvent { buttons, x, y } => {
                put_u8(out, POINTER_EVENT);
                put_u8(out, *buttons);
                put_u16(out, *x);
                put_u16(out, *y);
            }
            Self::ClientCutText(text) | Self::ClientCutTextExtended(text) => {
                let n = check_len("cut text", text.len() as u64, MAX_CUT_TEXT)? as u32;
                let extended = matches!(self, Self::ClientCutTextExtended(_));
                if extended && n == 0 {
                    return Err(RfbError::Unencodable(
                        "an empty extended clipboard message".into(),
                    ));
                }
                put_u8(out, CLIENT_CUT_TEXT);
                put_padding(out, 3);
                put_u32(out, if extended { n.wrapping_neg() } else { n });
                out.extend_from_slice(text);
            }
            Self::SetDesktopSize {
                width,
                height,
                screens,
            } => {
                let n = u8::try_from(screens.len()).map_err(|_| {
                    RfbError::Unencodable(format!("{} screens in SetDesktopSize", screens.len()))
                })?;
                put_u8(out, SET_DESKTOP_SIZE);
                put_padding(out, 1);
                put_u16(out, *width);
                put_u16(out, *height);
                put_u8(out, n);
                put_padding(out, 1);
                screens.iter().for_each(|s| s.write(out));
            }
            Self::QemuExtendedKeyEvent {
                down,
                keysym,
                keycode,
            } => {
                put_u8(out, QEMU);
                put_u8(out, 0);
                put_u16(out, u16::from(*down));
                put_u32(out, *keysym);
                put_u32(out, *keycode);
            }
            Self::QemuAudio(op) => {
                put_u8(out, QEMU);
                put_u8(out, 1);
                match op {
                    QemuAudio::Enable => put_u16(out, 0),
                    QemuAudio::Disable => put_u16(out, 1),
                    QemuAudio::SetFormat {
                        format,
                        channels,
                        frequency,
                    } => {
                        put_u16(out, 2);
                        put_u8(out, *format);
                        put_u8(out, *channels);
                        put_u32(out, *frequency);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Decodes one client message from the start of `buf`.
///
/// `Ok(None)`: `buf` holds a valid prefix, read more and call again with the longer
/// buffer. `Ok(Some((msg, n)))`: the message took the first `n` bytes. An error means
/// the stream is unusable (unknown type, over a bound, unsupported QEMU sub-type).
pub fn decode_client_message(buf: &[u8]) -> Result<Option<(ClientMessage, usize)>, RfbError> {
    use client_type::*;
    let mut r = Reader::new(buf);
    let msg = match need!(r.u8()) {
        SET_PIXEL_FORMAT => {
            need!(r.skip(3));
            ClientMessage::SetPixelFormat(PixelFormat::parse(&need!(r.array::<PIXEL_FORMAT_LEN>())))
        }
        SET_ENCODINGS => {
            need!(r.skip(1));
            let n = check_len("encoding list", u64::from(need!(r.u16())), MAX_ENCODINGS)?;
            let mut list_r = Reader::new(need!(r.bytes(n * 4)));
            // Length checked: the reads cannot fail; `map` keeps the size exact.
            ClientMessage::SetEncodings((0..n).map(|_| list_r.i32().unwrap_or_default()).collect())
        }
        FRAMEBUFFER_UPDATE_REQUEST => {
            let incremental = need!(r.u8()) != 0;
            let rect = Rect::new(
                need!(r.u16()),
                need!(r.u16()),
                need!(r.u16()),
                need!(r.u16()),
            );
            ClientMessage::FramebufferUpdateRequest { incremental, rect }
        }
        KEY_EVENT => {
            let down = need!(r.u8()) != 0;
            need!(r.skip(2));
            ClientMessage::KeyEvent {
                down,
                key: need!(r.u32()),
            }
        }
        POINTER_EVENT => ClientMessage::PointerEvent {
            buttons: need!(r.u8()),
            x: need!(r.u16()),
            y: need!(r.u16()),
        },
        CLIENT_CUT_TEXT => {
            need!(r.skip(3));
            let (text, extended) = need!(read_cut_text(&mut r)?);
            if extended {
                ClientMessage::ClientCutTextExtended(text)
            } else {
                ClientMessage::ClientCutText(text)
            }
        }
        SET_DESKTOP_SIZE => {
            need!(r.skip(1));
            let width = need!(r.u16());
            let height = need!(r.u16());
            let n = need!(r.u8());
            need!(r.skip(1));
            // Check the whole length first so that nothing is allocated for a prefix.
            let mut screens_r = Reader::new(need!(r.bytes(usize::from(n) * Screen::LEN)));
            let screens = (0..n)
                .map(|_| Screen::read(&mut screens_r).unwrap_or_default())
                .collect();
            ClientMessage::SetDesktopSize {
                width,
                height,
                screens,
            }
        }
        QEMU => need!(decode_qemu(&mut r)?),
        other => return Err(RfbError::UnknownClientMessage(other)),
    };
    Ok(Some((msg, r.position())))
}

fn decode_qemu(r: &mut Reader<'_>) -> Result<Option<ClientMessage>, RfbError> {
    let msg = match need!(r.u8()) {
        0 => ClientMessage::QemuExtendedKeyEvent {
            down: need!(r.u16()) != 0,
            keysym: need!(r.u32()),
            keycode: need!(r.u32()),
        },
        1 => ClientMessage::QemuAudio(match need!(r.u16()) {
            0 => QemuAudio::Enable,
            1 => QemuAudio::Disable,
            2 => QemuAudio::SetFormat {
                format: need!(r.u8()),
                channels: need!(r.u8()),
                frequency: need!(r.u32()),
            },
            op => return Err(RfbError::Unsupported(format!("QEMU audio operation {op}"))),
        }),
        sub => {
            return Err(RfbError::Unsupported(format!(
                "QEMU client message sub-type {sub}"
            )));
        }
    };
    Ok(Some(msg))
}

/// The u32 length + text of a cut-text message (either direction); a length that
/// is negative as i32 marks the Extended Clipboard form. Returns (payload, extended).
pub(crate) fn read_cut_text(r: &mut Reader<'_>) -> Result<Option<(Vec<u8>, bool)>, RfbError> {
    let raw = need!(r.i32());
    let len = check_len("cut text", u64::from(raw.unsigned_abs()), MAX_CUT_TEXT)?;
    let text = need!(r.bytes(len)).to_vec();
    Ok(Some((text, raw < 0)))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // Tests index data of known length.
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Option<(ClientMessage, usize)> {
        decode_client_message(bytes).ok().flatten()
    }

    /// Each message as the spec lays it out, its decoded form, and the round trip.
    #[test]
    fn captured_messages() {
        let cases: Vec<(Vec<u8>, ClientMessage)> = vec![
            (
                vec![
                    0, 0, 0, 0, 16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0,
                ],
                ClientMessage::SetPixelFormat(PixelFormat::RGB565_BE),
            ),
            (
                vec![2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x21],
                ClientMessage::SetEncodings(vec![0, 1, -223]),
            ),
            (
                vec![3, 1, 0, 0, 0, 0, 0x02, 0x80, 0x01, 0xe0],
                ClientMessage::FramebufferUpdateRequest {
                    incremental: true,
                    rect: Rect::full(640, 480),
                },
            ),
            (
                vec![4, 1, 0, 0, 0, 0, 0xff, 0x0d],
                ClientMessage::KeyEvent {
                    down: true,
                    key: 0xff0d,
                },
            ),
            (
                vec![5, 0x05, 0x01, 0x00, 0x00, 0x20],
                ClientMessage::PointerEvent {
                    buttons: 5,
                    x: 256,
                    y: 32,
                },
            ),
            (
                vec![6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i'],
                ClientMessage::ClientCutText(b"hi".to_vec()),
            ),
            (
                vec![6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 0, 0, 0, 1],
                ClientMessage::ClientCutTextExtended(vec![0, 0, 0, 1]),
            ),
            (
                [
                    &[251, 0, 0x04, 0x00, 0x03, 0x00, 1, 0][..],
                    &[0, 0, 0, 7, 0, 0, 0, 0, 0x04, 0x00, 0x03, 0x00, 0, 0, 0, 0],
                ]
                .concat(),
                ClientMessage::SetDesktopSize {
                    width: 1024,
                    height: 768,
                    screens: vec![Screen {
                        id: 7,
                        rect: Rect::full(1024, 768),
                        flags: 0,
                    }],
                },
            ),
            (
                vec![255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e],
                ClientMessage::QemuExtendedKeyEvent {
                    down: true,
                    keysym: 0x61,
                    keycode: 0x1e,
                },
            ),
            (
                vec![255, 1, 0, 0],
                ClientMessage::QemuAudio(QemuAudio::Enable),
            ),
            (
                vec![255, 1, 0, 1],
                ClientMessage::QemuAudio(QemuAudio::Disable),
            ),
            (
                vec![255, 1, 0, 2, 3, 2, 0, 0, 0xac, 0x44],
                ClientMessage::QemuAudio(QemuAudio::SetFormat {
                    format: 3,
                    channels: 2,
                    frequency: 44100,
                }),
            ),
        ];
        for (bytes, msg) in cases {
            assert_eq!(
                decode_all(&bytes),
                Some((msg.clone(), bytes.len())),
                "{msg:?}"
            );
            let mut out = Vec::new();
            assert!(msg.encode(&mut out).is_ok());
            assert_eq!(out, bytes, "{msg:?}");
            for cut in 0..bytes.len() {
                assert_eq!(decode_client_message(&bytes[..cut]).ok(), Some(None));
            }
            // A following message does not change what the first one decodes to.
            let mut two = bytes.clone();
            two.extend_from_slice(&[5, 0, 0, 0, 0, 0]);
            assert_eq!(decode_all(&two), Some((msg, bytes.len())));
        }
    }

    #[test]
    fn unknown_types_and_subtypes() {
        for t in [1u8, 7, 150, 248, 250, 254] {
            assert!(matches!(
                decode_client_message(&[t]),
                Err(RfbError::UnknownClientMessage(x)) if x == t
            ));
        }
        assert!(matches!(
            decode_client_message(&[255, 2]),
            Err(RfbError::Unsupported(_))
        ));
        assert!(matches!(
            decode_client_message(&[255, 1, 0, 3]),
            Err(RfbError::Unsupported(_))
        ));
    }

    #[test]
    fn bounds_are_checked_before_the_data_arrives() {
        // 1 MiB + 1 of cut text: refused from the 8-byte header alone.
        assert!(matches!(
            decode_client_message(&[6, 0, 0, 0, 0, 0x10, 0, 1]),
            Err(RfbError::TooLong { len: 0x10_0001, .. })
        ));
        // i32::MIN as an extended length.
        assert!(decode_client_message(&[6, 0, 0, 0, 0x80, 0, 0, 0]).is_err());
        // 1025 encodings.
        assert!(matches!(
            decode_client_message(&[2, 0, 0x04, 0x01]),
            Err(RfbError::TooLong { len: 1025, .. })
        ));
        // Exactly at the bounds is fine (and incomplete).
        assert_eq!(
            decode_client_message(&[6, 0, 0, 0, 0, 0x10, 0, 0]).ok(),
            Some(None)
        );
        assert_eq!(decode_client_message(&[2, 0, 0x04, 0x00]).ok(), Some(None));
    }

    #[test]
    fn encoder_refuses_over_bounds() {
        let mut out = Vec::new();
        let long = ClientMessage::ClientCutText(vec![b'x'; MAX_CUT_TEXT + 1]);
        assert!(long.encode(&mut out).is_err());
        let many = ClientMessage::SetEncodings(vec![0; MAX_ENCODINGS + 1]);
        assert!(many.encode(&mut out).is_err());
        assert!(out.is_empty());
    }
}
