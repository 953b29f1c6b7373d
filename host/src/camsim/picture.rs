//! Raw pictures: the generated test pattern and the machine-readable
//! wall-clock stamp (rendering and decoding).
//!
//! Stamp format: 50 blocks of 16×16 luma pixels laid out left to right from the
//! top-left corner, wrapping to the next 16-pixel row when the picture is
//! narrower than 50 blocks (800 pixels). Block 0 is white and block 1 black (a
//! start marker), blocks 2..50 hold the 48 bits of the milliseconds since the
//! UNIX epoch, MSB first, white (255) for 1 and black (0) for 0. Blocks are
//! aligned to 16×16 macroblocks and each is a flat colour, so H.264 codes them
//! almost exactly even at modest bitrates, and a decoder reads each block from
//! the average of its central 8×8 pixels, away from deblocking at the edges.

use openh264::formats::YUVSlices;

const BLOCK: usize = 16;
const MARKER_BLOCKS: usize = 2;
const STAMP_BITS: usize = 48;
const STAMP_BLOCKS: usize = MARKER_BLOCKS + STAMP_BITS;

/// A planar I420 picture with tightly packed rows. Width and height are even.
#[derive(Debug, Clone)]
pub(crate) struct Picture {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) y: Vec<u8>,
    pub(crate) u: Vec<u8>,
    pub(crate) v: Vec<u8>,
}

impl Picture {
    /// `width` and `height` must be even (validated by the caller's settings).
    pub(crate) fn new(width: usize, height: usize) -> Picture {
        let chroma = (width / 2) * (height / 2);
        Picture {
            width,
            height,
            y: vec![16; width * height],
            u: vec![128; chroma],
            v: vec![128; chroma],
        }
    }

    /// Borrows the planes in the form the openh264 encoder takes.
    pub(crate) fn as_yuv(&self) -> YUVSlices<'_> {
        YUVSlices::new(
            (&self.y, &self.u, &self.v),
            (self.width, self.height),
            (self.width, self.width / 2, self.width / 2),
        )
    }

    /// Fills a rectangle (clipped to the picture) with one colour. Chroma is
    /// written for the 2×2-subsampled area covering the even-aligned rectangle.
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, (cy, cu, cv): (u8, u8, u8)) {
        let x1 = (x + w).min(self.width);
        let y1 = (y + h).min(self.height);
        if x >= x1 || y >= y1 {
            return;
        }
        for row in y..y1 {
            self.y[row * self.width + x..row * self.width + x1].fill(cy);
        }
        let cw = self.width / 2;
        for row in y / 2..y1.div_ceil(2).min(self.height / 2) {
            let (a, b) = (row * cw + x / 2, row * cw + x1.div_ceil(2).min(cw));
            self.u[a..b].fill(cu);
            self.v[a..b].fill(cv);
        }
    }
}

