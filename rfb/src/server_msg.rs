//! Server-to-client messages (RFC 6143 §7.6, §7.7).
//!
//! Owns the server side's encoders (FramebufferUpdate header and rectangle header,
//! Raw rectangles converted from `0x00RRGGBB` pixels to the client's format, Bell,
//! ServerCutText) and, for clients (tests, benchmarks, the gateway's backend side),
//! [`ServerMessage`] with the incremental decoder [`decode_server_message`].
//!
//! The decoder sizes rectangles from the negotiated [`PixelFormat`] and knows the
//! encodings whose size needs no decompression: Raw, CopyRect, and the
//! DesktopSize, ExtendedDesktopSize and Cursor pseudo-encodings. Anything else is
//! [`RfbError::UnknownEncoding`], because the rest of the stream cannot be found.
//! One update may carry at most [`MAX_UPDATE_BYTES`] on the wire.

use super::RfbError;
use super::client_msg::{MAX_CUT_TEXT, read_cut_text};
use super::pixel::{PixelConverter, PixelFormat};
use super::rect::{Rect, Screen};
use super::wire::{Reader, check_len, need, put_i32, put_padding, put_u8, put_u16, put_u32};

/// Largest FramebufferUpdate (headers and pixel data) a client decodes: 64 MiB,
/// a 4096x4096 32-bpp screen.
pub const MAX_UPDATE_BYTES: usize = 64 * 1024 * 1024;

/// Server message type numbers.
pub mod server_type {
    pub const FRAMEBUFFER_UPDATE: u8 = 0;
    pub const SET_COLOUR_MAP_ENTRIES: u8 = 1;
    pub const BELL: u8 = 2;
    pub const SERVER_CUT_TEXT: u8 = 3;
}

/// Encoding numbers (signed: pseudo-encodings are negative).
pub mod encoding {
    pub const RAW: i32 = 0;
    pub const COPY_RECT: i32 = 1;
    pub const DESKTOP_SIZE: i32 = -223;
    pub const CURSOR: i32 = -239;
    pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
    pub const QEMU_EXTENDED_KEY_EVENT: i32 = -258;
    pub const QEMU_AUDIO: i32 = -259;
    pub const EXTENDED_CLIPBOARD: i32 = 0xc0a1_e5ce_u32 as i32;
}

/// The data following a rectangle header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RectPayload {
    /// Pixels in the negotiated format, row by row, `width * height * bpp/8` bytes.
    Raw(Vec<u8>),
    CopyRect {
        src_x: u16,
        src_y: u16,
    },
    /// The framebuffer is now `rect.width` x `rect.height`.
    DesktopSize,
    /// `rect.x` is the reason, `rect.y` the status, width/height the new size.
    ExtendedDesktopSize(Vec<Screen>),
    /// Cursor image (Raw layout) and its 1-bpp mask, rows padded to whole bytes.
    Cursor {
        pixels: Vec<u8>,
        mask: Vec<u8>,
    },
}

impl RectPayload {
    pub fn encoding(&self) -> i32 {
        match self {
            Self::Raw(_) => encoding::RAW,
            Self::CopyRect { .. } => encoding::COPY_RECT,
            Self::DesktopSize => encoding::DESKTOP_SIZE,
            Self::ExtendedDesktopSize(_) => encoding::EXTENDED_DESKTOP_SIZE,
            Self::Cursor { .. } => encoding::CURSOR,
        }
    }
}

/// One rectangle of a FramebufferUpdate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rectangle {
    pub rect: Rect,
    pub payload: RectPayload,
}

/// A decoded server-to-client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    FramebufferUpdate(Vec<Rectangle>),
    SetColourMapEntries {
        first_colour: u16,
        /// 16-bit red, green, blue.
        colours: Vec<[u16; 3]>,
    },
    Bell,
    /// Latin-1 text.
    ServerCutText(Vec<u8>),
    /// The Extended Clipboard payload of a negative-length ServerCutText.
    ServerCutTextExtended(Vec<u8>),
}

/// Appends a FramebufferUpdate header announcing `rect_count` rectangles.
pub fn encode_update_header(out: &mut Vec<u8>, rect_count: u16) {
    put_u8(out, server_type::FRAMEBUFFER_UPDATE);
    put_padding(out, 1);
    put_u16(out, rect_count);
}

