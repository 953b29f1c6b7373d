//! What a plugin says about itself.

use crate::wit::types;

/// A capability a plugin asks the operator for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Outbound HTTP requests (`wasi:http`), to hosts the operator allow-lists.
    Http,
    /// Key-value storage per camera ([`crate::state`]).
    State,
    /// A directory, seen by the plugin as `/data`.
    Files,
}

impl Capability {
    fn name(self) -> &'static str {
        match self {
            Capability::Http => "http",
            Capability::State => "state",
            Capability::Files => "files",
        }
    }
}

/// A plugin's manifest: a builder.
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
    pub name: String,
    pub version: String,
    pub description: String,
    /// Analytics: `(max_fps, key_frames_only)`.
    pub frames: Option<(f32, bool)>,
    /// Rules: tick interval in milliseconds.
    pub tick_every_ms: Option<u32>,
    /// Outputs: encoded packets wanted, `(video, audio)`.
    pub packets: Option<(bool, bool)>,
    /// JSON Schema of the configuration, as JSON text.
    pub config_schema: String,
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

    /// For an [`crate::AnalyticsPlugin`]; asks for one key frame per second unless
    /// [`Manifest::frames`] says otherwise.
    pub fn analytics(name: &str, version: &str) -> Self {
        Self {
            frames: Some((1.0, true)),
            ..Self::new(name, version)
        }
    }

    /// For a [`crate::RulePlugin`].
    pub fn rule(name: &str, version: &str) -> Self {
        Self::new(name, version)
    }

    /// For an [`crate::OutputPlugin`].
    pub fn output(name: &str, version: &str) -> Self {
        Self::new(name, version)
    }

    pub fn description(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }

    /// Frames wanted: at most `max_fps` per second (0: every decoded frame), or
    /// only key frames (the cheapest: nothing else gets decoded).
    pub fn frames(mut self, max_fps: f32, key_frames_only: bool) -> Self {
        self.frames = Some((max_fps, key_frames_only));
        self
    }

    /// Rules: call `on_tick` this often.
    pub fn tick_every_ms(mut self, ms: u32) -> Self {
        self.tick_every_ms = Some(ms);
        self
    }

    /// Outputs: ask for the camera's encoded packets (video and/or audio), handed
    /// to [`crate::OutputPlugin::on_packet`].
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

    /// The JSON Schema of the configuration. The host validates configurations
    /// against it and shows field errors to the operator.
    pub fn config_schema(mut self, schema: &str) -> Self {
        self.config_schema = schema.into();
        self
    }

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