/// Renders frame `n` of the moving test pattern: a static colour gradient, a
/// box crossing the picture once every `period` frames, and a small binary
/// frame counter in the bottom-right corner so every frame differs (motion
/// detection sees the box; decoders see per-frame changes).
pub(crate) fn render_pattern(pic: &mut Picture, n: u64, period: u64) {
    let (w, h) = (pic.width, pic.height);
    for row in 0..h {
        let base = 40 + (row * 48 / h.max(1)) as u32;
        let line = &mut pic.y[row * w..(row + 1) * w];
        for (x, px) in line.iter_mut().enumerate() {
            *px = (base + (x * 120 / w.max(1)) as u32) as u8;
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    for row in 0..ch {
        let v = (170 - row * 60 / ch.max(1)) as u8;
        for x in 0..cw {
            pic.u[row * cw + x] = (100 + x * 60 / cw.max(1)) as u8;
            pic.v[row * cw + x] = v;
        }
    }

    // Sensor-like grain that changes every frame, so the encoder has real work and
    // the stream reaches a camera-like bitrate (a flat pattern codes to ~90 kbit/s).
    let mut seed = (n as u32).wrapping_mul(0x9e37_79b9) | 1;
    for px in pic.y.iter_mut() {
        // xorshift32: cheap, and the loop is encoded once at start-up.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *px = px.saturating_add((seed & 7) as u8);
    }

    // The box travels left to right once per period, in the lower half of the
    // picture so it never touches the stamp rows at the top.
    let size = (h / 4).max(8) & !1;
    let period = period.max(1);
    let travel = w.saturating_sub(size) as u64;
    let x = ((n % period) * travel / period) as usize & !1;
    let y = (h / 2 + h / 8).min(h.saturating_sub(size)) & !1;
    pic.fill(x, y, size, size, (225, 60, 190));

    // Binary frame counter: 8 cells of 8×8, white for 1.
    let cell = 8;
    if w >= 8 * cell && h >= cell {
        let y0 = (h - cell) & !1;
        for bit in 0..8 {
            let on = (n >> (7 - bit)) & 1 == 1;
            let x0 = w - (8 - bit) * cell;
            let colour = if on { (235, 128, 128) } else { (16, 128, 128) };
            pic.fill(x0, y0, cell, cell, colour);
        }
    }
}

/// Blocks per stamp row, or `None` if the stamp does not fit the picture.
fn stamp_layout(width: usize, height: usize) -> Option<usize> {
    let per_row = width / BLOCK;
    if per_row == 0 {
        return None;
    }
    let rows = STAMP_BLOCKS.div_ceil(per_row);
    (rows * BLOCK <= height).then_some(per_row)
}

/// Whether a `width`×`height` picture can carry a stamp.
pub(crate) fn stamp_fits(width: u32, height: u32) -> bool {
    stamp_layout(width as usize, height as usize).is_some()
}

fn block_origin(i: usize, per_row: usize) -> (usize, usize) {
    ((i % per_row) * BLOCK, (i / per_row) * BLOCK)
}

/// Draws the stamp for `ms` (milliseconds since the UNIX epoch; only the low
/// 48 bits are kept, enough until the year 10889). Returns false if the
/// picture is too small to carry it.
pub(crate) fn render_stamp(pic: &mut Picture, ms: u64) -> bool {
    let Some(per_row) = stamp_layout(pic.width, pic.height) else {
        return false;
    };
    for i in 0..STAMP_BLOCKS {
        let on = match i {
            0 => true,
            1 => false,
            _ => (ms >> (STAMP_BITS - 1 - (i - MARKER_BLOCKS))) & 1 == 1,
        };
        let (x, y) = block_origin(i, per_row);
        let luma = if on { 255 } else { 0 };
        pic.fill(x, y, BLOCK, BLOCK, (luma, 128, 128));
    }
    true
}

/// Decode a wall-clock stamp (ms since UNIX epoch) from a decoded luma plane of a stamped frame, if present.
///
/// `luma` holds `height` rows of `stride` bytes (the last row may be short of
/// the full stride). Each block is read as the average of its central 8×8
/// pixels thresholded at 128. Returns `None` when the picture cannot carry a
/// stamp, the buffer is too small, or the start marker (a clearly white block
/// followed by a clearly black one) is missing.
pub fn decode_stamp(luma: &[u8], stride: usize, width: u32, height: u32) -> Option<u64> {
    let (width, height) = (usize::try_from(width).ok()?, usize::try_from(height).ok()?);
    if stride < width {
        return None;
    }
    let per_row = stamp_layout(width, height)?;
    let block_mean = |i: usize| -> Option<u32> {
        let (x, y) = block_origin(i, per_row);
        let mut sum = 0u32;
        for row in y + 4..y + 12 {
            let start = row.checked_mul(stride)?.checked_add(x + 4)?;
            let px = luma.get(start..start + 8)?;
            sum += px.iter().map(|&p| u32::from(p)).sum::<u32>();
        }
        Some(sum / 64)
    };
    // The marker must be unambiguous, which rejects most unstamped pictures.
    if block_mean(0)? < 192 || block_mean(1)? > 64 {
        return None;
    }
    let mut ms = 0u64;
    for i in MARKER_BLOCKS..STAMP_BLOCKS {
        ms = (ms << 1) | u64::from(block_mean(i)? >= 128);
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::OpenH264API;
    use openh264::decoder::{Decoder, DecoderConfig};
    use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, RateControlMode};
    use openh264::formats::YUVSource;

    const SAMPLE_MS: u64 = 1_765_432_109_876;

    #[test]
    fn stamp_round_trips_on_raw_pictures() {
        for (w, h) in [(640, 360), (320, 180), (800, 16), (1920, 1080), (32, 400)] {
            let mut pic = Picture::new(w, h);
            render_pattern(&mut pic, 7, 30);
            assert!(render_stamp(&mut pic, SAMPLE_MS), "{w}x{h}");
            assert_eq!(
                decode_stamp(&pic.y, w, w as u32, h as u32),
                Some(SAMPLE_MS),
                "{w}x{h}"
            );
        }
        // Larger stride than width.
        let mut pic = Picture::new(320, 180);
        render_stamp(&mut pic, 42);
        let stride = 352;
        let mut padded = vec![0u8; stride * 180];
        for row in 0..180 {
            padded[row * stride..row * stride + 320].copy_from_slice(&pic.y[row * 320..][..320]);
        }
        assert_eq!(decode_stamp(&padded, stride, 320, 180), Some(42));
    }

    #[test]
    fn decode_stamp_rejects_unstamped_and_bad_input() {
        let mut pic = Picture::new(640, 360);
        render_pattern(&mut pic, 3, 30);
        assert_eq!(decode_stamp(&pic.y, 640, 640, 360), None);
        assert_eq!(decode_stamp(&[], 640, 640, 360), None);
        assert_eq!(decode_stamp(&pic.y[..1000], 640, 640, 360), None);
        assert_eq!(decode_stamp(&pic.y, 100, 640, 360), None);
        assert_eq!(decode_stamp(&pic.y, 640, 16, 360), None, "too narrow");
        assert_eq!(decode_stamp(&pic.y, 640, 640, 16), None, "too short");
        assert!(!render_stamp(&mut Picture::new(16, 16), 1));
        assert!(!stamp_fits(640, 16));
        assert!(stamp_fits(640, 32));
    }

    fn encoder(width: u32, height: u32, kbps: u32) -> Encoder {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(kbps * 1000))
            .max_frame_rate(FrameRate::from_hz(15.0))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(false);
        let _ = (width, height);
        Encoder::with_api_config(OpenH264API::from_source(), config).unwrap()
    }

    /// The stamp must survive real compression: encode a sequence of stamped
    /// pattern frames (IDR then P frames, with the stamp changing every frame),
    /// decode them with openh264 and read every stamp back exactly.
    #[test]
    fn stamp_survives_openh264_round_trip() {
        for (w, h, kbps) in [(640usize, 360usize, 500u32), (320, 180, 150)] {
            let mut enc = encoder(w as u32, h as u32, kbps);
            let mut dec =
                Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new()).unwrap();
            let mut pic = Picture::new(w, h);
            let mut decoded = 0;
            for n in 0..20u64 {
                // Vary the stamp a lot: different bits flip between frames.
                let ms = SAMPLE_MS + n * 66 + (n % 3) * 0x5555_5555;
                render_pattern(&mut pic, n, 30);
                render_stamp(&mut pic, ms);
                let bitstream = enc.encode(&pic.as_yuv()).unwrap().to_vec();
                if let Some(yuv) = dec.decode(&bitstream).unwrap() {
                    let (dw, dh) = yuv.dimensions();
                    assert_eq!((dw, dh), (w, h));
                    let stride = yuv.strides().0;
                    let got = decode_stamp(yuv.y(), stride, dw as u32, dh as u32);
                    assert_eq!(got, Some(ms), "{w}x{h} frame {n}");
                    decoded += 1;
                }
            }
            assert!(decoded >= 18, "decoded only {decoded} frames");
        }
    }
}
