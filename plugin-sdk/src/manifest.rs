//! What a plugin says about itself: its [`Manifest`].

use crate::wit::types;

/// A capability a plugin asks the operator for ([`Manifest::capability`]).
///
/// Asking is not having: the operator grants capabilities per plugin in
/// `vigil.toml` (`grants = ["http", "state", "files"]` in the plugin's
/// `[[plugin]]` entry, and `http_allow` for the hosts HTTP may reach). The host
/// loads a plugin whose requests are not granted (it logs which) and every use of
/// a missing capability fails with a reason instead of trapping.
///
/// ```
/// use vigil_plugin_sdk::{Capability, Manifest};
/// let m = Manifest::output("webhook", "1.0.0").capability(Capability::Http);
/// assert_eq!(m.capabilities, vec![Capability::Http]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Outbound HTTP requests ([`crate::http`], or `wasi:http` directly), to the
    /// hosts the operator allow-lists (`http_allow`).
    Http,
    /// Key-value storage per (plugin, camera) that outlives restarts
    /// ([`crate::state`]).
    State,
    /// A read-write directory per (plugin, camera), seen by the plugin as
    /// `/data` (use `std::fs`); on the host it is
    /// `data_dir/plugin-files/{plugin}/{camera}/`.
    Files,
    /// Loading and running neural-network models on the host
    /// ([`crate::inference`]).
    Inference,
}

impl Capability {
    fn name(self) -> &'static str {
        match self {
            Capability::Http => "http",
            Capability::State => "state",
            Capability::Files => "files",
            Capability::Inference => "inference",
        }
    }
}

/// A plugin's manifest: a builder, returned by the plugin trait's `manifest()`.
///
/// The host reads the manifest once per loaded version of the plugin (at start,
/// and on `POST /api/plugins/{id}/reload`), in a throw-away instance that is never
/// configured, and shows it in `GET /api/plugins` and `vigil plugin inspect`. A
/// manifest whose `config_schema` is not a valid JSON Schema makes the plugin
/// fail to load.
///
/// ```
/// use vigil_plugin_sdk::{Capability, Manifest};
/// let m = Manifest::analytics("motion", "1.0.0")
///     .description("Frame differencing")
///     .frames(5.0, false)
///     .config_schema(r#"{"type":"object"}"#)
///     .capability(Capability::State);
/// assert_eq!(m.name, "motion");
/// assert_eq!(m.frames, Some((5.0, false)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The plugin's name (the host keeps up to 128 characters). Operators refer to
    /// an installed plugin by the `id` they give it in `vigil.toml`, not by this.
    pub name: String,
    /// The plugin's version, e.g. `env!("CARGO_PKG_VERSION")` (up to 64
    /// characters kept).
    pub version: String,
    /// One or two sentences for operators (up to 2048 characters kept).
    pub description: String,
    /// Analytics plugins: `(max_fps, key_frames_only)`. See [`Manifest::frames`].
    pub frames: Option<(f32, bool)>,
    /// Rule plugins: the tick interval in milliseconds. See
    /// [`Manifest::tick_every_ms`].
    pub tick_every_ms: Option<u32>,
    /// Output plugins: the encoded packets wanted, `(video, audio)`. See
    /// [`Manifest::packets`].
    pub packets: Option<(bool, bool)>,
    /// JSON Schema of the configuration, as JSON text. See
    /// [`Manifest::config_schema`].
    pub config_schema: String,
    /// Capabilities the plugin asks for, without duplicates.
    pub capabilities: Vec<Capability>,
}

