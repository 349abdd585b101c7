//! The test driver's synthetic guest screen.
//!
//! Owns a 640x480 picture of `0x00RRGGBB` pixels showing the guest's name in large
//! letters, its state ("running", "paused", ...) and an activity bar with a tick
//! counter that moves each time the owner calls [`FramebufferHandle::tick`] (the
//! daemon does so about once a second while the guest runs; a paused guest is not
//! ticked, so its screen stands still). It tracks what changed as a short history
//! of dirty rectangles per generation and announces every new generation on a
//! `watch` channel, so a server can wait for changes instead of polling. Text uses
//! the embedded 5x7 font below (printable ASCII; anything else is drawn as `?`).
//! It knows nothing of RFB beyond the [`Rect`] type.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use vmgate_rfb::Rect;

pub const WIDTH: u16 = 640;
pub const HEIGHT: u16 = 480;
/// The background colour, e.g. the pixel at (0, 0).
pub const BACKGROUND: u32 = 0x0020_2838;
const CAPTION_COLOUR: u32 = 0x0080_90a0;
const NAME_COLOUR: u32 = 0x00f0_f0f0;
const TRACK_COLOUR: u32 = 0x0038_4450;
const BLOCK_COLOUR: u32 = 0x0040_a0e0;

/// Band the state line is drawn in; redrawn whole by `set_state`.
const STATE_BAND: Rect = Rect::new(0, 230, WIDTH, 48);
/// Band the activity bar and counter are drawn in; redrawn whole by `tick`.
pub const TICK_BAND: Rect = Rect::new(0, 350, WIDTH, 72);
const TRACK: Rect = Rect::new(40, 356, 560, 16);
const BLOCK_WIDTH: u16 = 40;
const BLOCK_STEP: u16 = 20;
/// Horizontal margin kept free by the big text lines.
const MARGIN: u16 = 20;
/// How many dirty rectangles are remembered; older changes read as "everything".
const HISTORY: usize = 64;

/// The screen itself. Read it through [`FramebufferHandle::read`].
#[derive(Debug, Clone)]
pub struct Framebuffer {
    pixels: Vec<u32>,
    name: String,
    state: String,
    ticks: u64,
    generation: u64,
    /// `(generation, dirty)` for the last [`HISTORY`] changes, oldest first.
    history: VecDeque<(u64, Rect)>,
    /// Changes up to and including this generation are no longer in `history`.
    forgotten: u64,
}

impl Framebuffer {
    /// A fully drawn screen at generation 0.
    pub fn new(name: &str, state: &str) -> Self {
        let mut fb = Self {
            pixels: vec![BACKGROUND; usize::from(WIDTH) * usize::from(HEIGHT)],
            name: name.to_owned(),
            state: state.to_owned(),
            ticks: 0,
            generation: 0,
            history: VecDeque::with_capacity(HISTORY),
            forgotten: 0,
        };
        fb.draw_text_line(16, 16, 2, CAPTION_COLOUR, "vmgate test guest");
        fb.draw_centred(140, 6, NAME_COLOUR, name);
        fb.draw_state();
        fb.draw_activity();
        fb
    }

    pub fn width(&self) -> u16 {
        WIDTH
    }

    pub fn height(&self) -> u16 {
        HEIGHT
    }

    /// Row-major pixels, `width()` per row.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    pub fn pixel(&self, x: u16, y: u16) -> Option<u32> {
        let index = usize::from(y) * usize::from(WIDTH) + usize::from(x);
        (x < WIDTH)
            .then(|| self.pixels.get(index).copied())
            .flatten()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> &str {
        &self.state
    }

    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Bumped by every change; starts at 0.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The area changed after `generation` (bounding box of the dirty rectangles),
    /// `None` if nothing changed; the whole screen if the history no longer reaches
    /// back that far.
    pub fn changes_since(&self, generation: u64) -> Option<Rect> {
        if generation >= self.generation {
            return None;
        }
        if generation < self.forgotten {
            return Some(Rect::full(WIDTH, HEIGHT));
        }
        self.history
            .iter()
            .filter(|(g, _)| *g > generation)
            .map(|(_, r)| *r)
            .reduce(|a, b| a.union(&b))
    }

