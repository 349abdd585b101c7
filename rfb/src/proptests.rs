//! Property tests over the whole RFB codec surface.
//!
//! Owns the generators of valid messages and the properties every decoder must
//! hold: arbitrary input never panics, never reports consuming more than it was
//! given and never yields data over the declared bounds; a valid message split at
//! any position decodes as "need more" until the last byte arrives; encoding and
//! decoding round-trip.
#![allow(clippy::indexing_slicing)] // Tests index data of known length.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn pixel_format() -> impl Strategy<Value = PixelFormat> {
    any::<[u8; PIXEL_FORMAT_LEN]>().prop_map(|b| PixelFormat::parse(&b))
}

fn served_format() -> impl Strategy<Value = PixelFormat> {
    let be = |pf: PixelFormat| PixelFormat {
        big_endian: !pf.big_endian,
        ..pf
    };
    prop::sample::select(vec![
        PixelFormat::NATIVE,
        be(PixelFormat::NATIVE),
        PixelFormat::RGB565_BE,
        be(PixelFormat::RGB565_BE),
        PixelFormat::BGR233,
    ])
}

fn rect(max: u16) -> impl Strategy<Value = Rect> {
    (any::<u16>(), any::<u16>(), 0..=max, 0..=max).prop_map(|(x, y, w, h)| Rect::new(x, y, w, h))
}

