//! Zones and lines over detections: turns detection events (from analytics plugins
//! such as a detector) into `zone-enter`, `zone-exit`, `line-crossing` and
//! `loitering` events.
//!
//! An object is where its box touches the ground: the middle of the bottom edge.
//! Objects are told apart by track id when the detector gives one, otherwise by
//! label (one object per label). Loitering fires once per stay, after an object
//! stayed `loiter_seconds` inside a zone.

use std::collections::HashMap;

use vigil_plugin_sdk::{Detection, Error, Event, Manifest, NewEvent, Result, RulePlugin, Severity};

#[derive(serde::Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// Points `[x, y]` in normalized coordinates, at least three.
    pub polygon: Vec<[f32; 2]>,
}

#[derive(serde::Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub name: String,
    pub a: [f32; 2],
    pub b: [f32; 2],
}

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub lines: Vec<Line>,
    /// Seconds inside a zone before `loitering` (0 disables it).
    #[serde(default = "default_loiter")]
    pub loiter_seconds: f32,
    /// Only these labels (empty: all).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Objects not seen for this long are forgotten.
    #[serde(default = "default_forget")]
    pub forget_seconds: f32,
}

fn default_loiter() -> f32 {
    10.0
}
fn default_forget() -> f32 {
    5.0
}

#[derive(Debug, Default)]
struct Track {
    point: Option<(f32, f32)>,
    last_seen_ms: u64,
    /// Zone name → (entered at ms, loitering reported).
    inside: HashMap<String, (u64, bool)>,
    /// The object as last seen, and the media time of that sighting.
    last: Option<Detection>,
    media_ns: Option<i64>,
}

/// An event to emit once the track is updated: kind, severity, attributes.
type Pending = (&'static str, Severity, Vec<(&'static str, String)>);

#[derive(Debug)]
pub struct Zones {
    cfg: Config,
    tracks: HashMap<String, Track>,
}

/// Point in polygon (even-odd rule).
pub fn inside(poly: &[[f32; 2]], (x, y): (f32, f32)) -> bool {
    let mut c = false;
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + n - 1) % n]);
        if (a[1] > y) != (b[1] > y) && x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]) + a[0] {
            c = !c;
        }
    }
    c
}

fn side(a: [f32; 2], b: [f32; 2], p: (f32, f32)) -> f32 {
    (b[0] - a[0]) * (p.1 - a[1]) - (b[1] - a[1]) * (p.0 - a[0])
}

/// Whether the move p→q crosses segment a–b; `Some(direction)`: for a line drawn
/// from a (top) to b (bottom) on the screen, `left-to-right` is a move from the
/// screen's left to its right (in general: from the side where the cross product
/// (b−a)×(p−a) is positive).
pub fn crossing(a: [f32; 2], b: [f32; 2], p: (f32, f32), q: (f32, f32)) -> Option<&'static str> {
    let (s1, s2) = (side(a, b, p), side(a, b, q));
    if s1 == 0.0 || s2 == 0.0 || (s1 > 0.0) == (s2 > 0.0) {
        return None;
    }
    let (t1, t2) = (
        side([p.0, p.1], [q.0, q.1], (a[0], a[1])),
        side([p.0, p.1], [q.0, q.1], (b[0], b[1])),
    );
    if (t1 > 0.0) == (t2 > 0.0) {
        return None;
    }
    Some(if s1 > 0.0 {
        "left-to-right"
    } else {
        "right-to-left"
    })
}

impl Zones {
    fn key(d: &Detection) -> String {
        match d.track_id {
            Some(t) => format!("track:{t}"),
            None => format!("label:{}", d.label),
        }
    }

    fn emit(
        kind: &str,
        severity: Severity,
        d: &Detection,
        media_ns: Option<i64>,
        attrs: &[(&str, String)],
    ) -> Result<()> {
        let mut e = NewEvent::new(kind).severity(severity).detection(d.clone());
        if let Some(t) = media_ns {
            e = e.media_time(t, None);
        }
        for (k, v) in attrs {
            e = e.attribute(*k, v.clone());
        }
        vigil_plugin_sdk::emit(e).map_err(Error::Failed)
    }

