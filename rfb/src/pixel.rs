//! PixelFormat (RFC 6143 §7.4) and conversion from our internal pixels.
//!
//! Owns the 16-byte PixelFormat structure, the check of whether we can serve a
//! format, and [`PixelConverter`], which turns the internal `0x00RRGGBB` u32 pixels
//! into any true-colour format of 8, 16 or 32 bits per pixel in either byte order.
//! Colour maps are parsed but never served.

use super::RfbError;

/// Length of a PixelFormat on the wire.
pub const PIXEL_FORMAT_LEN: usize = 16;

/// The pixel layout the sender of pixel data uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    /// Multi-byte pixels are big-endian (any non-zero byte on the wire).
    pub big_endian: bool,
    /// True colour rather than a colour map (any non-zero byte on the wire).
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// Our internal layout: 32 bpp, depth 24, little-endian `0x00RRGGBB`, i.e. the
    /// bytes B, G, R, 0 on the wire. The test server's native format.
    pub const NATIVE: Self = Self::rgb(32, 24, false, [255, 255, 255], [16, 8, 0]);

    /// 16 bpp RGB565, big-endian (a common "low colour" client choice).
    pub const RGB565_BE: Self = Self::rgb(16, 16, true, [31, 63, 31], [11, 5, 0]);

    /// 8 bpp BGR233 (TigerVNC's lowest-colour true-colour format).
    pub const BGR233: Self = Self::rgb(8, 8, false, [7, 7, 3], [0, 3, 6]);

    /// A true-colour format from its maxima and shifts, each in R, G, B order.
    pub const fn rgb(bpp: u8, depth: u8, big_endian: bool, max: [u16; 3], shift: [u8; 3]) -> Self {
        Self {
            bits_per_pixel: bpp,
            depth,
            big_endian,
            true_colour: true,
            red_max: max[0],
            green_max: max[1],
            blue_max: max[2],
            red_shift: shift[0],
            green_shift: shift[1],
            blue_shift: shift[2],
        }
    }

    /// Reads the wire form. Every 16-byte string is a PixelFormat; whether we can
    /// serve it is [`PixelFormat::validate`]'s question. Flags decode as non-zero,
    /// padding is ignored.
    pub fn parse(b: &[u8; PIXEL_FORMAT_LEN]) -> Self {
        let [
            bpp,
            depth,
            be,
            tc,
            rm0,
            rm1,
            gm0,
            gm1,
            bm0,
            bm1,
            rs,
            gs,
            bs,
            _,
            _,
            _,
        ] = *b;
        Self {
            bits_per_pixel: bpp,
            depth,
            big_endian: be != 0,
            true_colour: tc != 0,
            red_max: u16::from_be_bytes([rm0, rm1]),
            green_max: u16::from_be_bytes([gm0, gm1]),
            blue_max: u16::from_be_bytes([bm0, bm1]),
            red_shift: rs,
            green_shift: gs,
            blue_shift: bs,
        }
    }

    /// The wire form (flags as 0/1, zero padding).
    pub fn encode(&self) -> [u8; PIXEL_FORMAT_LEN] {
        let [rm0, rm1] = self.red_max.to_be_bytes();
        let [gm0, gm1] = self.green_max.to_be_bytes();
        let [bm0, bm1] = self.blue_max.to_be_bytes();
        [
            self.bits_per_pixel,
            self.depth,
            u8::from(self.big_endian),
            u8::from(self.true_colour),
            rm0,
            rm1,
            gm0,
            gm1,
            bm0,
            bm1,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
            0,
            0,
            0,
        ]
    }

    /// Bytes one pixel takes in Raw data (bits rounded up to whole bytes).
    pub const fn bytes_per_pixel(&self) -> usize {
        (self.bits_per_pixel as usize).div_ceil(8)
    }

    /// Whether we can send pixels in this format: 8, 16 or 32 bpp, true colour, and
    /// every channel non-empty and inside the pixel. `depth` is not checked (clients
    /// disagree on what it means for padded formats; QEMU ignores it too).
    pub fn validate(&self) -> Result<(), RfbError> {
        if !matches!(self.bits_per_pixel, 8 | 16 | 32) {
            return Err(RfbError::InvalidPixelFormat(
                "bits-per-pixel must be 8, 16 or 32",
            ));
        }
        if !self.true_colour {
            return Err(RfbError::InvalidPixelFormat(
                "colour-map formats are not supported",
            ));
        }
        for (max, shift) in self.channels() {
            if max == 0 {
                return Err(RfbError::InvalidPixelFormat("a colour maximum is zero"));
            }
            let fits = u32::from(shift) < u32::from(self.bits_per_pixel)
                && (u64::from(max) << shift) < (1u64 << self.bits_per_pixel);
            if !fits {
                return Err(RfbError::InvalidPixelFormat(
                    "a colour channel lies outside the pixel",
                ));
            }
        }
        Ok(())
    }

    /// Client side: one pixel of Raw data back to `0x00RRGGBB` (channels scaled to
    /// 0..=255). `None` for a colour-map format or a short slice.
    pub fn decode_pixel(&self, bytes: &[u8]) -> Option<u32> {
        self.validate().ok()?;
        let raw = bytes.get(..self.bytes_per_pixel())?;
        let value = raw.iter().enumerate().fold(0u32, |acc, (i, &b)| {
            if self.big_endian {
                (acc << 8) | u32::from(b)
            } else {
                acc | (u32::from(b) << (8 * i))
            }
        });
        let [r, g, b] = self.channels().map(|(max, shift)| {
            let c = (value >> shift) & u32::from(max);
            (c * 255 + u32::from(max) / 2) / u32::from(max)
        });
        Some((r << 16) | (g << 8) | b)
    }

    fn channels(&self) -> [(u16, u8); 3] {
        [
            (self.red_max, self.red_shift),
            (self.green_max, self.green_shift),
            (self.blue_max, self.blue_shift),
        ]
    }
}

