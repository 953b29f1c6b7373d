//! Events: what plugins emit ([`NewEvent`], with [`crate::emit`]) and what rule and
//! output plugins receive ([`Event`]).
//!
//! The host validates every emitted event; limits (a violation makes
//! [`crate::emit`] return an error naming the field): `kind` 1–256 bytes; at most
//! 256 detections, labels up to 256 bytes, scores 0–1, box coordinates 0–1 (a
//! slack of 0.01 either side is tolerated); at most 64 attributes, keys 1–256
//! bytes, values up to 4096 bytes.

use crate::wit::types;

/// How serious an event is. The default is [`Severity::Info`].
///
/// ```
/// use vigil_plugin_sdk::{NewEvent, Severity};
/// assert_eq!(Severity::default(), Severity::Info);
/// let e = NewEvent::new("loitering").severity(Severity::Warning);
/// assert_eq!(e.severity, Severity::Warning);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Severity {
    /// Something happened (the default): motion, a zone entered.
    #[default]
    Info,
    /// Something an operator should look at: loitering, a line crossed the wrong
    /// way.
    Warning,
    /// Something that needs action now: an intrusion, tampering.
    Critical,
}

/// A rectangle in normalized picture coordinates: 0.0–1.0 of the width and
/// height, origin at the top left. Normalized boxes stay valid whatever size the
/// plugin analysed the picture at, and whatever size a viewer shows it at.
///
/// ```
/// use vigil_plugin_sdk::BBox;
/// // A 40×30 pixel box at (80, 45) in a 160×90 analysis picture:
/// let (w, h) = (160.0, 90.0);
/// let b = BBox::new(80.0 / w, 45.0 / h, 40.0 / w, 30.0 / h);
/// let (cx, cy) = b.center();
/// assert!((cx - 0.625).abs() < 1e-6 && (cy - 2.0 / 3.0).abs() < 1e-6);
/// assert!(b.contains(0.6, 0.6));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct BBox {
    /// Left edge, 0.0 (left of the picture) to 1.0.
    pub x: f32,
    /// Top edge, 0.0 (top of the picture) to 1.0.
    pub y: f32,
    /// Width, as a fraction of the picture's width.
    pub width: f32,
    /// Height, as a fraction of the picture's height.
    pub height: f32,
}

impl BBox {
    /// A box from its top-left corner and size, all normalized (0.0–1.0).
    ///
    /// ```
    /// let b = vigil_plugin_sdk::BBox::new(0.1, 0.2, 0.3, 0.4);
    /// assert_eq!((b.x, b.y, b.width, b.height), (0.1, 0.2, 0.3, 0.4));
    /// ```
    pub fn new(x: f32, y: f32, width: f32, height: f32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// The centre point `(x, y)`.
    ///
    /// ```
    /// let b = vigil_plugin_sdk::BBox::new(0.25, 0.5, 0.5, 0.25);
    /// assert_eq!(b.center(), (0.5, 0.625));
    /// ```
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// The middle of the bottom edge: where a standing person touches the ground
    /// (what zone and line rules usually test).
    ///
    /// ```
    /// let b = vigil_plugin_sdk::BBox::new(0.2, 0.2, 0.2, 0.6);
    /// assert_eq!(b.bottom_center(), (0.3, 0.8));
    /// ```
    pub fn bottom_center(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height)
    }

    /// Whether the point `(x, y)` (normalized) is inside the box, edges included.
    ///
    /// ```
    /// let b = vigil_plugin_sdk::BBox::new(0.0, 0.0, 0.5, 0.5);
    /// assert!(b.contains(0.5, 0.25));
    /// assert!(!b.contains(0.75, 0.25));
    /// ```
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x <= self.x + self.width && y >= self.y && y <= self.y + self.height
    }
}

/// One detected object or region, attached to an event with
/// [`NewEvent::detection`].
///
/// ```
/// use vigil_plugin_sdk::{BBox, Detection};
/// let d = Detection::new("car", 0.9, BBox::new(0.0, 0.0, 0.5, 0.5)).track(7);
/// assert_eq!((d.label.as_str(), d.track_id), ("car", Some(7)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// What it is: `person`, `car`, `motion`, … (up to 256 bytes).
    pub label: String,
    /// Confidence, 0.0–1.0.
    pub score: f32,
    /// Where it is in the picture.
    pub bbox: BBox,
    /// The same object across frames and events, when the plugin tracks objects.
    /// Rules such as `zones` tell objects apart by it.
    pub track_id: Option<u64>,
}

