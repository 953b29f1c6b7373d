//! Object detection: runs a YOLO-style ONNX model on the host through the
//! inference capability (the host scales and letterboxes the frame into the
//! model's input) and emits `detection` events with labels, scores and boxes
//! normalized to the frame.
//!
//! The model's output is one tensor `[1, N, 5 + classes]`: per candidate box
//! `cx, cy, w, h` in input pixels, objectness, then class probabilities (the
//! layout `tools/darknet2onnx.py` exports). Score = objectness × class
//! probability; overlapping boxes of a class are merged by non-maximum
//! suppression. A cheap motion gate (a 64-pixel-wide grey picture compared with
//! the last analysed one) skips inference on still scenes, so many cameras can
//! share the CPU; a still scene is still re-checked every `refresh_s`.
//!
//! Detections carry track ids: a small tracker matches each analysed frame's
//! boxes to the previous ones of the same class (overlap first, then centre
//! distance for objects that moved further than their size between runs), so
//! rules such as `zones` follow each person instead of one per label.

use vigil_plugin_sdk::inference::{InputSpec, Model, Placement};
use vigil_plugin_sdk::{
    AnalyticsPlugin, BBox, Capability, Detection, Error, Frame, Manifest, NewEvent, PixelFormat,
    Result,
};

/// The 80 COCO class names, in the order the Darknet models use.
pub const COCO: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorbike",
    "aeroplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "sofa",
    "pottedplant",
    "bed",
    "diningtable",
    "toilet",
    "tvmonitor",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Installed model name (`<models_dir>/<name>.onnx` on the host).
    #[serde(default = "default_model")]
    pub model: String,
    /// Class names to report.
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
    /// Minimum score (objectness × class probability).
    #[serde(default = "default_score")]
    pub score_threshold: f32,
    /// Boxes of a class overlapping more than this (IoU) are merged.
    #[serde(default = "default_iou")]
    pub iou_threshold: f32,
    /// Frames analysed per second at most.
    #[serde(default = "default_fps")]
    pub fps: f32,
    /// Skip inference while the picture does not change.
    #[serde(default = "default_true")]
    pub motion_gate: bool,
    /// With the gate: re-check a still scene at least this often.
    #[serde(default = "default_refresh")]
    pub refresh_s: f32,
}