impl Manifest {
    fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            frames: None,
            tick_every_ms: None,
            packets: None,
            config_schema: r#"{"type":"object"}"#.into(),
            capabilities: Vec::new(),
        }
    }

    /// A manifest for an [`crate::AnalyticsPlugin`]. It asks for one key frame per
    /// second (the cheapest frame request) until [`Manifest::frames`] says
    /// otherwise; the schema accepts any JSON object until
    /// [`Manifest::config_schema`] says otherwise.
    ///
    /// ```
    /// let m = vigil_plugin_sdk::Manifest::analytics("brightness", "0.1.0");
    /// assert_eq!(m.frames, Some((1.0, true)));
    /// assert_eq!(m.config_schema, r#"{"type":"object"}"#);
    /// ```
    pub fn analytics(name: &str, version: &str) -> Self {
        Self {
            frames: Some((1.0, true)),
            ..Self::new(name, version)
        }
    }

    /// A manifest for a [`crate::RulePlugin`]: no ticks until
    /// [`Manifest::tick_every_ms`].
    ///
    /// ```
    /// let m = vigil_plugin_sdk::Manifest::rule("zones", "0.1.0").tick_every_ms(500);
    /// assert_eq!(m.tick_every_ms, Some(500));
    /// ```
    pub fn rule(name: &str, version: &str) -> Self {
        Self::new(name, version)
    }

    /// A manifest for an [`crate::OutputPlugin`]: events only, no packets until
    /// [`Manifest::packets`].
    ///
    /// ```
    /// let m = vigil_plugin_sdk::Manifest::output("webhook", "0.1.0");
    /// assert_eq!(m.packets, None);
    /// ```
    pub fn output(name: &str, version: &str) -> Self {
        Self::new(name, version)
    }

    /// Sets the description shown to operators.
    ///
    /// ```
    /// let m = vigil_plugin_sdk::Manifest::rule("zones", "0.1.0")
    ///     .description("Zone enter/exit and loitering over detections");
    /// assert!(m.description.starts_with("Zone"));
    /// ```
    pub fn description(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }

    /// Analytics plugins: the frames wanted. At most `max_fps` frames per second
    /// by the camera's clock (0: every decoded frame; the host caps it at 120), or,
    /// with `key_frames_only`, only key frames (about one per GOP, further limited
    /// by `max_fps`). Key frames only is the cheapest request: when every analytics
    /// plugin on a camera asks for it, the host decodes nothing else.
    ///
    /// ```
    /// use vigil_plugin_sdk::Manifest;
    /// // Up to 5 frames a second, any frame type:
    /// let m = Manifest::analytics("motion", "1.0.0").frames(5.0, false);
    /// assert_eq!(m.frames, Some((5.0, false)));
    /// // Every key frame, however often the camera sends them:
    /// let m = Manifest::analytics("scene", "1.0.0").frames(0.0, true);
    /// assert_eq!(m.frames, Some((0.0, true)));
    /// ```
    pub fn frames(mut self, max_fps: f32, key_frames_only: bool) -> Self {
        self.frames = Some((max_fps, key_frames_only));
        self
    }

    /// Rule plugins: call [`crate::RulePlugin::on_tick`] every `ms` milliseconds
    /// (the host makes it at least 10). Ticks that come due while the plugin is
    /// still busy are skipped, not queued.
    ///
    /// ```
    /// let m = vigil_plugin_sdk::Manifest::rule("loitering", "1.0.0").tick_every_ms(1000);
    /// assert_eq!(m.tick_every_ms, Some(1000));
    /// ```
    pub fn tick_every_ms(mut self, ms: u32) -> Self {
        self.tick_every_ms = Some(ms);
        self
    }

    /// Output plugins: ask for the camera's encoded packets (video and/or audio),
    /// handed to [`crate::OutputPlugin::on_packet`]. Ignored for other kinds and
    /// when both are false.
    ///
    /// ```
    /// use vigil_plugin_sdk::{Capability, Manifest};
    /// let m = Manifest::output("recorder", "1.0.0")
    ///     .packets(true, false)
    ///     .capability(Capability::Files);
    /// assert_eq!(m.packets, Some((true, false)));
    /// ```
    pub fn packets(mut self, video: bool, audio: bool) -> Self {
        self.packets = Some((video, audio));
        self
    }

    /// The JSON Schema (draft 2020-12) of the configuration, as JSON text. The
    /// host validates every configuration against it before the plugin sees it
    /// (config file at start, `PUT /api/cameras/{id}/plugins/{plugin}`,
    /// `vigil plugin run --config`) and refuses an invalid one naming the field,
    /// e.g. `/threshold: 999 is greater than the maximum of 255` (HTTP 422).
    /// The host does not fill in `default` values: give the same defaults to
    /// serde (`#[serde(default = ...)]`).
    ///
    /// ```
    /// let m = vigil_plugin_sdk::Manifest::analytics("brightness", "0.1.0").config_schema(
    ///     r#"{"type": "object", "additionalProperties": false,
    ///         "properties": {"threshold": {"type": "number", "minimum": 0, "maximum": 1}}}"#,
    /// );
    /// assert!(m.config_schema.contains("threshold"));
    /// ```
    pub fn config_schema(mut self, schema: &str) -> Self {
        self.config_schema = schema.into();
        self
    }

    /// Asks the operator for a capability (once; asking twice changes nothing).
    ///
    /// ```
    /// use vigil_plugin_sdk::{Capability, Manifest};
    /// let m = Manifest::output("archive", "0.1.0")
    ///     .capability(Capability::Files)
    ///     .capability(Capability::State)
    ///     .capability(Capability::Files);
    /// assert_eq!(m.capabilities, vec![Capability::Files, Capability::State]);
    /// ```
    pub fn capability(mut self, c: Capability) -> Self {
        if !self.capabilities.contains(&c) {
            self.capabilities.push(c);
        }
        self
    }

    pub(crate) fn into_wit(self, kind: types::PluginKind) -> types::Manifest {
        types::Manifest {
            name: self.name,
            version: self.version,
            kind,
            description: self.description,
            frames: self
                .frames
                .map(|(max_fps, key_frames_only)| types::FrameRequest {
                    max_fps,
                    key_frames_only,
                }),
            tick_interval_ms: self.tick_every_ms,
            packets: self
                .packets
                .map(|(video, audio)| types::PacketRequest { video, audio }),
            config_schema: self.config_schema,
            capabilities: self
                .capabilities
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
        }
    }
}