impl Detection {
    /// A detection without a track id.
    ///
    /// ```
    /// use vigil_plugin_sdk::{BBox, Detection};
    /// let d = Detection::new("person", 0.8, BBox::new(0.4, 0.3, 0.1, 0.4));
    /// assert_eq!(d.track_id, None);
    /// ```
    pub fn new(label: impl Into<String>, score: f32, bbox: BBox) -> Self {
        Self {
            label: label.into(),
            score,
            bbox,
            track_id: None,
        }
    }

    /// Marks the detection as the same object as earlier ones with this id.
    ///
    /// ```
    /// use vigil_plugin_sdk::{BBox, Detection};
    /// let d = Detection::new("person", 0.8, BBox::default()).track(42);
    /// assert_eq!(d.track_id, Some(42));
    /// ```
    pub fn track(mut self, id: u64) -> Self {
        self.track_id = Some(id);
        self
    }
}

/// An event to emit with [`crate::emit`]: a builder. The host adds the id, the
/// camera, the plugin id and the wall-clock time.
///
/// ```
/// use vigil_plugin_sdk::{NewEvent, Severity};
/// let e = NewEvent::new("zone-enter").severity(Severity::Warning).attribute("zone", "door");
/// assert_eq!(e.kind, "zone-enter");
/// assert_eq!(e.attributes, vec![("zone".to_string(), "door".to_string())]);
/// assert!(!e.snapshot);
/// ```
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NewEvent {
    /// A short machine-readable name such as `motion` or `zone-enter`
    /// (1–256 bytes). Operators filter on it (`GET /api/events?kind=`).
    pub kind: String,
    /// How serious it is ([`Severity::Info`] unless set).
    pub severity: Severity,
    /// Camera media time (nanoseconds, the camera's clock, as
    /// [`crate::Frame::media_time_ns`]) of the start of what the event describes.
    /// When `None`, the host fills in the media time of the frame being handled
    /// (analytics plugins only; rule and output events then have none).
    pub media_start_ns: Option<i64>,
    /// Media time of the end, when the event describes a span. The host never
    /// fills it in.
    pub media_end_ns: Option<i64>,
    /// Detected objects or regions (at most 256).
    pub detections: Vec<Detection>,
    /// Free-form `(key, value)` pairs (at most 64; keys 1–256 bytes, values up to
    /// 4096 bytes). Kept in order; keys may repeat.
    pub attributes: Vec<(String, String)>,
    /// Ask the host to store a JPEG of the frame being handled with the event
    /// (analytics plugins, during [`crate::AnalyticsPlugin::on_frame`]; ignored
    /// elsewhere).
    pub snapshot: bool,
}