/// Converts `0x00RRGGBB` pixels to one validated client format, through a lookup
/// table per channel (built once per format, 3 KiB).
#[derive(Debug, Clone)]
pub struct PixelConverter {
    lut: [[u32; 256]; 3],
    bytes: usize,
    big_endian: bool,
}

impl PixelConverter {
    /// Fails with [`RfbError::InvalidPixelFormat`] when `pf` does not validate.
    pub fn new(pf: &PixelFormat) -> Result<Self, RfbError> {
        pf.validate()?;
        let mut lut = [[0u32; 256]; 3];
        for (table, (max, shift)) in lut.iter_mut().zip(pf.channels()) {
            for (c, slot) in (0u32..).zip(table.iter_mut()) {
                // Round to nearest; maps 0 to 0 and 255 to max for any max.
                *slot = ((c * u32::from(max) + 127) / 255) << shift;
            }
        }
        Ok(Self {
            lut,
            bytes: pf.bytes_per_pixel(),
            big_endian: pf.big_endian,
        })
    }

    /// Bytes per output pixel.
    pub fn bytes_per_pixel(&self) -> usize {
        self.bytes
    }

    /// The pixel value in the client format (before byte ordering).
    // A u8 index into a 256-entry table cannot be out of range.
    #[allow(clippy::indexing_slicing)]
    pub fn value(&self, rgb: u32) -> u32 {
        let [_, r, g, b] = rgb.to_be_bytes();
        let [lr, lg, lb] = &self.lut;
        lr[usize::from(r)] | lg[usize::from(g)] | lb[usize::from(b)]
    }