/// Appends a rectangle header.
pub fn encode_rect_header(out: &mut Vec<u8>, rect: Rect, encoding: i32) {
    for v in [rect.x, rect.y, rect.width, rect.height] {
        put_u16(out, v);
    }
    put_i32(out, encoding);
}

/// Appends a Raw rectangle (header and pixels) for `rect` of a framebuffer whose
/// `0x00RRGGBB` pixels are `pixels`, `fb_width` per row, converted to `pf`.
/// Fails when `pf` cannot be served or `rect` is not inside the framebuffer.
pub fn encode_raw_rect(
    out: &mut Vec<u8>,
    pixels: &[u32],
    fb_width: u16,
    rect: Rect,
    pf: &PixelFormat,
) -> Result<(), RfbError> {
    encode_raw_rect_with(out, pixels, fb_width, rect, &PixelConverter::new(pf)?)
}

/// [`encode_raw_rect`] with a converter built once for many rectangles.
pub fn encode_raw_rect_with(
    out: &mut Vec<u8>,
    pixels: &[u32],
    fb_width: u16,
    rect: Rect,
    conv: &PixelConverter,
) -> Result<(), RfbError> {
    let stride = usize::from(fb_width);
    let fb_height = pixels.len().checked_div(stride).unwrap_or(0);
    let fb = Rect::full(fb_width, u16::try_from(fb_height).unwrap_or(u16::MAX));
    if !fb.contains(&rect) {
        return Err(RfbError::Unencodable(format!(
            "{rect:?} outside the {fb_width}x{fb_height} framebuffer"
        )));
    }
    encode_rect_header(out, rect, encoding::RAW);
    out.reserve(rect.area() as usize * conv.bytes_per_pixel());
    let (x, w) = (usize::from(rect.x), usize::from(rect.width));
    for row in usize::from(rect.y)..usize::from(rect.y) + usize::from(rect.height) {
        let start = row * stride + x;
        if let Some(src) = pixels.get(start..start + w) {
            conv.convert(src, out);
        }
    }
    Ok(())
}

/// Appends a Bell message.
pub fn encode_bell(out: &mut Vec<u8>) {
    put_u8(out, server_type::BELL);
}

/// Appends a ServerCutText message (Latin-1 text, at most [`MAX_CUT_TEXT`] bytes).
pub fn encode_server_cut_text(out: &mut Vec<u8>, text: &[u8]) -> Result<(), RfbError> {
    let n = check_len("cut text", text.len() as u64, MAX_CUT_TEXT)?;
    put_u8(out, server_type::SERVER_CUT_TEXT);
    put_padding(out, 3);
    put_u32(out, n as u32);
    out.extend_from_slice(text);
    Ok(())
}

