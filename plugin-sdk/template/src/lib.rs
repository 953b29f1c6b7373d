//! A Vigil analytics plugin template: emits `brightness-high` when the mean
//! brightness of the picture rises above a threshold (lights switched on, a
//! flashlight, the sun on the lens) and `brightness-low` when it falls back below
//! the threshold minus a hysteresis (lights off, the lens covered).
//!
//! The pure logic (the mean, the threshold with hysteresis) is plain Rust and
//! unit-tested natively (`cargo test`); the plugin around it is what the host
//! calls. See README.md for building, running and installing it.

use vigil_plugin_sdk::{
    AnalyticsPlugin, Error, Frame, Manifest, NewEvent, PixelFormat, Result, Severity,
};

/// The configuration, as the operator writes it (JSON, or a TOML table in
/// `vigil.toml`). The host checks it against the schema in [`Brightness::manifest`]
/// first; the defaults here must match the schema's `default`s, because the host
/// does not fill them in.
#[derive(serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Mean luma (0–255) above which the picture counts as bright.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// How far below `threshold` the mean must fall to count as dark again, so a
    /// picture hovering around the threshold does not emit an event per frame.
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f32,
    /// Width in pixels the host scales the picture to before handing it over.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Attach a JPEG of the frame to each event.
    #[serde(default = "default_snapshot")]
    pub snapshot: bool,
}

fn default_threshold() -> f32 {
    100.0
}
fn default_hysteresis() -> f32 {
    10.0
}
fn default_width() -> u32 {
    64
}
fn default_snapshot() -> bool {
    true
}

/// The JSON Schema of [`Config`] (draft 2020-12). The host refuses a
/// configuration it rejects with a message naming the field.
const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "threshold": {"type": "number", "minimum": 0, "maximum": 255, "default": 100,
                  "description": "Mean luma (0-255) above which the picture is bright"},
    "hysteresis": {"type": "number", "minimum": 0, "maximum": 255, "default": 10,
                   "description": "How far below the threshold the mean must fall to be dark again"},
    "width": {"type": "integer", "minimum": 16, "maximum": 1920, "default": 64,
              "description": "Analysis width in pixels"},
    "snapshot": {"type": "boolean", "default": true,
                 "description": "Attach a JPEG of the frame to each event"}
  }
}"#;

/// The mean of 8-bit samples (0 for none).
///
/// Grey pictures from the host are the decoder's luma as is: about 16 for black
/// and 235 for white.
pub fn mean(pixels: &[u8]) -> f32 {
    if pixels.is_empty() {
        return 0.0;
    }
    let sum: u64 = pixels.iter().map(|&p| u64::from(p)).sum();
    sum as f32 / pixels.len() as f32
}

/// Bright or dark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The mean is above the threshold.
    High,
    /// The mean is below the threshold minus the hysteresis.
    Low,
}

/// A threshold with hysteresis: reports each change of [`Level`].
#[derive(Debug, Clone)]
pub struct Detector {
    threshold: f32,
    hysteresis: f32,
    level: Option<Level>,
}

impl Detector {
    /// A detector that has seen nothing yet.
    pub fn new(threshold: f32, hysteresis: f32) -> Self {
        Self {
            threshold,
            hysteresis,
            level: None,
        }
    }

    /// Takes the next mean; returns the new level when it changed. The first
    /// value only sets the starting level: there was no crossing to report.
    pub fn update(&mut self, mean: f32) -> Option<Level> {
        let next = match self.level {
            Some(Level::Low) | None if mean > self.threshold => Level::High,
            Some(Level::High) if mean < self.threshold - self.hysteresis => Level::Low,
            None => Level::Low,
            Some(level) => level,
        };
        let previous = self.level.replace(next);
        (previous.is_some() && previous != Some(next)).then_some(next)
    }
}

/// The plugin: one per camera.
#[derive(Debug)]
pub struct Brightness {
    cfg: Config,
    detector: Detector,
}