fn default_model() -> String {
    "yolov3-tiny-416x416".into()
}
fn default_classes() -> Vec<String> {
    ["person", "car", "truck", "bus", "bicycle", "motorbike"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_score() -> f32 {
    0.35
}
fn default_iou() -> f32 {
    0.45
}
fn default_fps() -> f32 {
    2.0
}
fn default_true() -> bool {
    true
}
fn default_refresh() -> f32 {
    10.0
}

/// A detection in input pixels (corners), before mapping to the frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub class: usize,
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let w = (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0);
    let h = (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0);
    let inter = w * h;
    let area = |c: &Candidate| (c.x1 - c.x0).max(0.0) * (c.y1 - c.y0).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Decodes `[N, 5 + classes]` rows: candidates of the `wanted` classes scoring
/// at least `threshold`, after class-wise non-maximum suppression, best first.
///
/// ```
/// use vigil_plugin_sdk as _;
/// // Two rows, 2 classes: a confident class-0 box and a weak one.
/// let rows = [50.0, 50.0, 20.0, 40.0, 0.9, 0.9, 0.1,
///             10.0, 10.0, 5.0, 5.0, 0.2, 0.5, 0.5];
/// let c = vigil_plugin_detect::decode(&rows, 7, &[true, true], 0.3, 0.45);
/// assert_eq!(c.len(), 1);
/// assert_eq!((c[0].class, c[0].x0, c[0].y1), (0, 40.0, 70.0));
/// ```
pub fn decode(
    rows: &[f32],
    stride: usize,
    wanted: &[bool],
    threshold: f32,
    iou_max: f32,
) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = Vec::new();
    if stride < 6 {
        return c;
    }
    for r in rows.chunks_exact(stride) {
        let obj = r[4];
        if obj < threshold {
            continue;
        }
        for (class, &p) in r[5..].iter().enumerate() {
            let score = obj * p;
            if score < threshold || !wanted.get(class).copied().unwrap_or(false) {
                continue;
            }
            let (cx, cy, w, h) = (r[0], r[1], r[2], r[3]);
            c.push(Candidate {
                class,
                score,
                x0: cx - w / 2.0,
                y0: cy - h / 2.0,
                x1: cx + w / 2.0,
                y1: cy + h / 2.0,
            });
        }
    }
    c.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for cand in c {
        if kept
            .iter()
            .all(|k| k.class != cand.class || iou(k, &cand) <= iou_max)
        {
            kept.push(cand);
        }
    }
    kept
}

/// A candidate's box as fractions of the frame (clamped to it).
pub fn to_frame_box(c: &Candidate, p: &Placement) -> BBox {
    let (x0, y0) = p.to_frame(c.x0, c.y0);
    let (x1, y1) = p.to_frame(c.x1, c.y1);
    let (x0, y0) = (x0.clamp(0.0, 1.0), y0.clamp(0.0, 1.0));
    let (x1, y1) = (x1.clamp(0.0, 1.0), y1.clamp(0.0, 1.0));
    BBox::new(x0, y0, (x1 - x0).max(0.0), (y1 - y0).max(0.0))
}

#[derive(Debug)]
pub struct Detect {
    cfg: Config,
    model: Model,
    wanted: Vec<bool>,
    last_run_ms: Option<u64>,
    gate: Option<Vec<u8>>,
    tracker: Tracker,
}

/// Analysed frames a track may go unmatched before it is dropped.
const MAX_MISSED: u32 = 3;

/// Gives the boxes of successive analysed frames track ids: greedy matching of
/// the most similar pairs of the same class, where similarity is the overlap
/// (IoU) or, for boxes that do not overlap, a smaller value that falls with the
/// distance between centres relative to the boxes' size (none beyond one size).
#[derive(Debug, Default)]
pub struct Tracker {
    next_id: u64,
    tracks: Vec<Track>,
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    class: usize,
    bbox: BBox,
    missed: u32,
}

fn similarity(a: &BBox, b: &BBox) -> f32 {
    let w = ((a.x + a.width).min(b.x + b.width) - a.x.max(b.x)).max(0.0);
    let h = ((a.y + a.height).min(b.y + b.height) - a.y.max(b.y)).max(0.0);
    let inter = w * h;
    let union = a.width * a.height + b.width * b.height - inter;
    let iou = if union > 0.0 { inter / union } else { 0.0 };
    if iou > 0.05 {
        return 0.2 + iou;
    }
    let (ax, ay) = (a.x + a.width / 2.0, a.y + a.height / 2.0);
    let (bx, by) = (b.x + b.width / 2.0, b.y + b.height / 2.0);
    let size = a.width.max(a.height).max(b.width).max(b.height).max(1e-6);
    let d = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() / size;
    if d < 1.0 { 0.2 * (1.0 - d) } else { 0.0 }
}

impl Tracker {
    /// A tracker whose ids start after `base`. Instances start from the clock,
    /// so ids do not repeat when the plugin restarts (rules such as `zones`
    /// remember ids for a few seconds).
    pub fn starting_at(base: u64) -> Self {
        Tracker {
            next_id: base,
            tracks: Vec::new(),
        }
    }

    /// Assigns ids to this frame's boxes (class, box), in order.
    pub fn update(&mut self, found: &[(usize, BBox)]) -> Vec<u64> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (di, (class, b)) in found.iter().enumerate() {
                if *class == t.class {
                    let s = similarity(&t.bbox, b);
                    if s > 0.0 {
                        pairs.push((s, ti, di));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut ids: Vec<Option<u64>> = vec![None; found.len()];
        let mut matched = vec![false; self.tracks.len()];
        for (_, ti, di) in pairs {
            if matched[ti] || ids[di].is_some() {
                continue;
            }
            matched[ti] = true;
            ids[di] = Some(self.tracks[ti].id);
            self.tracks[ti].bbox = found[di].1;
            self.tracks[ti].missed = 0;
        }
        for (t, m) in self.tracks.iter_mut().zip(&matched) {
            if !m {
                t.missed += 1;
            }
        }
        self.tracks.retain(|t| t.missed <= MAX_MISSED);
        ids.iter()
            .zip(found)
            .map(|(id, (class, b))| {
                id.unwrap_or_else(|| {
                    self.next_id += 1;
                    self.tracks.push(Track {
                        id: self.next_id,
                        class: *class,
                        bbox: *b,
                        missed: 0,
                    });
                    self.next_id
                })
            })
            .collect()
    }

    /// Forgets every track (the camera's media time started over).
    pub fn reset(&mut self) {
        self.tracks.clear();
    }
}

/// Fraction of a small grey picture's pixels that changed by more than 12.
fn changed(a: &[u8], b: &[u8]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 1.0;
    }
    let n = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.abs_diff(**y) > 12)
        .count();
    n as f32 / a.len() as f32
}

impl AnalyticsPlugin for Detect {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::analytics("detect", env!("CARGO_PKG_VERSION"))
            .description("Object detection (YOLO, COCO classes) on the host's inference pool; emits detection events with boxes.")
            .frames(5.0, false)
            .capability(Capability::Inference)
            .config_schema(
                r#"{
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "model": {"type": "string", "minLength": 1, "default": "yolov3-tiny-416x416",
                              "description": "Installed model (models_dir/<name>.onnx); its input size is the analysis size"},
                    "classes": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                "default": ["person", "car", "truck", "bus", "bicycle", "motorbike"],
                                "description": "COCO class names to report"},
                    "score_threshold": {"type": "number", "minimum": 0.01, "maximum": 1, "default": 0.35},
                    "iou_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.45},
                    "fps": {"type": "number", "exclusiveMinimum": 0, "maximum": 5, "default": 2,
                            "description": "Frames analysed per second at most"},
                    "motion_gate": {"type": "boolean", "default": true,
                                    "description": "Skip inference while the picture does not change"},
                    "refresh_s": {"type": "number", "minimum": 0, "maximum": 3600, "default": 10,
                                  "description": "With the gate, re-check a still scene this often"}
                  }
                }"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        let mut wanted = vec![false; COCO.len()];
        for c in &cfg.classes {
            match COCO.iter().position(|n| n == c) {
                Some(i) => wanted[i] = true,
                None => {
                    return Err(Error::InvalidConfig(format!(
                        "classes: {c:?} is not a COCO class name"
                    )));
                }
            }
        }
        let model = Model::installed(&cfg.model)
            .map_err(|e| Error::InvalidConfig(format!("model {:?}: {e}", cfg.model)))?;
        let out = model.outputs();
        let ok =
            out.len() == 1 && out[0].shape.len() == 3 && out[0].shape[2] as usize == 5 + COCO.len();
        if !ok {
            return Err(Error::InvalidConfig(format!(
                "model {:?}: expected one output [1, N, 85], got {:?}",
                cfg.model,
                out.iter().map(|o| &o.shape).collect::<Vec<_>>()
            )));
        }
        Ok(Detect {
            cfg,
            model,
            wanted,
            last_run_ms: None,
            gate: None,
            // Milliseconds (mod 10^8) × 100: a restart, at least 0.2 s after
            // the previous start, begins 20 000 ids further on.
            tracker: Tracker::starting_at(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64 % 100_000_000 * 100),
            ),
        })
    }

    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
        let now = (frame.media_time_ns().max(0) / 1_000_000) as u64;
        // Media time starts over when the camera reconnects: forget the past.
        if self.last_run_ms.is_some_and(|t| now < t) {
            self.last_run_ms = None;
            self.gate = None;
            self.tracker.reset();
        }
        let interval = (1000.0 / self.cfg.fps) as u64;
        if self
            .last_run_ms
            .is_some_and(|t| now.saturating_sub(t) < interval.saturating_sub(interval / 10))
        {
            return Ok(());
        }
        if self.cfg.motion_gate {
            let small = frame.pixels(PixelFormat::Gray8, 64)?.data;
            let stale = self
                .last_run_ms
                .is_none_or(|t| now.saturating_sub(t) as f32 >= self.cfg.refresh_s * 1000.0);
            let moved = self
                .gate
                .as_deref()
                .is_none_or(|g| changed(g, &small) > 0.002);
            if !moved && !stale {
                return Ok(());
            }
            self.gate = Some(small);
        }
        self.last_run_ms = Some(now);
        let out = self.model.run_frame(frame, &InputSpec::letterbox_unit())?;
        let Some(t) = out.tensors.first() else {
            return Err(Error::Failed("the model returned no output".into()));
        };
        let stride = t.shape.last().copied().unwrap_or(0) as usize;
        let found = decode(
            &t.data,
            stride,
            &self.wanted,
            self.cfg.score_threshold,
            self.cfg.iou_threshold,
        );
        let boxes: Vec<(usize, BBox)> = found
            .iter()
            .map(|c| (c.class, to_frame_box(c, &out.placement)))
            .collect();
        let ids = self.tracker.update(&boxes);
        if found.is_empty() {
            return Ok(());
        }
        let mut counts: Vec<(usize, usize)> = Vec::new();
        for c in &found {
            match counts.iter_mut().find(|(k, _)| *k == c.class) {
                Some((_, n)) => *n += 1,
                None => counts.push((c.class, 1)),
            }
        }
        let mut event = NewEvent::new("detection").detections(
            found
                .iter()
                .zip(boxes)
                .zip(ids)
                .map(|((c, (_, b)), id)| Detection::new(COCO[c.class], c.score, b).track(id)),
        );
        for (class, n) in counts {
            event = event.attribute(COCO[class], n.to_string());
        }
        vigil_plugin_sdk::emit(event.snapshot())?;
        Ok(())
    }
}