impl ServerMessage {
    /// Appends the wire form. Rectangle payloads are written as they are (a Raw
    /// payload must already be in the client's format).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RfbError> {
        match self {
            Self::FramebufferUpdate(rects) => {
                let n = u16::try_from(rects.len()).map_err(|_| {
                    RfbError::Unencodable(format!("{} rectangles in one update", rects.len()))
                })?;
                encode_update_header(out, n);
                for r in rects {
                    encode_rect_header(out, r.rect, r.payload.encoding());
                    encode_payload(out, &r.payload)?;
                }
            }
            Self::SetColourMapEntries {
                first_colour,
                colours,
            } => {
                let n = u16::try_from(colours.len()).map_err(|_| {
                    RfbError::Unencodable(format!("{} colour map entries", colours.len()))
                })?;
                put_u8(out, server_type::SET_COLOUR_MAP_ENTRIES);
                put_padding(out, 1);
                put_u16(out, *first_colour);
                put_u16(out, n);
                colours.iter().flatten().for_each(|&c| put_u16(out, c));
            }
            Self::Bell => encode_bell(out),
            Self::ServerCutText(text) => encode_server_cut_text(out, text)?,
            Self::ServerCutTextExtended(data) => {
                let n = check_len("cut text", data.len() as u64, MAX_CUT_TEXT)?;
                if n == 0 {
                    return Err(RfbError::Unencodable(
                        "an empty extended clipboard message".into(),
                    ));
                }
                put_u8(out, server_type::SERVER_CUT_TEXT);
                put_padding(out, 3);
                put_u32(out, (n as u32).wrapping_neg());
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }
}

fn encode_payload(out: &mut Vec<u8>, payload: &RectPayload) -> Result<(), RfbError> {
    match payload {
        RectPayload::Raw(data) => out.extend_from_slice(data),
        RectPayload::CopyRect { src_x, src_y } => {
            put_u16(out, *src_x);
            put_u16(out, *src_y);
        }
        RectPayload::DesktopSize => {}
        RectPayload::ExtendedDesktopSize(screens) => {
            let n = u8::try_from(screens.len()).map_err(|_| {
                RfbError::Unencodable(format!("{} screens in ExtendedDesktopSize", screens.len()))
            })?;
            put_u8(out, n);
            put_padding(out, 3);
            screens.iter().for_each(|s| s.write(out));
        }
        RectPayload::Cursor { pixels, mask } => {
            out.extend_from_slice(pixels);
            out.extend_from_slice(mask);
        }
    }
    Ok(())
}

/// Decodes one server message from the start of `buf`, sizing pixel data with `pf`
/// (the format the client set, or the ServerInit one). Same contract as
/// [`decode_client_message`](super::decode_client_message): `Ok(None)` = need more.
/// A FramebufferUpdate is returned whole; it is sized completely before anything is
/// copied, so incomplete updates cost no allocation.
pub fn decode_server_message(
    buf: &[u8],
    pf: &PixelFormat,
) -> Result<Option<(ServerMessage, usize)>, RfbError> {
    let mut r = Reader::new(buf);
    let msg = match need!(r.u8()) {
        server_type::FRAMEBUFFER_UPDATE => {
            need!(r.skip(1));
            let count = need!(r.u16());
            let start = r.clone();
            for _ in 0..count {
                need!(skip_rectangle(&mut r, pf)?);
                check_len("framebuffer update", r.position() as u64, MAX_UPDATE_BYTES)?;
            }
            // Complete: parse again, this time copying. Every rectangle took at least
            // 12 input bytes, so the exact-size list is bounded by the input too.
            let mut r2 = start;
            let mut rects = Vec::with_capacity(usize::from(count));
            rects.extend((0..count).filter_map(|_| read_rectangle(&mut r2, pf)));
            ServerMessage::FramebufferUpdate(rects)
        }
        server_type::SET_COLOUR_MAP_ENTRIES => {
            need!(r.skip(1));
            let first_colour = need!(r.u16());
            let n = usize::from(need!(r.u16()));
            let mut entries = Reader::new(need!(r.bytes(n * 6)));
            // Length checked above; exact-size collection, no regrowth.
            let mut colour = || entries.u16().unwrap_or_default();
            let colours = (0..n).map(|_| [colour(), colour(), colour()]).collect();
            ServerMessage::SetColourMapEntries {
                first_colour,
                colours,
            }
        }
        server_type::BELL => ServerMessage::Bell,
        server_type::SERVER_CUT_TEXT => {
            need!(r.skip(3));
            match need!(read_cut_text(&mut r)?) {
                (data, true) => ServerMessage::ServerCutTextExtended(data),
                (text, false) => ServerMessage::ServerCutText(text),
            }
        }
        other => return Err(RfbError::UnknownServerMessage(other)),
    };
    Ok(Some((msg, r.position())))
}

/// Decodes one rectangle (header and payload), for clients that stream an update
/// rectangle by rectangle after reading the 4-byte header themselves.
pub fn decode_rectangle(
    buf: &[u8],
    pf: &PixelFormat,
) -> Result<Option<(Rectangle, usize)>, RfbError> {
    let mut sizing = Reader::new(buf);
    need!(skip_rectangle(&mut sizing, pf)?);
    let mut r = Reader::new(buf);
    Ok(read_rectangle(&mut r, pf).map(|rect| (rect, r.position())))
}

/// Reads a rectangle header and skips its payload; `Ok(None)` if incomplete.
fn skip_rectangle(r: &mut Reader<'_>, pf: &PixelFormat) -> Result<Option<()>, RfbError> {
    let rect = Rect::new(
        need!(r.u16()),
        need!(r.u16()),
        need!(r.u16()),
        need!(r.u16()),
    );
    let enc = need!(r.i32());
    let len = need!(payload_len(rect, enc, pf, r.rest())?);
    need!(r.skip(len));
    Ok(Some(()))
}

/// Byte length of a rectangle's payload; `rest` is only looked at for
/// ExtendedDesktopSize, whose length is in its first byte.
fn payload_len(
    rect: Rect,
    enc: i32,
    pf: &PixelFormat,
    rest: &[u8],
) -> Result<Option<usize>, RfbError> {
    let pixels = rect.area() * pf.bytes_per_pixel() as u64;
    let len = match enc {
        encoding::RAW => pixels,
        encoding::COPY_RECT => 4,
        encoding::DESKTOP_SIZE => 0,
        encoding::EXTENDED_DESKTOP_SIZE => 4 + 16 * u64::from(*need!(rest.first())),
        encoding::CURSOR => pixels + u64::from(rect.width).div_ceil(8) * u64::from(rect.height),
        other => return Err(RfbError::UnknownEncoding(other)),
    };
    check_len("rectangle", len, MAX_UPDATE_BYTES).map(Some)
}

/// Reads a rectangle known to be complete (checked by [`skip_rectangle`]).
fn read_rectangle(r: &mut Reader<'_>, pf: &PixelFormat) -> Option<Rectangle> {
    let rect = Rect::new(r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    let enc = r.i32()?;
    let len = payload_len(rect, enc, pf, r.rest()).ok()??;
    let mut p = Reader::new(r.bytes(len)?);
    let payload = match enc {
        encoding::RAW => RectPayload::Raw(p.rest().to_vec()),
        encoding::COPY_RECT => RectPayload::CopyRect {
            src_x: p.u16()?,
            src_y: p.u16()?,
        },
        encoding::DESKTOP_SIZE => RectPayload::DesktopSize,
        encoding::EXTENDED_DESKTOP_SIZE => {
            let n = p.u8()?;
            p.skip(3)?;
            RectPayload::ExtendedDesktopSize(
                (0..n)
                    .map(|_| Screen::read(&mut p).unwrap_or_default())
                    .collect(),
            )
        }
        encoding::CURSOR => {
            let pixels = p
                .bytes(rect.area() as usize * pf.bytes_per_pixel())?
                .to_vec();
            RectPayload::Cursor {
                pixels,
                mask: p.rest().to_vec(),
            }
        }
        _ => return None,
    };
    Some(Rectangle { rect, payload })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // Tests index data of known length.
mod tests {
    use super::*;

    fn decode(bytes: &[u8], pf: &PixelFormat) -> Option<(ServerMessage, usize)> {
        decode_server_message(bytes, pf).ok().flatten()
    }

    #[test]
    fn captured_messages() {
        let native = PixelFormat::NATIVE;
        let cases: Vec<(Vec<u8>, ServerMessage)> = vec![
            (
                [
                    &[0u8, 0, 0, 2][..],
                    &[0, 1, 0, 2, 0, 2, 0, 1, 0, 0, 0, 0], // Raw 2x1 at (1,2)
                    &[0x40, 0x80, 0xff, 0, 1, 2, 3, 0],
                    &[0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 1, 0, 9, 0, 8], // CopyRect from (9,8)
                ]
                .concat(),
                ServerMessage::FramebufferUpdate(vec![
                    Rectangle {
                        rect: Rect::new(1, 2, 2, 1),
                        payload: RectPayload::Raw(vec![0x40, 0x80, 0xff, 0, 1, 2, 3, 0]),
                    },
                    Rectangle {
                        rect: Rect::new(0, 0, 4, 4),
                        payload: RectPayload::CopyRect { src_x: 9, src_y: 8 },
                    },
                ]),
            ),
            (
                [
                    &[
                        0u8, 0, 0, 1, 0, 0, 0, 0, 0x04, 0, 0x03, 0, 0xff, 0xff, 0xfe, 0xcc,
                    ][..],
                    &[
                        1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x04, 0, 0x03, 0, 0, 0, 0, 0,
                    ],
                ]
                .concat(),
                ServerMessage::FramebufferUpdate(vec![Rectangle {
                    rect: Rect::full(1024, 768),
                    payload: RectPayload::ExtendedDesktopSize(vec![Screen {
                        id: 1,
                        rect: Rect::full(1024, 768),
                        flags: 0,
                    }]),
                }]),
            ),
            (
                [
                    &[0u8, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0xff, 0xff, 0xff, 0x11][..],
                    &[1, 2, 3, 0, 4, 5, 6, 0, 0b1000_0000], // Cursor 2x1: pixels, mask
                ]
                .concat(),
                ServerMessage::FramebufferUpdate(vec![Rectangle {
                    rect: Rect::new(0, 0, 2, 1),
                    payload: RectPayload::Cursor {
                        pixels: vec![1, 2, 3, 0, 4, 5, 6, 0],
                        mask: vec![0x80],
                    },
                }]),
            ),
            (
                vec![
                    0, 0, 0, 1, 0, 0, 0, 0, 0x02, 0x80, 0x01, 0xe0, 0xff, 0xff, 0xff, 0x21,
                ],
                ServerMessage::FramebufferUpdate(vec![Rectangle {
                    rect: Rect::full(640, 480),
                    payload: RectPayload::DesktopSize,
                }]),
            ),
            (vec![0, 0, 0, 0], ServerMessage::FramebufferUpdate(vec![])),
            (
                vec![1, 0, 0, 5, 0, 1, 0xff, 0xff, 0, 0, 0x80, 0],
                ServerMessage::SetColourMapEntries {
                    first_colour: 5,
                    colours: vec![[0xffff, 0, 0x8000]],
                },
            ),
            (vec![2], ServerMessage::Bell),
            (
                vec![3, 0, 0, 0, 0, 0, 0, 2, b'o', b'k'],
                ServerMessage::ServerCutText(b"ok".to_vec()),
            ),
            (
                vec![3, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 1, 0, 0, 0],
                ServerMessage::ServerCutTextExtended(vec![1, 0, 0, 0]),
            ),
        ];
        for (bytes, msg) in cases {
            assert_eq!(
                decode(&bytes, &native),
                Some((msg.clone(), bytes.len())),
                "{msg:?}"
            );
            let mut out = Vec::new();
            assert!(msg.encode(&mut out).is_ok());
            assert_eq!(out, bytes, "{msg:?}");
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_server_message(&bytes[..cut], &native).ok(),
                    Some(None)
                );
            }
        }
    }

    #[test]
    fn raw_rect_encoding_converts_and_clips_to_the_source() {
        // A 3x2 framebuffer; encode its right column in RGB565 big-endian.
        let fb = [0, 0, 0x00ff_0000, 0, 0, 0x0000_00ff];
        let mut out = Vec::new();
        let ok = encode_raw_rect(
            &mut out,
            &fb,
            3,
            Rect::new(2, 0, 1, 2),
            &PixelFormat::RGB565_BE,
        );
        assert!(ok.is_ok());
        assert_eq!(
            out,
            [0, 2, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0xf8, 0x00, 0x00, 0x1f]
        );
        let outside = encode_raw_rect(
            &mut out,
            &fb,
            3,
            Rect::new(2, 0, 2, 2),
            &PixelFormat::NATIVE,
        );
        assert!(outside.is_err());
        let colour_map = PixelFormat {
            true_colour: false,
            ..PixelFormat::NATIVE
        };
        assert!(encode_raw_rect(&mut out, &fb, 3, Rect::full(3, 2), &colour_map).is_err());
    }

    #[test]
    fn raw_size_follows_the_pixel_format() {
        let hdr = [0u8, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0, 0];
        let with = |n: usize| [&hdr[..], &vec![7u8; n]].concat();
        assert!(decode(&with(8), &PixelFormat::RGB565_BE).is_some());
        assert!(decode(&with(7), &PixelFormat::RGB565_BE).is_none());
        assert!(decode(&with(15), &PixelFormat::NATIVE).is_none());
        assert_eq!(
            decode(&with(16), &PixelFormat::NATIVE).map(|(_, n)| n),
            Some(32)
        );
    }

    #[test]
    fn errors() {
        let native = PixelFormat::NATIVE;
        assert!(matches!(
            decode_server_message(&[4], &native),
            Err(RfbError::UnknownServerMessage(4))
        ));
        let zrle = [0u8, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 16];
        assert!(matches!(
            decode_server_message(&zrle, &native),
            Err(RfbError::UnknownEncoding(16))
        ));
        // A 65535x65535 Raw rectangle is refused from its header.
        let huge = [0u8, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            decode_server_message(&huge, &native),
            Err(RfbError::TooLong { .. })
        ));
    }

    #[test]
    fn rectangle_streaming() {
        let bytes = [0u8, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 9, 8, 7, 6, 0xaa];
        let got = decode_rectangle(&bytes, &PixelFormat::NATIVE)
            .ok()
            .flatten();
        let want = Rectangle {
            rect: Rect::new(0, 0, 1, 1),
            payload: RectPayload::Raw(vec![9, 8, 7, 6]),
        };
        assert_eq!(got, Some((want, 16)));
        assert_eq!(
            decode_rectangle(&bytes[..15], &PixelFormat::NATIVE).ok(),
            Some(None)
        );
    }
}
