//! Motion detection by frame differencing on small grey frames.
//!
//! Each frame is compared with the previous one, 160 pixels wide by default: a
//! pixel "moved" when its luma changed by more than `threshold`. The picture is cut
//! into a 16×9 grid; cells with enough moved pixels are active, and neighbouring
//! active cells join into regions, reported as detections with normalized boxes.
//! An event is emitted when the moved area exceeds `min_area`, at most once per
//! `cooldown_ms` while motion lasts.

use vigil_plugin_sdk::{
    AnalyticsPlugin, BBox, Detection, Error, Frame, Manifest, NewEvent, PixelFormat, Result,
};

const GRID_W: usize = 16;
const GRID_H: usize = 9;

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Luma change (0–255) that counts as motion for a pixel.
    #[serde(default = "default_threshold")]
    pub threshold: u8,
    /// Fraction of the picture (0–1) that must move to raise an event.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    /// Minimum time between two events while motion goes on.
    #[serde(default = "default_cooldown")]
    pub cooldown_ms: u64,
    /// Analysis width in pixels.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Fraction of a grid cell that must move for the cell to count.
    #[serde(default = "default_cell")]
    pub cell_fraction: f32,
    /// Compare grey (`gray8`, the default) or colour (`rgb8`: a pixel moved when
    /// any channel changed by more than `threshold`) pictures.
    #[serde(default)]
    pub pixel_format: Format,
}

/// The pixels the plugin compares.
#[derive(serde::Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Gray8,
    Rgb8,
}

impl Format {
    /// Bytes per pixel.
    pub fn bpp(self) -> usize {
        match self {
            Format::Gray8 => 1,
            Format::Rgb8 => 3,
        }
    }
}

fn default_threshold() -> u8 {
    25
}
fn default_min_area() -> f32 {
    0.005
}
fn default_cooldown() -> u64 {
    1000
}
fn default_width() -> u32 {
    160
}
fn default_cell() -> f32 {
    0.05
}

/// The plugin's state for one camera.
#[derive(Debug)]
pub struct Motion {
    cfg: Config,
    previous: Option<Vec<u8>>,
    size: (u32, u32),
    last_event_ms: Option<u64>,
}

/// What differencing two frames found.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// Fraction of pixels that moved.
    pub area: f32,
    pub regions: Vec<(BBox, f32)>,
}

/// 1 if `a` and `b` differ by more than `t`, else 0. (Measured: this form
/// vectorizes well natively and for WebAssembly SIMD; a saturating-subtraction
/// form did not.)
#[inline(always)]
fn moved(a: u8, b: u8, t: u8) -> u8 {
    u8::from(a.abs_diff(b) > t)
}

/// Adds 1 to `acc[x]` for every pixel `x` of a row that changed by more than
/// `t` (grey: one byte per pixel). Written as plain lanes of `u8` so the
/// compiler vectorizes it, natively and for WebAssembly SIMD alike.
fn accumulate_gray(acc: &mut [u8], a: &[u8], b: &[u8], t: u8) {
    for ((acc, a), b) in acc
        .chunks_exact_mut(16)
        .zip(a.chunks_exact(16))
        .zip(b.chunks_exact(16))
    {
        for k in 0..16 {
            acc[k] = acc[k].wrapping_add(moved(a[k], b[k], t));
        }
    }
    let done = acc.len() / 16 * 16;
    for ((acc, a), b) in acc[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
        *acc = acc.wrapping_add(moved(*a, *b, t));
    }
}

/// [`accumulate_gray`] for RGB rows: a pixel moved when any channel did.
/// `mask` is scratch space of the row's length in bytes.
fn accumulate_rgb(acc: &mut [u8], mask: &mut [u8], a: &[u8], b: &[u8], t: u8) {
    for ((m, a), b) in mask
        .chunks_exact_mut(16)
        .zip(a.chunks_exact(16))
        .zip(b.chunks_exact(16))
    {
        for k in 0..16 {
            m[k] = moved(a[k], b[k], t);
        }
    }
    let done = mask.len() / 16 * 16;
    for ((m, a), b) in mask[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
        *m = moved(*a, *b, t);
    }
    for (acc, px) in acc.iter_mut().zip(mask.chunks_exact(3)) {
        *acc = acc.wrapping_add(px[0] | px[1] | px[2]);
    }
}