    fn set_state(&mut self, state: &str) -> Option<Rect> {
        if self.state == state {
            return None;
        }
        state.clone_into(&mut self.state);
        Some(self.draw_state())
    }

    fn tick(&mut self) -> Rect {
        self.ticks = self.ticks.wrapping_add(1);
        self.draw_activity()
    }

    fn record(&mut self, dirty: Rect) -> u64 {
        self.generation += 1;
        if self.history.len() == HISTORY
            && let Some((g, _)) = self.history.pop_front()
        {
            self.forgotten = g;
        }
        self.history.push_back((self.generation, dirty));
        self.generation
    }

    fn draw_state(&mut self) -> Rect {
        self.fill(STATE_BAND, BACKGROUND);
        let colour = match self.state.as_str() {
            "running" => 0x0040_c060,
            "paused" => 0x00e0_a020,
            _ => 0x00a0_a0a0,
        };
        let state = self.state.clone();
        self.draw_centred(STATE_BAND.y + 10, 4, colour, &state);
        STATE_BAND
    }

    fn draw_activity(&mut self) -> Rect {
        self.fill(TICK_BAND, BACKGROUND);
        self.fill(TRACK, TRACK_COLOUR);
        let positions = u64::from((TRACK.width - BLOCK_WIDTH) / BLOCK_STEP + 1);
        // The remainder is below `positions`, itself a u16 value.
        let step = u16::try_from(self.ticks % positions).unwrap_or(0);
        let block_x = TRACK.x + step * BLOCK_STEP;
        let block = Rect::new(block_x, TRACK.y, BLOCK_WIDTH, TRACK.height);
        self.fill(block, BLOCK_COLOUR);
        let counter = format!("tick {}", self.ticks);
        self.draw_centred(TRACK.y + TRACK.height + 14, 3, CAPTION_COLOUR, &counter);
        TICK_BAND
    }

    /// Draws `text` centred on one line at the largest scale up to `max_scale` that
    /// fits between the margins, truncating it if even scale 1 is too wide.
    fn draw_centred(&mut self, y: u16, max_scale: u16, colour: u32, text: &str) {
        let room = WIDTH - 2 * MARGIN;
        let chars = text.chars().count();
        let scale = (1..=max_scale)
            .rev()
            .find(|&s| text_width(chars, s) <= usize::from(room))
            .unwrap_or(1);
        let fit = (usize::from(room) + 1) / (6 * usize::from(scale));
        let shown = chars.min(fit);
        let width = u16::try_from(text_width(shown, scale)).unwrap_or(room);
        let x = (WIDTH - width) / 2;
        let text: String = text.chars().take(shown).collect();
        self.draw_text_line(x, y, scale, colour, &text);
    }

    fn draw_text_line(&mut self, x: u16, y: u16, scale: u16, colour: u32, text: &str) {
        let advance = 6 * u32::from(scale);
        for (i, c) in (0u32..).zip(text.chars()) {
            let Some(cx) = u16::try_from(u32::from(x) + i * advance).ok() else {
                break;
            };
            self.draw_glyph(cx, y, scale, colour, glyph(c));
        }
    }

    fn draw_glyph(&mut self, x: u16, y: u16, scale: u16, colour: u32, rows: [u8; 7]) {
        for (row, bits) in (0u16..).zip(rows) {
            for col in 0..5u16 {
                if bits & (0x10 >> col) != 0 {
                    let px = x.saturating_add(col * scale);
                    let py = y.saturating_add(row * scale);
                    self.fill(Rect::new(px, py, scale, scale), colour);
                }
            }
        }
    }