vigil_plugin_sdk::analytics_plugin!(Detect);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_follows_objects_across_frames() {
        let mut t = Tracker::default();
        let person = |x: f32| (0, BBox::new(x, 0.5, 0.04, 0.12));
        // Two people walking right, 0.02 per frame (less than their width).
        let a = t.update(&[person(0.10), person(0.50)]);
        let b = t.update(&[person(0.52), person(0.12)]);
        assert_eq!(
            b,
            vec![a[1], a[0]],
            "matched by position, whatever the order"
        );
        // Faster than their own width between runs (low fps): still the same.
        let c = t.update(&[person(0.17), person(0.57)]);
        assert_eq!(c, vec![a[0], a[1]]);
        // A car where a person was is another object; a third person is new.
        let d = t.update(&[
            (2, BBox::new(0.17, 0.5, 0.04, 0.12)),
            person(0.57),
            person(0.9),
        ]);
        assert!(
            d[0] != a[0] && d[0] != a[1] && d[2] != a[0] && d[2] != a[1],
            "{d:?}"
        );
        assert_eq!(d[1], a[1]);
        // Far away is not the same object.
        let e = t.update(&[person(0.9), person(0.3)]);
        assert_eq!(e[0], d[2]);
        assert!(![a[0], a[1], d[0], d[2]].contains(&e[1]), "{e:?}");
    }

    #[test]
    fn tracker_forgets_objects_gone_for_several_runs() {
        let mut t = Tracker::default();
        let p = (0, BBox::new(0.4, 0.4, 0.05, 0.1));
        let first = t.update(&[p])[0];
        for _ in 0..MAX_MISSED {
            t.update(&[]);
        }
        assert_eq!(t.update(&[p])[0], first, "back within the grace period");
        for _ in 0..=MAX_MISSED {
            t.update(&[]);
        }
        assert_ne!(t.update(&[p])[0], first, "gone too long: a new object");
        t.reset();
        assert_eq!(t.tracks.len(), 0);
        assert_eq!(Tracker::starting_at(500).update(&[p]), vec![501]);
    }

    #[test]
    fn nms_is_per_class_and_keeps_the_best() {
        let mut wanted = vec![false; 80];
        wanted[0] = true;
        wanted[2] = true;
        let row = |cx: f32, obj: f32, class: usize| {
            let mut r = vec![cx, 100.0, 40.0, 80.0, obj];
            let mut p = vec![0.0; 80];
            p[class] = 1.0;
            r.extend(p);
            r
        };
        let rows: Vec<f32> = [
            row(100.0, 0.9, 0),  // person
            row(104.0, 0.8, 0),  // the same person, weaker: suppressed
            row(104.0, 0.7, 2),  // a car at the same place: kept (other class)
            row(300.0, 0.6, 0),  // another person
            row(300.0, 0.99, 5), // a bus: not wanted
        ]
        .concat();
        let c = decode(&rows, 85, &wanted, 0.3, 0.45);
        let got: Vec<(usize, f32)> = c.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (2, 0.7), (0, 0.6)]);
    }

    #[test]
    fn boxes_map_back_through_the_letterbox() {
        // 640×360 frame letterboxed into 416×416: 416×234 at top 91.
        let p = Placement {
            left: 0.0,
            top: 91.0,
            width: 416.0,
            height: 234.0,
        };
        let c = Candidate {
            class: 0,
            score: 1.0,
            x0: 104.0,
            y0: 91.0 + 58.5,
            x1: 208.0,
            y1: 91.0 + 234.0 + 20.0, // into the padding: clamped
        };
        let b = to_frame_box(&c, &p);
        assert!(
            (b.x - 0.25).abs() < 1e-6 && (b.y - 0.25).abs() < 1e-6,
            "{b:?}"
        );
        assert!(
            (b.width - 0.25).abs() < 1e-6 && (b.height - 0.75).abs() < 1e-6,
            "{b:?}"
        );
    }

    #[test]
    fn the_gate_sees_change() {
        let a = vec![100u8; 64 * 36];
        let mut b = a.clone();
        assert_eq!(changed(&a, &b), 0.0);
        b[..64].fill(200);
        assert!(changed(&a, &b) > 0.002);
    }
}