impl AnalyticsPlugin for Brightness {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::analytics("brightness", env!("CARGO_PKG_VERSION"))
            .description("Emits brightness-high / brightness-low when the picture's mean brightness crosses a threshold.")
            // Two frames a second are plenty for lighting changes; every decoded
            // frame type will do (key frames only would be cheaper but may come
            // only every few seconds).
            .frames(2.0, false)
            .config_schema(SCHEMA)
    }

    fn new(cfg: Config) -> Result<Self> {
        // What the schema cannot express: a relation between two fields.
        if cfg.hysteresis > cfg.threshold {
            return Err(Error::InvalidConfig(format!(
                "hysteresis {} must not exceed threshold {}",
                cfg.hysteresis, cfg.threshold
            )));
        }
        // No host calls here (logging, state, emit): `new` stays testable
        // natively, where host functions do not exist.
        Ok(Brightness {
            detector: Detector::new(cfg.threshold, cfg.hysteresis),
            cfg,
        })
    }

    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
        // Scaled down and converted on the host: only width × height bytes cross
        // into the plugin.
        let img = frame.pixels(PixelFormat::Gray8, self.cfg.width)?;
        let m = mean(&img.data);
        let Some(level) = self.detector.update(m) else {
            return Ok(());
        };
        vigil_plugin_sdk::debug!("mean brightness {m:.1}: now {level:?}");
        let (kind, severity) = match level {
            Level::High => ("brightness-high", Severity::Info),
            Level::Low => ("brightness-low", Severity::Warning),
        };
        let mut event = NewEvent::new(kind)
            .severity(severity)
            .attribute("mean", format!("{m:.1}"))
            .attribute("threshold", format!("{:.1}", self.cfg.threshold));
        if self.cfg.snapshot {
            event = event.snapshot();
        }
        // The event's media time is the frame's (the host fills it in). An error
        // (over the event budget, say) is returned: counted, the instance goes on.
        vigil_plugin_sdk::emit(event)?;
        Ok(())
    }
}

vigil_plugin_sdk::analytics_plugin!(Brightness);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_pixels() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[16, 16, 235, 235]), 125.5);
    }

    #[test]
    fn crossings_with_hysteresis() {
        let mut d = Detector::new(100.0, 10.0);
        // The first value sets the level without an event.
        assert_eq!(d.update(40.0), None);
        assert_eq!(d.update(99.0), None);
        assert_eq!(d.update(150.0), Some(Level::High));
        assert_eq!(d.update(160.0), None);
        // Hovering just under the threshold is not a crossing back.
        assert_eq!(d.update(95.0), None);
        assert_eq!(d.update(101.0), None);
        assert_eq!(d.update(89.0), Some(Level::Low));
        assert_eq!(d.update(30.0), None);
        // Starting bright: the first fall is reported.
        let mut d = Detector::new(100.0, 10.0);
        assert_eq!(d.update(200.0), None);
        assert_eq!(d.update(20.0), Some(Level::Low));
    }

    #[test]
    fn config_defaults_match_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let cfg: Config = serde_json::from_str("{}").unwrap();
        let props = &schema["properties"];
        assert_eq!(props["threshold"]["default"], cfg.threshold as f64);
        assert_eq!(props["hysteresis"]["default"], cfg.hysteresis as f64);
        assert_eq!(props["width"]["default"], cfg.width);
        assert_eq!(props["snapshot"]["default"], cfg.snapshot);
        // Unknown fields are refused by serde too (the schema says so first).
        assert!(serde_json::from_str::<Config>(r#"{"treshold": 3}"#).is_err());
    }

    #[test]
    fn refuses_a_hysteresis_above_the_threshold() {
        let cfg = Config {
            threshold: 5.0,
            hysteresis: 10.0,
            width: 64,
            snapshot: false,
        };
        assert!(matches!(
            Brightness::new(cfg),
            Err(Error::InvalidConfig(m)) if m.contains("hysteresis")
        ));
    }
}