    fn observe(&mut self, d: &Detection, now_ms: u64, media_ns: Option<i64>) -> Result<()> {
        if !self.cfg.labels.is_empty() && !self.cfg.labels.contains(&d.label) {
            return Ok(());
        }
        let p = d.bbox.bottom_center();
        let key = Self::key(d);
        let track = self.tracks.entry(key.clone()).or_default();
        track.last = Some(d.clone());
        track.media_ns = media_ns;
        track.last_seen_ms = now_ms;
        let previous = track.point.replace(p);
        let mut out: Vec<Pending> = Vec::new();
        if let Some(prev) = previous {
            for l in &self.cfg.lines {
                if let Some(dir) = crossing(l.a, l.b, prev, p) {
                    out.push((
                        "line-crossing",
                        Severity::Info,
                        vec![
                            ("line", l.name.clone()),
                            ("direction", dir.into()),
                            ("object", key.clone()),
                        ],
                    ));
                }
            }
        }
        for z in &self.cfg.zones {
            let now_in = inside(&z.polygon, p);
            let was_in = track.inside.contains_key(&z.name);
            if now_in && !was_in {
                track.inside.insert(z.name.clone(), (now_ms, false));
                out.push((
                    "zone-enter",
                    Severity::Info,
                    vec![("zone", z.name.clone()), ("object", key.clone())],
                ));
            } else if !now_in && was_in {
                track.inside.remove(&z.name);
                out.push((
                    "zone-exit",
                    Severity::Info,
                    vec![("zone", z.name.clone()), ("object", key.clone())],
                ));
            }
        }
        for (kind, sev, attrs) in out {
            Self::emit(kind, sev, d, media_ns, &attrs)?;
        }
        self.check_loitering(now_ms)
    }

    fn check_loitering(&mut self, now_ms: u64) -> Result<()> {
        if self.cfg.loiter_seconds <= 0.0 {
            return Ok(());
        }
        let limit = (self.cfg.loiter_seconds * 1000.0) as u64;
        let mut fire = Vec::new();
        for (key, t) in self.tracks.iter_mut() {
            for (zone, (since, reported)) in t.inside.iter_mut() {
                if !*reported && now_ms.saturating_sub(*since) >= limit {
                    *reported = true;
                    if let Some(d) = &t.last {
                        fire.push((
                            zone.clone(),
                            key.clone(),
                            d.clone(),
                            t.media_ns,
                            now_ms - *since,
                        ));
                    }
                }
            }
        }
        for (zone, key, d, media_ns, stayed) in fire {
            Self::emit(
                "loitering",
                Severity::Warning,
                &d,
                media_ns,
                &[
                    ("zone", zone),
                    ("object", key),
                    ("seconds", format!("{:.1}", stayed as f64 / 1000.0)),
                ],
            )?;
        }
        Ok(())
    }
}

impl RulePlugin for Zones {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::rule("zones", env!("CARGO_PKG_VERSION"))
            .description("Zones and lines over detections: zone-enter, zone-exit, line-crossing and loitering events.")
            .tick_every_ms(500)
            .config_schema(
                r#"{
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "zones": {"type": "array", "items": {
                      "type": "object", "additionalProperties": false, "required": ["name", "polygon"],
                      "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "polygon": {"type": "array", "minItems": 3,
                                    "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                              "items": {"type": "number", "minimum": 0, "maximum": 1}}}
                      }}},
                    "lines": {"type": "array", "items": {
                      "type": "object", "additionalProperties": false, "required": ["name", "a", "b"],
                      "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "a": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number", "minimum": 0, "maximum": 1}},
                        "b": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number", "minimum": 0, "maximum": 1}}
                      }}},
                    "loiter_seconds": {"type": "number", "minimum": 0, "default": 10},
                    "labels": {"type": "array", "items": {"type": "string"}},
                    "forget_seconds": {"type": "number", "minimum": 0.1, "default": 5}
                  }
                }"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        if let Some(z) = cfg.zones.iter().find(|z| z.polygon.len() < 3) {
            return Err(Error::InvalidConfig(format!(
                "zone {:?} needs at least 3 points",
                z.name
            )));
        }
        Ok(Zones {
            cfg,
            tracks: HashMap::new(),
        })
    }

    fn on_event(&mut self, event: &Event) -> Result<()> {
        for d in &event.detections {
            self.observe(d, event.wall_ms, event.media_start_ns)?;
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: u64) -> Result<()> {
        let forget = (self.cfg.forget_seconds * 1000.0) as u64;
        self.tracks
            .retain(|_, t| now_ms.saturating_sub(t.last_seen_ms) < forget);
        self.check_loitering(now_ms)
    }
}

vigil_plugin_sdk::rule_plugin!(Zones);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        let square = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]];
        assert!(inside(&square, (0.4, 0.4)));
        assert!(!inside(&square, (0.7, 0.4)));
        let (a, b) = ([0.5, 0.0], [0.5, 1.0]);
        assert_eq!(
            crossing(a, b, (0.4, 0.5), (0.6, 0.5)),
            Some("left-to-right")
        );
        assert_eq!(
            crossing(a, b, (0.6, 0.5), (0.4, 0.5)),
            Some("right-to-left")
        );
        assert_eq!(crossing(a, b, (0.4, 0.5), (0.45, 0.5)), None);
        // Beyond the end of the segment: no crossing.
        assert_eq!(
            crossing([0.5, 0.0], [0.5, 0.3], (0.4, 0.5), (0.6, 0.5)),
            None
        );
    }
}