    /// Appends the converted pixels of `src` to `out`.
    pub fn convert(&self, src: &[u32], out: &mut Vec<u8>) {
        out.reserve(src.len() * self.bytes);
        for &px in src {
            let v = self.value(px);
            match (self.bytes, self.big_endian) {
                (1, _) => out.push(v as u8),
                (2, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
                (2, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
                (_, false) => out.extend_from_slice(&v.to_le_bytes()),
                (_, true) => out.extend_from_slice(&v.to_be_bytes()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_format_bytes() {
        let bytes = [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];
        assert_eq!(PixelFormat::NATIVE.encode(), bytes);
        assert_eq!(PixelFormat::parse(&bytes), PixelFormat::NATIVE);
    }

    #[test]
    fn rgb565_be_bytes() {
        let bytes = [16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0];
        assert_eq!(PixelFormat::RGB565_BE.encode(), bytes);
        assert_eq!(PixelFormat::parse(&bytes), PixelFormat::RGB565_BE);
    }

    #[test]
    fn flags_and_padding_are_lenient_on_parse() {
        let bytes = [32, 24, 7, 9, 0, 255, 0, 255, 0, 255, 16, 8, 0, 1, 2, 3];
        let pf = PixelFormat::parse(&bytes);
        assert!(pf.big_endian && pf.true_colour);
    }

    #[test]
    fn validation() {
        assert!(PixelFormat::NATIVE.validate().is_ok());
        assert!(PixelFormat::BGR233.validate().is_ok());
        let colour_map = PixelFormat {
            true_colour: false,
            ..PixelFormat::NATIVE
        };
        let bpp24 = PixelFormat {
            bits_per_pixel: 24,
            ..PixelFormat::NATIVE
        };
        let shift_out = PixelFormat {
            red_shift: 30,
            ..PixelFormat::NATIVE
        };
        let too_wide = PixelFormat {
            red_max: 511,
            ..PixelFormat::RGB565_BE
        };
        let big_shift = PixelFormat {
            blue_shift: 255,
            ..PixelFormat::NATIVE
        };
        for pf in [colour_map, bpp24, shift_out, too_wide, big_shift] {
            assert!(pf.validate().is_err(), "{pf:?}");
        }
    }

    #[test]
    fn conversion_to_each_layout() {
        let px = 0x00ff_8040;
        let mut out = Vec::new();
        let conv = |pf: PixelFormat, out: &mut Vec<u8>| {
            out.clear();
            if let Ok(c) = PixelConverter::new(&pf) {
                c.convert(&[px], out);
            }
        };
        conv(PixelFormat::NATIVE, &mut out);
        assert_eq!(out, [0x40, 0x80, 0xff, 0x00]);
        conv(
            PixelFormat {
                big_endian: true,
                ..PixelFormat::NATIVE
            },
            &mut out,
        );
        assert_eq!(out, [0x00, 0xff, 0x80, 0x40]);
        // r 31, g round(128*63/255) = 32, b round(64*31/255) = 8 -> 0xfc08.
        conv(PixelFormat::RGB565_BE, &mut out);
        assert_eq!(out, [0xfc, 0x08]);
        conv(
            PixelFormat {
                big_endian: false,
                ..PixelFormat::RGB565_BE
            },
            &mut out,
        );
        assert_eq!(out, [0x08, 0xfc]);
        // b round(64*3/255) = 1 <<6, g round(128*7/255) = 4 <<3, r 7.
        conv(PixelFormat::BGR233, &mut out);
        assert_eq!(out, [0x40 | 0x20 | 0x07]);
    }

    #[test]
    fn decode_pixel_inverts_full_depth_formats() {
        for pf in [
            PixelFormat::NATIVE,
            PixelFormat {
                big_endian: true,
                ..PixelFormat::NATIVE
            },
        ] {
            let mut out = Vec::new();
            if let Ok(c) = PixelConverter::new(&pf) {
                c.convert(&[0x0012_3456], &mut out);
            }
            assert_eq!(pf.decode_pixel(&out), Some(0x0012_3456));
        }
        assert_eq!(
            PixelFormat::RGB565_BE.decode_pixel(&[0xf8, 0x00]),
            Some(0x00ff_0000)
        );
        assert_eq!(PixelFormat::NATIVE.decode_pixel(&[1, 2]), None);
    }
}
