//! Rectangles in framebuffer coordinates.
//!
//! Owns [`Rect`], the u16 x/y/width/height quadruple used by update requests,
//! update rectangles and dirty-region tracking, with overflow-free geometry
//! (intersection, bounding union, containment), and [`Screen`], the multi-head
//! layout entry built on it.

/// A rectangle; `x + width` may exceed `u16::MAX` on the wire, so all geometry is
/// done in u32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    pub const fn new(x: u16, y: u16, width: u16, height: u16) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// A rectangle at the origin covering a `width` x `height` framebuffer.
    pub const fn full(width: u16, height: u16) -> Self {
        Self::new(0, 0, width, height)
    }

    pub const fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// Number of pixels.
    pub const fn area(&self) -> u64 {
        self.width as u64 * self.height as u64
    }

    fn right(&self) -> u32 {
        u32::from(self.x) + u32::from(self.width)
    }

    fn bottom(&self) -> u32 {
        u32::from(self.y) + u32::from(self.height)
    }

    /// The common part, or `None` when it is empty.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let x = self.x.max(other.x);
        let y = self.y.max(other.y);
        let right = self.right().min(other.right());
        let bottom = self.bottom().min(other.bottom());
        let width = u16::try_from(right.checked_sub(u32::from(x))?).ok()?;
        let height = u16::try_from(bottom.checked_sub(u32::from(y))?).ok()?;
        let r = Rect::new(x, y, width, height);
        (!r.is_empty()).then_some(r)
    }

    /// The smallest rectangle covering both (an empty one contributes nothing).
    /// Saturates at `u16::MAX` in width and height.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let width = self.right().max(other.right()) - u32::from(x);
        let height = self.bottom().max(other.bottom()) - u32::from(y);
        Rect::new(
            x,
            y,
            u16::try_from(width).unwrap_or(u16::MAX),
            u16::try_from(height).unwrap_or(u16::MAX),
        )
    }

    /// Whether `other` lies entirely inside `self` (an empty `other` always does).
    pub fn contains(&self, other: &Rect) -> bool {
        other.is_empty()
            || (other.x >= self.x
                && other.y >= self.y
                && other.right() <= self.right()
                && other.bottom() <= self.bottom())
    }
}

/// One screen of a multi-head layout (SetDesktopSize and the ExtendedDesktopSize
/// pseudo-rectangle): 16 bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Screen {
    pub id: u32,
    pub rect: Rect,
    pub flags: u32,
}

impl Screen {
    pub const LEN: usize = 16;

    pub(crate) fn read(r: &mut super::wire::Reader<'_>) -> Option<Self> {
        Some(Self {
            id: r.u32()?,
            rect: Rect::new(r.u16()?, r.u16()?, r.u16()?, r.u16()?),
            flags: r.u32()?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        use super::wire::{put_u16, put_u32};
        put_u32(out, self.id);
        for v in [self.rect.x, self.rect.y, self.rect.width, self.rect.height] {
            put_u16(out, v);
        }
        put_u32(out, self.flags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersect_and_union() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 10, 10);
        assert_eq!(a.intersect(&b), Some(Rect::new(5, 5, 5, 5)));
        assert_eq!(a.union(&b), Rect::new(0, 0, 15, 15));
        assert_eq!(a.intersect(&Rect::new(10, 0, 5, 5)), None);
        assert_eq!(a.union(&Rect::default()), a);
        assert!(a.union(&b).contains(&a));
        assert!(!a.contains(&b));
    }

    #[test]
    fn no_overflow_at_the_edges() {
        let edge = Rect::new(u16::MAX, u16::MAX, u16::MAX, u16::MAX);
        let full = Rect::full(640, 480);
        assert_eq!(full.intersect(&edge), None);
        assert_eq!(edge.intersect(&edge), Some(edge));
        assert_eq!(full.union(&edge), Rect::new(0, 0, u16::MAX, u16::MAX));
    }
}