    /// Fills `rect`, clipped to the screen.
    fn fill(&mut self, rect: Rect, colour: u32) {
        let Some(r) = rect.intersect(&Rect::full(WIDTH, HEIGHT)) else {
            return;
        };
        let stride = usize::from(WIDTH);
        for y in usize::from(r.y)..usize::from(r.y) + usize::from(r.height) {
            let start = y * stride + usize::from(r.x);
            if let Some(row) = self.pixels.get_mut(start..start + usize::from(r.width)) {
                row.fill(colour);
            }
        }
    }
}

/// Pixel width of `chars` glyphs at `scale` (5 columns plus 1 of spacing each, no
/// trailing spacing).
fn text_width(chars: usize, scale: u16) -> usize {
    (chars * 6).saturating_sub(1) * usize::from(scale)
}

/// A point-in-time copy of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub width: u16,
    pub height: u16,
    pub generation: u64,
    pub pixels: Vec<u32>,
}

/// A cheap, cloneable, thread-safe handle to one guest's screen.
#[derive(Debug, Clone)]
pub struct FramebufferHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    fb: RwLock<Framebuffer>,
    generation: watch::Sender<u64>,
}

impl FramebufferHandle {
    pub fn new(name: &str, state: &str) -> Self {
        let fb = Framebuffer::new(name, state);
        let (generation, _) = watch::channel(fb.generation());
        Self {
            shared: Arc::new(Shared {
                fb: RwLock::new(fb),
                generation,
            }),
        }
    }

    /// Redraws the state line; no change (and no new generation) if it is the same.
    pub fn set_state(&self, state: &str) {
        self.modify(|fb| fb.set_state(state));
    }

    /// Advances the activity bar and counter by one step.
    pub fn tick(&self) {
        self.modify(|fb| Some(fb.tick()));
    }

    /// Runs `f` with read access. Keep `f` short and never await inside it: this is
    /// a blocking lock shared with the drawing side.
    pub fn read<T>(&self, f: impl FnOnce(&Framebuffer) -> T) -> T {
        // Drawing cannot leave the picture half-valid in a way that matters, so a
        // poisoned lock (a panic elsewhere) still gives a usable screen.
        let fb = self.shared.fb.read();
        f(&fb.unwrap_or_else(PoisonError::into_inner))
    }

    pub fn snapshot(&self) -> Snapshot {
        self.read(|fb| Snapshot {
            width: fb.width(),
            height: fb.height(),
            generation: fb.generation(),
            pixels: fb.pixels().to_vec(),
        })
    }

    pub fn generation(&self) -> u64 {
        self.read(Framebuffer::generation)
    }

    pub fn name(&self) -> String {
        self.read(|fb| fb.name().to_owned())
    }

    /// A receiver that sees each new generation number. Mark the current value seen
    /// (`borrow_and_update`) before reading the screen, then `changed().await`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    fn modify(&self, f: impl FnOnce(&mut Framebuffer) -> Option<Rect>) {
        let generation = {
            let fb = self.shared.fb.write();
            let mut fb = fb.unwrap_or_else(PoisonError::into_inner);
            match f(&mut fb) {
                Some(dirty) => fb.record(dirty),
                None => return,
            }
        };
        // Announced after the lock is released, so a woken reader finds it free.
        self.shared.generation.send_replace(generation);
    }
}

/// The glyph rows for `c`, top to bottom, 5 bits each (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    let printable = if matches!(c, ' '..='~') { c } else { '?' };
    FONT.get(printable as usize - 0x20)
        .copied()
        .unwrap_or_default()
}

/// The font, built at compile time from the art below.
static FONT: [[u8; 7]; 95] = build_font();

/// Turns the art into bit rows; any mistake in the art fails the build.
// Compile-time only: an index out of range is a build error, not a runtime panic.
#[allow(clippy::indexing_slicing)]
const fn build_font() -> [[u8; 7]; 95] {
    let mut table = [[0u8; 7]; 95];
    let mut filled = [false; 95];
    let mut i = 0;
    while i < FONT_ART.len() {
        let (ch, art) = FONT_ART[i];
        let slot = (ch - b' ') as usize;
        let art = art.as_bytes();
        assert!(
            art.len() == 41,
            "a glyph is 7 rows of 5 separated by spaces"
        );
        let mut row = 0;
        while row < 7 {
            let mut bits = 0u8;
            let mut col = 0;
            while col < 5 {
                bits = (bits << 1)
                    | match art[row * 6 + col] {
                        b'#' => 1,
                        b'.' => 0,
                        _ => panic!("glyph art uses only '#' and '.'"),
                    };
                col += 1;
            }
            table[slot][row] = bits;
            row += 1;
        }
        // 95 entries, each in range and none twice: every glyph is defined.
        assert!(!filled[slot], "a glyph is defined twice");
        filled[slot] = true;
        i += 1;
    }
    table
}