impl NewEvent {
    /// A new [`Severity::Info`] event of `kind` (a short machine-readable name
    /// such as `motion`), with no detections, attributes or snapshot.
    ///
    /// ```
    /// let e = vigil_plugin_sdk::NewEvent::new("motion");
    /// assert_eq!(e.kind, "motion");
    /// assert!(e.detections.is_empty() && e.media_start_ns.is_none());
    /// ```
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            ..Self::default()
        }
    }

    /// Sets the severity.
    ///
    /// ```
    /// use vigil_plugin_sdk::{NewEvent, Severity};
    /// let e = NewEvent::new("intrusion").severity(Severity::Critical);
    /// assert_eq!(e.severity, Severity::Critical);
    /// ```
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }

    /// Adds a detection.
    ///
    /// ```
    /// use vigil_plugin_sdk::{BBox, Detection, NewEvent};
    /// let e = NewEvent::new("person")
    ///     .detection(Detection::new("person", 0.9, BBox::new(0.1, 0.1, 0.2, 0.5)));
    /// assert_eq!(e.detections.len(), 1);
    /// ```
    pub fn detection(mut self, d: Detection) -> Self {
        self.detections.push(d);
        self
    }

    /// Adds several detections.
    ///
    /// ```
    /// use vigil_plugin_sdk::{BBox, Detection, NewEvent};
    /// let boxes = [BBox::new(0.0, 0.0, 0.1, 0.1), BBox::new(0.5, 0.5, 0.1, 0.1)];
    /// let e = NewEvent::new("motion")
    ///     .detections(boxes.into_iter().map(|b| Detection::new("motion", 1.0, b)));
    /// assert_eq!(e.detections.len(), 2);
    /// ```
    pub fn detections(mut self, d: impl IntoIterator<Item = Detection>) -> Self {
        self.detections.extend(d);
        self
    }

    /// Adds a `(key, value)` attribute.
    ///
    /// ```
    /// let e = vigil_plugin_sdk::NewEvent::new("motion").attribute("area", format!("{:.3}", 0.0421));
    /// assert_eq!(e.attributes[0], ("area".to_string(), "0.042".to_string()));
    /// ```
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// Sets the camera media time span of what the event describes
    /// (nanoseconds on the camera's clock). Without it, analytics events get the
    /// media time of the frame being handled.
    ///
    /// ```
    /// let e = vigil_plugin_sdk::NewEvent::new("loitering").media_time(5_000_000_000, Some(17_000_000_000));
    /// assert_eq!((e.media_start_ns, e.media_end_ns), (Some(5_000_000_000), Some(17_000_000_000)));
    /// ```
    pub fn media_time(mut self, start_ns: i64, end_ns: Option<i64>) -> Self {
        self.media_start_ns = Some(start_ns);
        self.media_end_ns = end_ns;
        self
    }

    /// Asks the host to store a JPEG of the frame being handled with the event
    /// (scaled to at most 640 pixels wide; `GET /api/events/{id}/snapshot.jpg`).
    /// Only analytics plugins have a frame; elsewhere the request is ignored and
    /// the event is stored without one.
    ///
    /// ```
    /// let e = vigil_plugin_sdk::NewEvent::new("person").snapshot();
    /// assert!(e.snapshot);
    /// ```
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

/// An event as rule and output plugins receive it (in `on_event`): one the host
/// stored, emitted by another plugin on the same camera or posted to
/// `POST /api/events`.
///
/// ```
/// use vigil_plugin_sdk::{Event, Severity};
/// let e = Event {
///     id: "018f3a2b4c5d000001a1b2c3d4".into(),
///     camera: "lobby".into(),
///     plugin: "motion".into(),
///     kind: "motion".into(),
///     severity: Severity::Info,
///     media_start_ns: Some(2_000_000_000),
///     media_end_ns: None,
///     wall_ms: 1_767_225_600_000,
///     detections: vec![],
///     attributes: vec![("area".into(), "0.0310".into())],
///     has_snapshot: true,
/// };
/// assert_eq!(e.attribute("area"), Some("0.0310"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique id assigned by the host; ids sort by time.
    pub id: String,
    /// The camera's id (always the instance's own camera).
    pub camera: String,
    /// Who emitted it: the operator's id of the emitting plugin (the `id` of its
    /// `[[plugin]]` entry, not the manifest's name), or the `source` given to
    /// `POST /api/events` (default `api`).
    pub plugin: String,
    /// The event's kind, e.g. `motion`.
    pub kind: String,
    /// How serious it is.
    pub severity: Severity,
    /// Camera media time of the start, nanoseconds, when known.
    pub media_start_ns: Option<i64>,
    /// Camera media time of the end, nanoseconds, when known.
    pub media_end_ns: Option<i64>,
    /// When the host received it, milliseconds since the UNIX epoch.
    pub wall_ms: u64,
    /// Detected objects or regions.
    pub detections: Vec<Detection>,
    /// Free-form `(key, value)` pairs, in the emitter's order.
    pub attributes: Vec<(String, String)>,
    /// Whether a JPEG snapshot is stored with it
    /// (`GET /api/events/{id}/snapshot.jpg`).
    pub has_snapshot: bool,
}

impl Event {
    /// The value of the first attribute named `key`.
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