/// Compares two frames of `w`×`h` pixels of `bpp` bytes (1: grey, 3: RGB): the
/// kernel, also benchmarked natively (`cargo xtask bench plugins`).
///
/// ```
/// let (w, h) = (64, 36);
/// let still = vec![40u8; w * h];
/// let mut moved = still.clone();
/// moved[10 * w..12 * w].fill(200); // two rows changed
/// let found = vigil_plugin_motion::difference(&still, &moved, w, h, 1, 25, 0.05);
/// assert!(found.area > 0.05 && found.regions.len() == 1);
/// ```
pub fn difference(
    prev: &[u8],
    cur: &[u8],
    w: usize,
    h: usize,
    bpp: usize,
    threshold: u8,
    cell_fraction: f32,
) -> Found {
    let mut cells = [[0u32; GRID_W]; GRID_H];
    let mut moved = 0u32;
    // Grid column gx holds the pixels x with x * GRID_W / w == gx.
    let col = |gx: usize| (gx * w).div_ceil(GRID_W);
    let stride = w * bpp;
    if prev.len() < stride * h || cur.len() < stride * h || !(bpp == 1 || bpp == 3) {
        return Found {
            area: 0.0,
            regions: Vec::new(),
        };
    }
    // Per column, how many rows of the current band of cells moved (a band is
    // at most 255 rows, so the counts fit in a byte); folded into the cells at
    // the end of each band.
    let mut acc = vec![0u8; w];
    let mut mask = vec![0u8; if bpp == 1 { 0 } else { stride }];
    let mut rows_in_acc = 0;
    for y in 0..h {
        let gy = y * GRID_H / h;
        let (a, b) = (&prev[y * stride..][..stride], &cur[y * stride..][..stride]);
        if bpp == 1 {
            accumulate_gray(&mut acc, a, b, threshold);
        } else {
            accumulate_rgb(&mut acc, &mut mask, a, b, threshold);
        }
        rows_in_acc += 1;
        let band_ends = y + 1 == h || (y + 1) * GRID_H / h != gy;
        if band_ends || rows_in_acc == 255 {
            for (gx, cell) in cells[gy].iter_mut().enumerate() {
                let n: u32 = acc[col(gx)..col(gx + 1)]
                    .iter()
                    .map(|&c| u32::from(c))
                    .sum();
                *cell += n;
                moved += n;
            }
            acc.fill(0);
            rows_in_acc = 0;
        }
    }
    let cell_px = ((w / GRID_W) * (h / GRID_H)).max(1) as f32;
    let active: Vec<Vec<bool>> = cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|&c| c as f32 / cell_px >= cell_fraction)
                .collect()
        })
        .collect();
    // Connected regions of active cells (4-neighbourhood).
    let mut seen = [[false; GRID_W]; GRID_H];
    let mut regions = Vec::new();
    for gy in 0..GRID_H {
        for gx in 0..GRID_W {
            if !active[gy][gx] || seen[gy][gx] {
                continue;
            }
            let (mut x0, mut y0, mut x1, mut y1) = (gx, gy, gx, gy);
            let mut count = 0u32;
            let mut stack = vec![(gx, gy)];
            seen[gy][gx] = true;
            while let Some((cx, cy)) = stack.pop() {
                count += cells[cy][cx];
                x0 = x0.min(cx);
                x1 = x1.max(cx);
                y0 = y0.min(cy);
                y1 = y1.max(cy);
                let neighbours = [
                    (cx.wrapping_sub(1), cy),
                    (cx + 1, cy),
                    (cx, cy.wrapping_sub(1)),
                    (cx, cy + 1),
                ];
                for (nx, ny) in neighbours {
                    if nx < GRID_W && ny < GRID_H && active[ny][nx] && !seen[ny][nx] {
                        seen[ny][nx] = true;
                        stack.push((nx, ny));
                    }
                }
            }
            let bbox = BBox::new(
                x0 as f32 / GRID_W as f32,
                y0 as f32 / GRID_H as f32,
                (x1 - x0 + 1) as f32 / GRID_W as f32,
                (y1 - y0 + 1) as f32 / GRID_H as f32,
            );
            let cells_in_box = ((x1 - x0 + 1) * (y1 - y0 + 1)) as f32;
            regions.push((bbox, (count as f32 / (cells_in_box * cell_px)).min(1.0)));
        }
    }
    Found {
        area: moved as f32 / (w * h).max(1) as f32,
        regions,
    }
}