fn screen() -> impl Strategy<Value = Screen> {
    (any::<u32>(), rect(u16::MAX), any::<u32>()).prop_map(|(id, rect, flags)| Screen {
        id,
        rect,
        flags,
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    use ClientMessage as M;
    let audio = prop_oneof![
        Just(QemuAudio::Enable),
        Just(QemuAudio::Disable),
        (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(format, channels, frequency)| {
            QemuAudio::SetFormat {
                format,
                channels,
                frequency,
            }
        }),
    ];
    prop_oneof![
        pixel_format().prop_map(M::SetPixelFormat),
        vec(any::<i32>(), 0..40).prop_map(M::SetEncodings),
        (any::<bool>(), rect(u16::MAX))
            .prop_map(|(incremental, rect)| M::FramebufferUpdateRequest { incremental, rect }),
        (any::<bool>(), any::<u32>()).prop_map(|(down, key)| M::KeyEvent { down, key }),
        (any::<u8>(), any::<u16>(), any::<u16>()).prop_map(|(buttons, x, y)| M::PointerEvent {
            buttons,
            x,
            y
        }),
        bytes(200).prop_map(M::ClientCutText),
        vec(any::<u8>(), 1..200).prop_map(M::ClientCutTextExtended),
        (any::<u16>(), any::<u16>(), vec(screen(), 0..4)).prop_map(|(width, height, screens)| {
            M::SetDesktopSize {
                width,
                height,
                screens,
            }
        }),
        (any::<bool>(), any::<u32>(), any::<u32>()).prop_map(|(down, keysym, keycode)| {
            M::QemuExtendedKeyEvent {
                down,
                keysym,
                keycode,
            }
        }),
        audio.prop_map(M::QemuAudio),
    ]
}

/// A rectangle whose payload is consistent with its size under `pf`.
fn rectangle(pf: PixelFormat) -> impl Strategy<Value = Rectangle> {
    let bpp = pf.bytes_per_pixel();
    (rect(6), 0..5u8).prop_flat_map(move |(rect, kind)| {
        let pixels = rect.area() as usize * bpp;
        let mask = usize::from(rect.width).div_ceil(8) * usize::from(rect.height);
        let payload = match kind {
            0 => vec(any::<u8>(), pixels).prop_map(RectPayload::Raw).boxed(),
            1 => (any::<u16>(), any::<u16>())
                .prop_map(|(src_x, src_y)| RectPayload::CopyRect { src_x, src_y })
                .boxed(),
            2 => Just(RectPayload::DesktopSize).boxed(),
            3 => vec(screen(), 0..3)
                .prop_map(RectPayload::ExtendedDesktopSize)
                .boxed(),
            _ => (vec(any::<u8>(), pixels), vec(any::<u8>(), mask))
                .prop_map(|(pixels, mask)| RectPayload::Cursor { pixels, mask })
                .boxed(),
        };
        payload.prop_map(move |payload| Rectangle { rect, payload })
    })
}

fn server_message(pf: PixelFormat) -> impl Strategy<Value = ServerMessage> {
    use ServerMessage as M;
    prop_oneof![
        vec(rectangle(pf), 0..4).prop_map(M::FramebufferUpdate),
        (any::<u16>(), vec(any::<[u16; 3]>(), 0..8)).prop_map(|(first_colour, colours)| {
            M::SetColourMapEntries {
                first_colour,
                colours,
            }
        }),
        Just(M::Bell),
        bytes(200).prop_map(M::ServerCutText),
        vec(any::<u8>(), 1..200).prop_map(M::ServerCutTextExtended),
    ]
}

/// Bytes that often start like a real message, so that decoders get past byte 0.
fn wire_noise(types: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(64),
        (prop::sample::select(types), bytes(64)).prop_map(|(t, mut rest)| {
            rest.insert(0, t);
            rest
        }),
    ]
}

/// Data sizes a decoded client message holds, to check against the bounds.
fn client_payload_len(m: &ClientMessage) -> usize {
    match m {
        ClientMessage::SetEncodings(list) => list.len(),
        ClientMessage::ClientCutText(t) | ClientMessage::ClientCutTextExtended(t) => t.len(),
        ClientMessage::SetDesktopSize { screens, .. } => screens.len(),
        _ => 0,
    }
}

proptest! {
    #[test]
    fn client_decoder_never_panics(buf in wire_noise(&[0, 2, 3, 4, 5, 6, 251, 255])) {
        if let Ok(Some((msg, used))) = decode_client_message(&buf) {
            prop_assert!(used <= buf.len() && used <= MAX_CLIENT_MESSAGE_LEN);
            prop_assert!(client_payload_len(&msg) <= buf.len());
            // What was decoded re-decodes the same from its canonical encoding.
            let mut out = Vec::new();
            prop_assert!(msg.encode(&mut out).is_ok());
            prop_assert_eq!(decode_client_message(&out).ok().flatten(), Some((msg, out.len())));
        }
    }

    #[test]
    fn server_decoder_never_panics(buf in wire_noise(&[0, 1, 2, 3]), pf in pixel_format()) {
        if let Ok(Some((msg, used))) = decode_server_message(&buf, &pf) {
            prop_assert!(used <= buf.len());
            if let ServerMessage::FramebufferUpdate(rects) = &msg {
                let data: usize = rects.iter().map(|r| match &r.payload {
                    RectPayload::Raw(d) => d.len(),
                    RectPayload::Cursor { pixels, mask } => pixels.len() + mask.len(),
                    _ => 0,
                }).sum();
                prop_assert!(data <= buf.len());
            }
        }
        let _ = decode_rectangle(&buf, &pf);
    }

    #[test]
    fn handshake_decoders_never_panic(buf in bytes(80), pick in 0..3usize) {
        let version = [ProtocolVersion::V3_3, ProtocolVersion::V3_7, ProtocolVersion::V3_8][pick];
        if let Ok(Some((_, used))) = decode_security_offer(version, &buf) {
            prop_assert!(used <= buf.len());
        }
        if let Ok(Some((_, used))) = SecurityResult::decode(version, &buf) {
            prop_assert!(used <= buf.len());
        }
        if let Ok(Some((init, used))) = ServerInit::decode(&buf) {
            prop_assert!(used <= buf.len() && init.name.len() <= MAX_NAME_LEN);
        }
    }

    #[test]
    fn version_parsers_never_panic(b in any::<[u8; 12]>()) {
        if let Ok(v) = ProtocolVersion::parse(&b) {
            prop_assert_eq!(ProtocolVersion::parse(&v.encode()).ok(), Some(v));
        }
        let _ = ProtocolVersion::negotiate_from_server(&b);
    }

    #[test]
    fn version_digits(major in 0u32..1000, minor in 0u32..1000) {
        let text = format!("RFB {major:03}.{minor:03}\n");
        let b: [u8; 12] = text.as_bytes().try_into().unwrap_or([0; 12]);
        let parsed = ProtocolVersion::parse(&b);
        let expected_ok = major == 3 && matches!(minor, 3..=8 | 889);
        prop_assert_eq!(parsed.is_ok(), expected_ok);
    }

    #[test]
    fn pixel_format_parse_never_panics(b in any::<[u8; 16]>(), px in any::<u32>()) {
        let pf = PixelFormat::parse(&b);
        prop_assert_eq!(PixelFormat::parse(&pf.encode()), pf);
        if let Ok(conv) = PixelConverter::new(&pf) {
            let mut out = Vec::new();
            conv.convert(&[px], &mut out);
            prop_assert_eq!(out.len(), pf.bytes_per_pixel());
            prop_assert!(pf.decode_pixel(&out).is_some());
        }
    }

    #[test]
    fn client_messages_split_anywhere(msg in client_message()) {
        let mut bytes = Vec::new();
        prop_assert!(msg.encode(&mut bytes).is_ok());
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_client_message(&bytes[..cut]).ok(), Some(None));
        }
        prop_assert_eq!(decode_client_message(&bytes).ok().flatten(), Some((msg, bytes.len())));
    }

    #[test]
    fn server_messages_split_anywhere(
        (pf, msg) in served_format().prop_flat_map(|pf| (Just(pf), server_message(pf)))
    ) {
        let mut bytes = Vec::new();
        prop_assert!(msg.encode(&mut bytes).is_ok());
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_server_message(&bytes[..cut], &pf).ok(), Some(None));
        }
        prop_assert_eq!(
            decode_server_message(&bytes, &pf).ok().flatten(),
            Some((msg, bytes.len()))
        );
    }

    #[test]
    fn raw_rect_size_matches_format(
        pf in served_format(),
        (w, h) in (1u16..20, 1u16..20),
        r in rect(20),
    ) {
        let fb = vec![0x0012_3456u32; usize::from(w) * usize::from(h)];
        let mut out = Vec::new();
        let res = encode_raw_rect(&mut out, &fb, w, r, &pf);
        prop_assert_eq!(res.is_ok(), Rect::full(w, h).contains(&r));
        if res.is_ok() {
            prop_assert_eq!(out.len(), 12 + r.area() as usize * pf.bytes_per_pixel());
        }
    }

    #[test]
    fn rect_geometry(a in rect(u16::MAX), b in rect(u16::MAX)) {
        let u = a.union(&b);
        if let Some(i) = a.intersect(&b) {
            prop_assert!(a.contains(&i) && b.contains(&i));
        }
        // The union covers both unless it had to saturate at u16::MAX.
        if u.width < u16::MAX && u.height < u16::MAX {
            prop_assert!(u.contains(&a) && u.contains(&b));
        }
    }
}
