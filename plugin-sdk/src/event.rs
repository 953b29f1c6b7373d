//! Events: what plugins emit ([`NewEvent`]) and receive ([`Event`]).

use crate::wit::types;

/// How serious an event is.
///
/// ```
/// use vigil_plugin_sdk::Severity;
/// assert_ne!(Severity::Info, Severity::Critical);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

/// A rectangle in normalized picture coordinates: 0.0–1.0 of the width and
/// height, origin at the top left.
///
/// ```
/// use vigil_plugin_sdk::BBox;
/// let b = BBox::new(0.25, 0.5, 0.5, 0.25);
/// assert!((b.center().0 - 0.5).abs() < 1e-6);
/// assert!(b.contains(0.5, 0.6));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BBox {
    pub fn new(x: f32, y: f32, width: f32, height: f32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// The centre point.
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// The middle of the bottom edge: where a standing person touches the ground.
    ///
    /// ```
    /// let b = vigil_plugin_sdk::BBox::new(0.2, 0.2, 0.2, 0.6);
    /// assert_eq!(b.bottom_center(), (0.3, 0.8));
    /// ```
    pub fn bottom_center(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height)
    }

    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x <= self.x + self.width && y >= self.y && y <= self.y + self.height
    }
}

/// One detected object or region.
///
/// ```
/// use vigil_plugin_sdk::{BBox, Detection};
/// let d = Detection::new("car", 0.9, BBox::new(0.0, 0.0, 0.5, 0.5)).track(7);
/// assert_eq!(d.track_id, Some(7));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub label: String,
    pub score: f32,
    pub bbox: BBox,
    pub track_id: Option<u64>,
}

impl Detection {
    pub fn new(label: impl Into<String>, score: f32, bbox: BBox) -> Self {
        Self {
            label: label.into(),
            score,
            bbox,
            track_id: None,
        }
    }

    /// Marks the detection as the same object as earlier ones with this id.
    pub fn track(mut self, id: u64) -> Self {
        self.track_id = Some(id);
        self
    }
}

/// An event to emit with [`crate::emit`]: a builder.
///
/// ```
/// use vigil_plugin_sdk::{NewEvent, Severity};
/// let e = NewEvent::new("zone-enter").severity(Severity::Warning).attribute("zone", "door");
/// assert_eq!(e.kind, "zone-enter");
/// assert_eq!(e.attributes, vec![("zone".to_string(), "door".to_string())]);
/// ```
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NewEvent {
    pub kind: String,
    pub severity: Severity,
    pub media_start_ns: Option<i64>,
    pub media_end_ns: Option<i64>,
    pub detections: Vec<Detection>,
    pub attributes: Vec<(String, String)>,
    pub snapshot: bool,
}

impl NewEvent {
    /// A new event of `kind` (a short machine-readable name such as `motion`).
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            ..Self::default()
        }
    }

    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }

    pub fn detection(mut self, d: Detection) -> Self {
        self.detections.push(d);
        self
    }

    pub fn detections(mut self, d: impl IntoIterator<Item = Detection>) -> Self {
        self.detections.extend(d);
        self
    }

    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// Camera media time span of what the event describes (nanoseconds). Without
    /// it, analytics events get the current frame's time.
    pub fn media_time(mut self, start_ns: i64, end_ns: Option<i64>) -> Self {
        self.media_start_ns = Some(start_ns);
        self.media_end_ns = end_ns;
        self
    }

    /// Ask the host to store a JPEG of the current frame with the event.
    pub fn snapshot(mut self) -> Self {
        self.snapshot = true;
        self
    }

    pub(crate) fn into_wit(self) -> types::NewEvent {
        types::NewEvent {
            kind: self.kind,
            severity: severity_to_wit(self.severity),
            media_start_ns: self.media_start_ns,
            media_end_ns: self.media_end_ns,
            detections: self
                .detections
                .into_iter()
                .map(|d| types::Detection {
                    label: d.label,
                    score: d.score,
                    bbox: types::Bbox {
                        x: d.bbox.x,
                        y: d.bbox.y,
                        width: d.bbox.width,
                        height: d.bbox.height,
                    },
                    track_id: d.track_id,
                })
                .collect(),
            attributes: self
                .attributes
                .into_iter()
                .map(|(key, value)| types::Attribute { key, value })
                .collect(),
            snapshot: self.snapshot,
        }
    }
}

fn severity_to_wit(s: Severity) -> types::Severity {
    match s {
        Severity::Info => types::Severity::Info,
        Severity::Warning => types::Severity::Warning,
        Severity::Critical => types::Severity::Critical,
    }
}

/// An event as rule and output plugins receive it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub camera: String,
    /// The plugin that emitted it.
    pub plugin: String,
    pub kind: String,
    pub severity: Severity,
    pub media_start_ns: Option<i64>,
    pub media_end_ns: Option<i64>,
    /// When the host received it, milliseconds since the UNIX epoch.
    pub wall_ms: u64,
    pub detections: Vec<Detection>,
    pub attributes: Vec<(String, String)>,
    pub has_snapshot: bool,
}

impl Event {
    /// The value of an attribute.
    ///
    /// ```
    /// # use vigil_plugin_sdk::*;
    /// let e = Event { id: "1".into(), camera: "c".into(), plugin: "p".into(), kind: "k".into(),
    ///     severity: Severity::Info, media_start_ns: None, media_end_ns: None, wall_ms: 0,
    ///     detections: vec![], attributes: vec![("zone".into(), "door".into())], has_snapshot: false };
    /// assert_eq!(e.attribute("zone"), Some("door"));
    /// ```
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn from_wit(e: types::Event) -> Self {
        Event {
            id: e.id,
            camera: e.camera,
            plugin: e.plugin,
            kind: e.kind,
            severity: match e.severity {
                types::Severity::Info => Severity::Info,
                types::Severity::Warning => Severity::Warning,
                types::Severity::Critical => Severity::Critical,
            },
            media_start_ns: e.media_start_ns,
            media_end_ns: e.media_end_ns,
            wall_ms: e.wall_ms,
            detections: e
                .detections
                .into_iter()
                .map(|d| Detection {
                    label: d.label,
                    score: d.score,
                    bbox: BBox::new(d.bbox.x, d.bbox.y, d.bbox.width, d.bbox.height),
                    track_id: d.track_id,
                })
                .collect(),
            attributes: e.attributes.into_iter().map(|a| (a.key, a.value)).collect(),
            has_snapshot: e.has_snapshot,
        }
    }
}
