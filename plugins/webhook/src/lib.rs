//! Webhook output: POSTs selected events as JSON to a URL, retrying with
//! exponential backoff. Needs the `http` capability and the URL's host on the
//! plugin's allow-list (`http_allow` in the host's `[[plugin]]`).

use std::time::Duration;

use vigil_plugin_sdk::{Capability, Error, Event, Manifest, OutputPlugin, Result};

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub url: String,
    /// Event kinds to deliver (empty: all).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Attempts after the first failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay; doubles each time.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Time one event may take, attempts and waits included. Keep it below the
    /// plugin's `call_timeout_ms` (1000 by default), or the host interrupts the
    /// call and restarts the instance.
    #[serde(default = "default_budget")]
    pub budget_ms: u64,
}

fn default_budget() -> u64 {
    800
}

fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    200
}

#[derive(Debug)]
pub struct Webhook {
    cfg: Config,
}

/// The JSON body for an event.
pub fn body(e: &Event) -> String {
    let detections: Vec<serde_json::Value> = e
        .detections
        .iter()
        .map(|d| {
            serde_json::json!({
                "label": d.label, "score": d.score, "track_id": d.track_id,
                "bbox": {"x": d.bbox.x, "y": d.bbox.y, "width": d.bbox.width, "height": d.bbox.height},
            })
        })
        .collect();
    let attributes: serde_json::Map<String, serde_json::Value> = e
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "id": e.id, "camera": e.camera, "plugin": e.plugin, "kind": e.kind,
        "severity": format!("{:?}", e.severity).to_lowercase(),
        "wall_ms": e.wall_ms, "media_start_ns": e.media_start_ns,
        "detections": detections, "attributes": attributes, "has_snapshot": e.has_snapshot,
    })
    .to_string()
}

impl OutputPlugin for Webhook {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::output("webhook", env!("CARGO_PKG_VERSION"))
            .description("POSTs selected events as JSON to a URL, with retries and exponential backoff.")
            .capability(Capability::Http)
            .config_schema(
                r#"{
                  "$schema": "https://json-schema.org/draft/2020-12/schema",
                  "type": "object",
                  "additionalProperties": false,
                  "required": ["url"],
                  "properties": {
                    "url": {"type": "string", "pattern": "^https?://", "description": "Where to POST events"},
                    "kinds": {"type": "array", "items": {"type": "string"}, "description": "Event kinds to deliver (empty: all)"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
                    "backoff_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "default": 200},
                    "budget_ms": {"type": "integer", "minimum": 10, "maximum": 600000, "default": 800,
                                  "description": "Time per event, attempts and waits included; below the plugin's call timeout"}
                  }
                }"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            return Err(Error::InvalidConfig(format!(
                "url {:?} must start with http:// or https://",
                cfg.url
            )));
        }
        Ok(Webhook { cfg })
    }

    fn on_event(&mut self, e: &Event) -> Result<()> {
        if !self.cfg.kinds.is_empty() && !self.cfg.kinds.contains(&e.kind) {
            return Ok(());
        }
        let payload = body(e);
        let headers: Vec<(&str, &str)> = self
            .cfg
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut delay = self.cfg.backoff_ms;
        let mut last = String::new();
        let start = std::time::Instant::now();
        let budget = Duration::from_millis(self.cfg.budget_ms);
        let mut attempts = 0;
        for attempt in 0..=self.cfg.retries {
            let left = budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            attempts += 1;
            match vigil_plugin_sdk::http::post_json_within(
                &self.cfg.url,
                payload.as_bytes(),
                &headers,
                left,
            ) {
                Ok(s) if (200..300).contains(&s) => return Ok(()),
                Ok(s) => last = format!("HTTP {s}"),
                // A denied destination will not get better by retrying.
                Err(m) if m.contains("denied") => {
                    return Err(Error::Failed(format!("{}: {m}", self.cfg.url)));
                }
                Err(m) => last = m,
            }
            let wait = Duration::from_millis(delay);
            if attempt == self.cfg.retries || start.elapsed() + wait >= budget {
                break;
            }
            std::thread::sleep(wait);
            delay = delay.saturating_mul(2);
        }
        Err(Error::Failed(format!(
            "{}: gave up after {attempts} attempt(s) in {} ms: {last}",
            self.cfg.url,
            start.elapsed().as_millis()
        )))
    }
}

vigil_plugin_sdk::output_plugin!(Webhook);