impl AnalyticsPlugin for Motion {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::analytics("motion", env!("CARGO_PKG_VERSION"))
            .description("Motion detection by frame differencing on small grey frames; events carry the moving regions.")
            .frames(5.0, false)
            .config_schema(
                r#"{
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "threshold": {"type": "integer", "minimum": 1, "maximum": 255, "default": 25,
                                  "description": "Luma change that counts as motion for a pixel"},
                    "min_area": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.005,
                                 "description": "Fraction of the picture that must move"},
                    "cooldown_ms": {"type": "integer", "minimum": 0, "maximum": 3600000, "default": 1000,
                                    "description": "Minimum time between events while motion lasts"},
                    "width": {"type": "integer", "minimum": 32, "maximum": 1920, "default": 160,
                              "description": "Analysis width in pixels"},
                    "cell_fraction": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.05,
                                      "description": "Fraction of a grid cell that must move for it to count"},
                    "pixel_format": {"enum": ["gray8", "rgb8"], "default": "gray8",
                                     "description": "Compare grey or colour pictures"}
                  }
                }"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        if cfg.width < 32 {
            return Err(Error::InvalidConfig("width must be at least 32".into()));
        }
        Ok(Motion {
            cfg,
            previous: None,
            size: (0, 0),
            last_event_ms: None,
        })
    }

    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
        let format = match self.cfg.pixel_format {
            Format::Gray8 => PixelFormat::Gray8,
            Format::Rgb8 => PixelFormat::Rgb8,
        };
        let img = frame.pixels(format, self.cfg.width)?;
        let size = (img.width, img.height);
        let Some(prev) = self.previous.replace(img.data) else {
            self.size = size;
            return Ok(());
        };
        if size != self.size {
            self.size = size;
            return Ok(()); // the picture size changed: start over
        }
        let cur = self.previous.as_deref().unwrap_or_default();
        let found = difference(
            &prev,
            cur,
            size.0 as usize,
            size.1 as usize,
            self.cfg.pixel_format.bpp(),
            self.cfg.threshold,
            self.cfg.cell_fraction,
        );
        if found.area < self.cfg.min_area || found.regions.is_empty() {
            return Ok(());
        }
        // The camera's clock, not the wall clock: the same live and offline.
        let now = (frame.media_time_ns().max(0) / 1_000_000) as u64;
        // Media time starts over when the camera reconnects.
        if self.last_event_ms.is_some_and(|t| now < t) {
            self.last_event_ms = None;
        }
        if self
            .last_event_ms
            .is_some_and(|t| now.saturating_sub(t) < self.cfg.cooldown_ms)
        {
            return Ok(());
        }
        self.last_event_ms = Some(now);
        let event = NewEvent::new("motion")
            .attribute("area", format!("{:.4}", found.area))
            .detections(
                found
                    .regions
                    .into_iter()
                    .map(|(b, s)| Detection::new("motion", s, b)),
            )
            .snapshot();
        vigil_plugin_sdk::emit(event)?;
        Ok(())
    }
}

vigil_plugin_sdk::analytics_plugin!(Motion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn still_pictures_have_no_motion_and_a_moving_square_is_found() {
        let (w, h) = (160usize, 90usize);
        let mut a = vec![50u8; w * h];
        let b = a.clone();
        let still = difference(&a, &b, w, h, 1, 25, 0.05);
        assert_eq!(still.area, 0.0);
        assert!(still.regions.is_empty());
        // A bright 20×20 square appears at (100, 40).
        for y in 40..60 {
            for x in 100..120 {
                a[y * w + x] = 250;
            }
        }
        let moved = difference(&b, &a, w, h, 1, 25, 0.05);
        assert!((moved.area - 400.0 / (w * h) as f32).abs() < 1e-6);
        assert_eq!(moved.regions.len(), 1);
        let (bb, _) = moved.regions[0];
        assert!(bb.contains(110.0 / w as f32, 50.0 / h as f32), "{bb:?}");
        // Sensor noise below the threshold is not motion.
        let noisy: Vec<u8> = b
            .iter()
            .enumerate()
            .map(|(i, &p)| p + (i % 7) as u8)
            .collect();
        assert_eq!(difference(&b, &noisy, w, h, 1, 25, 0.05).area, 0.0);
    }

    #[test]
    fn colour_changes_count_on_any_channel() {
        let (w, h) = (64usize, 36usize);
        let a = vec![100u8; w * h * 3];
        let mut b = a.clone();
        // Only the blue channel of the top-left 8×8 changes.
        for y in 0..8 {
            for x in 0..8 {
                b[(y * w + x) * 3 + 2] = 200;
            }
        }
        let f = difference(&a, &b, w, h, 3, 25, 0.05);
        assert!((f.area - 64.0 / (w * h) as f32).abs() < 1e-6, "{f:?}");
        assert_eq!(f.regions.len(), 1);
        assert!(f.regions[0].0.contains(0.05, 0.1));
        // Short buffers are not read past their end.
        assert_eq!(difference(&a[..10], &b, w, h, 3, 25, 0.05).area, 0.0);
    }
}