/// 5x7 glyphs for printable ASCII, rows top to bottom.
#[rustfmt::skip]
const FONT_ART: [(u8, &str); 95] = [
    (b' ', "..... ..... ..... ..... ..... ..... ....."),
    (b'!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."),
    (b'"', ".#.#. .#.#. ..... ..... ..... ..... ....."),
    (b'#', ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#."),
    (b'$', "..#.. .#### #.#.. .###. ..#.# ####. ..#.."),
    (b'%', "##... ##..# ...#. ..#.. .#... #..## ...##"),
    (b'&', ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#"),
    (b'\'', "..#.. ..#.. ..... ..... ..... ..... ....."),
    (b'(', "...#. ..#.. .#... .#... .#... ..#.. ...#."),
    (b')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
    (b'*', "..... ..#.. #.#.# .###. #.#.# ..#.. ....."),
    (b'+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."),
    (b',', "..... ..... ..... ..... .##.. ..#.. .#..."),
    (b'-', "..... ..... ..... ##### ..... ..... ....."),
    (b'.', "..... ..... ..... ..... ..... .##.. .##.."),
    (b'/', "..... ....# ...#. ..#.. .#... #.... ....."),
    (b'0', ".###. #...# #..## #.#.# ##..# #...# .###."),
    (b'1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
    (b'2', ".###. #...# ....# ...#. ..#.. .#... #####"),
    (b'3', "##### ...#. ..#.. ...#. ....# #...# .###."),
    (b'4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."),
    (b'5', "##### #.... ####. ....# ....# #...# .###."),
    (b'6', "..##. .#... #.... ####. #...# #...# .###."),
    (b'7', "##### ....# ...#. ..#.. .#... .#... .#..."),
    (b'8', ".###. #...# #...# .###. #...# #...# .###."),
    (b'9', ".###. #...# #...# .#### ....# ...#. .##.."),
    (b':', "..... .##.. .##.. ..... .##.. .##.. ....."),
    (b';', "..... .##.. .##.. ..... .##.. ..#.. .#..."),
    (b'<', "...#. ..#.. .#... #.... .#... ..#.. ...#."),
    (b'=', "..... ..... ##### ..... ##### ..... ....."),
    (b'>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."),
    (b'?', ".###. #...# ....# ...#. ..#.. ..... ..#.."),
    (b'@', ".###. #...# ....# .##.# #.#.# #.#.# .###."),
    (b'A', ".###. #...# #...# ##### #...# #...# #...#"),
    (b'B', "####. #...# #...# ####. #...# #...# ####."),
    (b'C', ".###. #...# #.... #.... #.... #...# .###."),
    (b'D', "###.. #..#. #...# #...# #...# #..#. ###.."),
    (b'E', "##### #.... #.... ####. #.... #.... #####"),
    (b'F', "##### #.... #.... ####. #.... #.... #...."),
    (b'G', ".###. #...# #.... #.### #...# #...# .####"),
    (b'H', "#...# #...# #...# ##### #...# #...# #...#"),
    (b'I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    (b'J', "..### ...#. ...#. ...#. ...#. #..#. .##.."),
    (b'K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"),
    (b'L', "#.... #.... #.... #.... #.... #.... #####"),
    (b'M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"),
    (b'N', "#...# #...# ##..# #.#.# #..## #...# #...#"),
    (b'O', ".###. #...# #...# #...# #...# #...# .###."),
    (b'P', "####. #...# #...# ####. #.... #.... #...."),
    (b'Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"),
    (b'R', "####. #...# #...# ####. #.#.. #..#. #...#"),
    (b'S', ".#### #.... #.... .###. ....# ....# ####."),
    (b'T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    (b'U', "#...# #...# #...# #...# #...# #...# .###."),
    (b'V', "#...# #...# #...# #...# #...# .#.#. ..#.."),
    (b'W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."),
    (b'X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
    (b'Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."),
    (b'Z', "##### ....# ...#. ..#.. .#... #.... #####"),
    (b'[', ".###. .#... .#... .#... .#... .#... .###."),
    (b'\\', "..... #.... .#... ..#.. ...#. ....# ....."),
    (b']', ".###. ...#. ...#. ...#. ...#. ...#. .###."),
    (b'^', "..#.. .#.#. #...# ..... ..... ..... ....."),
    (b'_', "..... ..... ..... ..... ..... ..... #####"),
    (b'`', ".#... ..#.. ..... ..... ..... ..... ....."),
    (b'a', "..... ..... .###. ....# .#### #...# .####"),
    (b'b', "#.... #.... #.##. ##..# #...# #...# ####."),
    (b'c', "..... ..... .###. #.... #.... #...# .###."),
    (b'd', "....# ....# .##.# #..## #...# #...# .####"),
    (b'e', "..... ..... .###. #...# ##### #.... .###."),
    (b'f', "..##. .#..# .#... ###.. .#... .#... .#..."),
    (b'g', "..... ..... .#### #...# .#### ....# .###."),
    (b'h', "#.... #.... #.##. ##..# #...# #...# #...#"),
    (b'i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."),
    (b'j', "...#. ..... ..##. ...#. ...#. #..#. .##.."),
    (b'k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."),
    (b'l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    (b'm', "..... ..... ##.#. #.#.# #.#.# #...# #...#"),
    (b'n', "..... ..... #.##. ##..# #...# #...# #...#"),
    (b'o', "..... ..... .###. #...# #...# #...# .###."),
    (b'p', "..... ..... ####. #...# ####. #.... #...."),
    (b'q', "..... ..... .##.# #..## .#### ....# ....#"),
    (b'r', "..... ..... #.##. ##..# #.... #.... #...."),
    (b's', "..... ..... .###. #.... .###. ....# ####."),
    (b't', ".#... .#... ###.. .#... .#... .#..# ..##."),
    (b'u', "..... ..... #...# #...# #...# #..## .##.#"),
    (b'v', "..... ..... #...# #...# #...# .#.#. ..#.."),
    (b'w', "..... ..... #...# #...# #.#.# #.#.# .#.#."),
    (b'x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"),
    (b'y', "..... ..... #...# #...# .#### ....# .###."),
    (b'z', "..... ..... ##### ...#. ..#.. .#... #####"),
    (b'{', "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#."),
    (b'|', "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    (b'}', ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#..."),
    (b'~', "..... ..... .#... #.#.# ...#. ..... ....."),
];

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // Tests index data of known length.
mod tests {
    use super::*;

    /// The pixels of one band, to compare drawings.
    fn band(fb: &Framebuffer, r: Rect) -> Vec<u32> {
        (r.y..r.y + r.height)
            .flat_map(|y| (r.x..r.x + r.width).map(move |x| (x, y)))
            .filter_map(|(x, y)| fb.pixel(x, y))
            .collect()
    }

    fn ink(fb: &Framebuffer, r: Rect) -> usize {
        band(fb, r).iter().filter(|&&p| p != BACKGROUND).count()
    }

    #[test]
    fn draws_background_name_state_and_activity() {
        let fb = Framebuffer::new("web-01", "running");
        assert_eq!(fb.pixel(0, 0), Some(BACKGROUND));
        assert_eq!(fb.pixel(WIDTH - 1, HEIGHT - 1), Some(BACKGROUND));
        assert_eq!(fb.pixel(WIDTH, 0), None);
        assert!(ink(&fb, Rect::new(0, 140, WIDTH, 42)) > 500, "name");
        assert!(ink(&fb, STATE_BAND) > 200, "state");
        assert!(
            band(&fb, STATE_BAND).contains(&0x0040_c060),
            "running is green"
        );
        assert!(ink(&fb, TICK_BAND) > 1000, "activity");
        assert_eq!(fb.generation(), 0);
    }

    #[test]
    fn glyphs() {
        assert_eq!(glyph('A'), [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11]);
        assert_eq!(glyph('é'), glyph('?'));
        assert_eq!(glyph('\n'), glyph('?'));
        assert_eq!(glyph(' '), [0; 7]);
        let (a, b) = (
            Framebuffer::new("caf\u{e9}", "up"),
            Framebuffer::new("caf?", "up"),
        );
        assert_eq!(a.pixels(), b.pixels());
        // Every printable character but space has ink, and no two look the same.
        let all: Vec<[u8; 7]> = (0x21u8..0x7f).map(|b| glyph(char::from(b))).collect();
        assert!(all.iter().all(|g| g.iter().any(|&r| r != 0)));
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "two glyphs look the same");
    }

    #[test]
    fn long_names_shrink_and_truncate() {
        let long = "x".repeat(300);
        let fb = Framebuffer::new(&long, "running");
        // Inked up to the margins, but not beyond them.
        let (left, right) = (
            Rect::new(0, 140, MARGIN - 1, 7),
            Rect::new(WIDTH - MARGIN + 1, 140, 19, 7),
        );
        assert!(ink(&fb, Rect::new(0, 140, WIDTH, 7)) > 0);
        assert_eq!((ink(&fb, left), ink(&fb, right)), (0, 0));
    }

    #[test]
    fn tick_changes_only_the_tick_band() {
        let h = FramebufferHandle::new("g", "running");
        let (before, _) = (h.snapshot(), h.tick());
        let after = h.snapshot();
        assert_eq!(after.generation, before.generation + 1);
        // The band spans the full width, so it is one run of rows in memory.
        let w = usize::from(WIDTH);
        let (top, end) = (
            usize::from(TICK_BAND.y) * w,
            usize::from(TICK_BAND.y + TICK_BAND.height) * w,
        );
        assert_eq!(before.pixels[..top], after.pixels[..top]);
        assert_eq!(before.pixels[end..], after.pixels[end..]);
        assert_ne!(before.pixels[top..end], after.pixels[top..end]);
        assert_eq!(h.read(|fb| fb.changes_since(0)), Some(TICK_BAND));
        assert_eq!(h.read(|fb| fb.changes_since(1)), None);
    }

    #[test]
    fn set_state_is_a_change_only_when_different() {
        let h = FramebufferHandle::new("g", "running");
        h.set_state("running");
        assert_eq!(h.generation(), 0);
        h.set_state("paused");
        assert_eq!(h.generation(), 1);
        assert_eq!(h.read(|fb| fb.state().to_owned()), "paused");
        assert_eq!(h.read(|fb| fb.changes_since(0)), Some(STATE_BAND));
        h.tick();
        assert_eq!(
            h.read(|fb| fb.changes_since(0)),
            Some(STATE_BAND.union(&TICK_BAND))
        );
    }

    #[test]
    fn old_history_reads_as_the_whole_screen() {
        let h = FramebufferHandle::new("g", "running");
        for _ in 0..HISTORY + 2 {
            h.tick();
        }
        assert_eq!(
            h.read(|fb| fb.changes_since(0)),
            Some(Rect::full(WIDTH, HEIGHT))
        );
        assert_eq!(h.read(|fb| fb.changes_since(3)), Some(TICK_BAND));
    }

    #[tokio::test]
    async fn changes_are_announced() {
        let h = FramebufferHandle::new("g", "running");
        let mut rx = h.subscribe();
        rx.borrow_and_update();
        let h2 = h.clone();
        tokio::spawn(async move { h2.tick() });
        assert!(rx.changed().await.is_ok());
        assert_eq!(*rx.borrow_and_update(), 1);
    }
}
