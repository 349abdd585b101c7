//! The initialisation messages (RFC 6143 §7.3): ClientInit and ServerInit.
//!
//! Owns their wire forms. The desktop name is kept as raw bytes so that a relay can
//! pass it on unchanged (RFC 6143 leaves its encoding undefined and recommends
//! UTF-8); its length is bounded by [`MAX_NAME_LEN`] when decoding.

use super::RfbError;
use super::pixel::{PIXEL_FORMAT_LEN, PixelFormat};
use super::wire::{Reader, check_len, need, put_u16, put_u32};

/// Longest desktop name accepted in a ServerInit.
pub const MAX_NAME_LEN: usize = 1024 * 1024;

/// ClientInit: one byte, the shared flag (non-zero = share the desktop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInit {
    pub shared: bool,
}

impl ClientInit {
    pub const LEN: usize = 1;

    pub fn parse(b: [u8; Self::LEN]) -> Self {
        let [shared] = b;
        Self {
            shared: shared != 0,
        }
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        [u8::from(self.shared)]
    }
}

/// ServerInit: framebuffer size, the server's pixel format and the desktop name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub pixel_format: PixelFormat,
    /// Raw bytes as sent; see [`ServerInit::name_lossy`].
    pub name: Vec<u8>,
}

impl ServerInit {
    /// The name for display, with invalid UTF-8 replaced.
    pub fn name_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// The wire form; fails if the name is over [`MAX_NAME_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, RfbError> {
        let len = check_len("desktop name", self.name.len() as u64, MAX_NAME_LEN)?;
        let mut out = Vec::with_capacity(24 + len);
        put_u16(&mut out, self.width);
        put_u16(&mut out, self.height);
        out.extend_from_slice(&self.pixel_format.encode());
        put_u32(&mut out, len as u32);
        out.extend_from_slice(&self.name);
        Ok(out)
    }

    /// Incremental decode; the pixel format is not validated (a server may use a
    /// colour map). A name over [`MAX_NAME_LEN`] is an error before any allocation.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, RfbError> {
        let mut r = Reader::new(buf);
        let width = need!(r.u16());
        let height = need!(r.u16());
        let pixel_format = PixelFormat::parse(&need!(r.array::<PIXEL_FORMAT_LEN>()));
        let len = check_len("desktop name", u64::from(need!(r.u32())), MAX_NAME_LEN)?;
        let name = need!(r.bytes(len)).to_vec();
        let init = Self {
            width,
            height,
            pixel_format,
            name,
        };
        Ok(Some((init, r.position())))
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // Tests index data of known length.
mod tests {
    use super::*;

    #[test]
    fn client_init_bytes() {
        assert_eq!(ClientInit { shared: true }.encode(), [1]);
        assert_eq!(ClientInit { shared: false }.encode(), [0]);
        assert!(ClientInit::parse([0x80]).shared);
    }

    #[test]
    fn server_init_bytes() {
        let bytes = [
            0x02, 0x80, 0x01, 0xe0, // 640 x 480
            32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, // native format
            0, 0, 0, 4, b'd', b'e', b'm', b'o',
        ];
        let init = ServerInit {
            width: 640,
            height: 480,
            pixel_format: PixelFormat::NATIVE,
            name: b"demo".to_vec(),
        };
        assert_eq!(init.encode().ok().as_deref(), Some(&bytes[..]));
        assert_eq!(
            ServerInit::decode(&bytes).ok().flatten(),
            Some((init, bytes.len()))
        );
        for cut in 0..bytes.len() {
            assert_eq!(ServerInit::decode(&bytes[..cut]).ok(), Some(None));
        }
    }

    #[test]
    fn server_init_name_is_bounded() {
        let mut bytes = vec![0u8; 20];
        bytes.extend_from_slice(&0x0010_0001u32.to_be_bytes());
        assert!(matches!(
            ServerInit::decode(&bytes),
            Err(RfbError::TooLong {
                len: 0x0010_0001,
                ..
            })
        ));
    }
}
