//! Big-endian byte cursor and writers shared by the RFB codecs.
//!
//! Owns the only code that touches raw offsets: every decoder reads through
//! [`Reader`], whose accessors return `None` past the end of the input instead of
//! panicking, and the [`need!`] macro turns that `None` into the incremental
//! decoders' `Ok(None)` ("more bytes needed"). It must not allocate: callers copy
//! out a slice only after they have checked its length against their bound.

/// Unwraps an `Option` from a [`Reader`], or returns `Ok(None)` from the enclosing
/// decoder because the message is not complete yet.
macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}
pub(crate) use need;

/// A forward-only cursor over a byte slice; all integers are big-endian, as RFB
/// mandates.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next `n` bytes, without copying, or `None` when fewer are left.
    /// Everything not consumed yet, without consuming it.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }
}

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_padding(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

/// Checks a length read off the wire (or about to be written) against its bound.
pub(crate) fn check_len(
    what: &'static str,
    len: u64,
    max: usize,
) -> Result<usize, super::RfbError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(super::RfbError::TooLong { what, len, max }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_at_end_without_consuming() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.position(), 2);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.bytes(usize::MAX), None);
    }
}
