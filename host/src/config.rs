//! The `vigil.toml` model: parsing, defaults and validation.
//!
//! Every error names the file, the line and the key, because operators edit this file
//! by hand. Camera URLs keep their credentials only inside [`CameraConfig`]; anything
//! shown to people goes through [`redact_url`]. This module knows nothing of media,
//! RTSP sessions or HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// How the RTSP session carries RTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved on the RTSP TCP connection (robust through NAT and firewalls).
    #[default]
    Tcp,
    /// RTP over UDP (lower overhead on a clean LAN).
    Udp,
}

/// When a camera is connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Always connected, whether or not anyone watches.
    #[default]
    Always,
    /// Connected on the first consumer, disconnected after an idle grace period.
    OnDemand,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub hls: HlsConfig,
    pub webrtc: WebrtcConfig,
    pub mjpeg: MjpegConfig,
    pub snapshot: SnapshotConfig,
    pub events: EventsConfig,
    pub plugins: PluginsConfig,
    /// `[[plugin]]`: installed plugins.
    pub plugin: Vec<PluginConfig>,
    pub cameras: Vec<CameraConfig>,
}

/// `[events]`: the event store.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    pub max_age: Duration,
    pub max_events: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(30 * 86_400),
            max_events: 1_000_000,
        }
    }
}

/// `[plugins]`: the plugin runtime.
#[derive(Clone, Debug)]
pub struct PluginsConfig {
    /// Threads running plugin code (apart from ingest and HTTP).
    pub threads: usize,
    /// Default deadline of one plugin call.
    pub call_timeout: Duration,
    /// Default memory limit of one plugin instance.
    pub memory_limit: usize,
    /// Most plugin instances at once (sizes the pooling allocator).
    pub max_instances: usize,
    /// Events one instance may emit per second (burst: twice that).
    pub events_per_second: u32,
    /// Rule plugins get their ticks from the input's timeline (`Input::Tick`)
    /// instead of the clock: the offline runner replaying an events file.
    pub replay_ticks: bool,
    /// `[inference]`: models and the inference pool.
    pub inference: crate::inference::InferenceConfig,
    /// `[inference] models_dir` was given (else: `data_dir/models`).
    pub inference_models_dir_set: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            call_timeout: Duration::from_millis(1000),
            memory_limit: 64 << 20,
            max_instances: 2000,
            events_per_second: 50,
            replay_ticks: false,
            inference: Default::default(),
            inference_models_dir_set: false,
        }
    }
}

/// One `[[plugin]]`: a `.wasm` component and what the operator grants it.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// `[a-z0-9_-]`, unique.
    pub id: String,
    pub path: PathBuf,
    /// Capabilities granted: `http`, `state`, `files`.
    pub grants: Vec<String>,
    /// Hosts the `http` capability may reach (exact host names or IPs).
    pub http_allow: Vec<String>,
    pub call_timeout: Option<Duration>,
    pub memory_limit: Option<usize>,
    /// Frames (or events) queued per instance; the oldest go when it is full.
    pub queue: usize,
}

/// A plugin enabled on a camera by the config file.
#[derive(Clone, Debug)]
pub struct CameraPlugin {
    pub plugin: String,
    /// The plugin's configuration (validated against its schema at start).
    pub config: serde_json::Value,
}

/// `[mjpeg]`: the per-camera MJPEG encoder.
#[derive(Clone, Copy, Debug)]
pub struct MjpegConfig {
    /// Pictures per second encoded per camera.
    pub fps: f64,
    /// Width of the pictures (aspect kept); `None`: the camera's.
    pub width: Option<u32>,
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

impl Default for MjpegConfig {
    fn default() -> Self {
        Self {
            fps: 5.0,
            width: None,
            quality: 70,
        }
    }
}

/// `[snapshot]`.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotConfig {
    /// JPEG quality, 1..=100.
    pub quality: u8,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self { quality: 80 }
    }
}

/// One `[[webrtc.ice_server]]`.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: String,
}

/// `[webrtc]`: WHEP sessions.
#[derive(Clone, Debug)]
pub struct WebrtcConfig {
    /// Local IPs whose UDP sockets become ICE host candidates. `0.0.0.0` stands for
    /// every non-loopback interface.
    pub addresses: Vec<std::net::IpAddr>,
    /// UDP ports for sessions (one per session and address); `None`: ephemeral.
    pub ports: Option<(u16, u16)>,
    /// Public IPs announced instead of the host candidates' (1:1 NAT).
    pub public_ips: Vec<std::net::IpAddr>,
    pub ice_servers: Vec<IceServer>,
    pub max_sessions: usize,
    pub max_sessions_per_camera: usize,
    /// A session that is not connected this long after its answer is closed.
    pub connect_timeout: Duration,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            addresses: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from([0, 0, 0, 0]),
            ],
            ports: None,
            public_ips: Vec::new(),
            ice_servers: Vec::new(),
            max_sessions: 500,
            max_sessions_per_camera: 100,
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
}

/// `[ingest]`: the supervisor's retry policy and timeouts.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// First retry delay after a failure.
    pub retry_initial: Duration,
    /// Cap of the exponential backoff; small enough that a camera that comes back
    /// streams again within about this long.
    pub retry_max: Duration,
    /// Delay between the starts of consecutive cameras, so a thousand cameras do not
    /// all dial at once.
    pub stagger: Duration,
    /// How long an on-demand camera stays connected after its last consumer left.
    pub idle_grace: Duration,
    /// A session that delivers no frame for this long is considered dead.
    pub read_timeout: Duration,
}

/// `[hls]`: LL-HLS muxer tuning.
#[derive(Clone, Debug)]
pub struct HlsConfig {
    pub part_target: Duration,
    pub segment_target: Duration,
    /// Complete segments kept in the playlist.
    pub window_segments: usize,
    /// Hard cap of media bytes one camera's muxer keeps.
    pub max_buffer_bytes: usize,
    /// A muxer nobody requested anything from for this long is closed.
    pub idle_timeout: Duration,
    /// Hard cap of HLS requests waiting (blocking reload) at once, per camera.
    pub max_waiting_requests: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_millis(1000),
            stagger: Duration::from_millis(5),
            idle_grace: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_millis(1000),
            window_segments: 6,
            max_buffer_bytes: 32 << 20,
            idle_timeout: Duration::from_secs(30),
            max_waiting_requests: 256,
        }
    }
}

/// One `[[camera]]`.
#[derive(Clone)]
pub struct CameraConfig {
    pub id: String,
    /// Display name; defaults to the id.
    pub name: String,
    /// The URL without credentials (safe to show).
    pub url: url::Url,
    pub username: Option<String>,
    pub password: Option<String>,
    pub transport: Transport,
    pub mode: Mode,
    /// Plugins enabled on this camera (`[[camera.plugin]]`).
    pub plugins: Vec<CameraPlugin>,
}

impl std::fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraConfig")
            .field("id", &self.id)
            .field("url", &self.url.as_str())
            .field("has_credentials", &self.username.is_some())
            .field("transport", &self.transport)
            .field("mode", &self.mode)
            .finish()
    }
}

impl CameraConfig {
    /// The URL for people to read: no credentials, `***@` when some are configured.
    pub fn display_url(&self) -> String {
        if self.username.is_some() {
            let mut u = self.url.clone();
            let _ = u.set_username("***");
            u.to_string()
        } else {
            self.url.to_string()
        }
    }
}

/// Removes any credentials from a URL-ish string for display; tolerant of bad URLs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_password(None);
                let _ = u.set_username("***");
            }
            u.to_string()
        }
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &raw[..s + 3], &raw[at..]),
            _ => raw.to_string(),
        },
    }
}

/// A configuration error that names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default)]
    hls: RawHls,
    #[serde(default)]
    webrtc: RawWebrtc,
    #[serde(default)]
    mjpeg: RawMjpeg,
    #[serde(default)]
    snapshot: RawSnapshot,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    inference: RawInference,
    #[serde(default)]
    plugin: Vec<RawPlugin>,
    #[serde(default)]
    camera: Vec<RawCamera>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebrtc {
    addresses: Option<Spanned<Vec<String>>>,
    port_range: Option<Spanned<String>>,
    public_ips: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    ice_server: Vec<Spanned<IceServer>>,
    max_sessions: Option<Spanned<usize>>,
    max_sessions_per_camera: Option<Spanned<usize>>,
    connect_timeout_s: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMjpeg {
    fps: Option<Spanned<f64>>,
    width: Option<Spanned<u32>>,
    quality: Option<Spanned<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    quality: Option<Spanned<u8>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    data_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    retry_initial_ms: Option<Spanned<u64>>,
    retry_max_ms: Option<Spanned<u64>>,
    stagger_ms: Option<u64>,
    idle_grace_s: Option<u64>,
    read_timeout_s: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHls {
    part_target_ms: Option<Spanned<u64>>,
    segment_target_ms: Option<Spanned<u64>>,
    window_segments: Option<Spanned<usize>>,
    max_buffer_mib: Option<Spanned<usize>>,
    idle_timeout_s: Option<u64>,
    max_waiting_requests: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    id: Spanned<String>,
    name: Option<String>,
    url: Spanned<String>,
    #[serde(default)]
    transport: Transport,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    plugin: Vec<RawCameraPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCameraPlugin {
    id: Spanned<String>,
    #[serde(default)]
    config: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    id: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    grants: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    http_allow: Vec<String>,
    call_timeout_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<usize>>,
    queue: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    max_age_days: Option<Spanned<u64>>,
    max_events: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInference {
    threads: Option<Spanned<usize>>,
    threads_per_run: Option<Spanned<usize>>,
    queue: Option<Spanned<usize>>,
    max_model_mib: Option<Spanned<usize>>,
    models_dir: Option<Spanned<String>>,
    vigil_kernels: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    threads: Option<Spanned<usize>>,
    call_timeout_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<usize>>,
    max_instances: Option<Spanned<usize>>,
    events_per_second: Option<Spanned<u32>>,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        key: "-".into(),
        reason: format!("cannot read: {e}"),
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses and validates config text; `file` is used in error messages only.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let err = |span: std::ops::Range<usize>, key: &str, reason: String| ConfigError {
        file: file.to_string(),
        line: line_of(text, span.start),
        key: key.to_string(),
        reason,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = key_at(text, span.start);
        err(span, &key, e.message().trim().replace('\n', " "))
    })?;

    let listen = match &raw.server.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(s) => s.get_ref().parse::<SocketAddr>().map_err(|e| {
            err(
                s.span(),
                "server.listen",
                format!("{:?} is not an address:port ({e})", s.get_ref()),
            )
        })?,
    };
    let server = ServerConfig {
        listen,
        data_dir: PathBuf::from(raw.server.data_dir.unwrap_or_else(|| "./data".into())),
    };

    let mut ingest = IngestConfig::default();
    let ms = |v: &Option<Spanned<u64>>,
              key: &str,
              min: u64,
              max: u64|
     -> Result<Option<Duration>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) if (min..=max).contains(s.get_ref()) => {
                Ok(Some(Duration::from_millis(*s.get_ref())))
            }
            Some(s) => Err(err(
                s.span(),
                key,
                format!("{} is out of range {min}..={max}", s.get_ref()),
            )),
        }
    };
    if let Some(d) = ms(
        &raw.ingest.retry_initial_ms,
        "ingest.retry_initial_ms",
        10,
        60_000,
    )? {
        ingest.retry_initial = d;
    }
    if let Some(d) = ms(&raw.ingest.retry_max_ms, "ingest.retry_max_ms", 10, 600_000)? {
        ingest.retry_max = d;
    }
    ingest.retry_max = ingest.retry_max.max(ingest.retry_initial);
    if let Some(v) = raw.ingest.stagger_ms {
        ingest.stagger = Duration::from_millis(v.min(10_000));
    }
    if let Some(v) = raw.ingest.idle_grace_s {
        ingest.idle_grace = Duration::from_secs(v);
    }
    if let Some(s) = &raw.ingest.read_timeout_s {
        if !(1..=600).contains(s.get_ref()) {
            return Err(err(
                s.span(),
                "ingest.read_timeout_s",
                format!("{} is out of range 1..=600", s.get_ref()),
            ));
        }
        ingest.read_timeout = Duration::from_secs(*s.get_ref());
    }

    let mut hls = HlsConfig::default();
    if let Some(d) = ms(&raw.hls.part_target_ms, "hls.part_target_ms", 50, 2_000)? {
        hls.part_target = d;
    }
    if let Some(d) = ms(
        &raw.hls.segment_target_ms,
        "hls.segment_target_ms",
        200,
        10_000,
    )? {
        hls.segment_target = d;
    }
    if hls.segment_target < hls.part_target {
        let span = raw
            .hls
            .segment_target_ms
            .as_ref()
            .map(|s| s.span())
            .unwrap_or(0..0);
        return Err(err(
            span,
            "hls.segment_target_ms",
            "must be at least hls.part_target_ms".into(),
        ));
    }
    if let Some(s) = &raw.hls.window_segments {
        if !(2..=60).contains(s.get_ref()) {
            return Err(err(
                s.span(),
                "hls.window_segments",
                format!("{} is out of range 2..=60", s.get_ref()),
            ));
        }
        hls.window_segments = *s.get_ref();
    }
    if let Some(s) = &raw.hls.max_buffer_mib {
        if !(1..=4096).contains(s.get_ref()) {
            return Err(err(
                s.span(),
                "hls.max_buffer_mib",
                format!("{} is out of range 1..=4096", s.get_ref()),
            ));
        }
        hls.max_buffer_bytes = *s.get_ref() << 20;
    }
    if let Some(v) = raw.hls.idle_timeout_s {
        hls.idle_timeout = Duration::from_secs(v.max(1));
    }
    if let Some(v) = raw.hls.max_waiting_requests {
        hls.max_waiting_requests = v.max(1);
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cameras = Vec::with_capacity(raw.camera.len());
    for c in raw.camera {
        let id = c.id.get_ref();
        if !valid_id(id) {
            return Err(err(
                c.id.span(),
                "camera.id",
                format!(
                    "{id:?} is not a valid id: use 1 to 64 characters of a-z, 0-9, '_' and '-'"
                ),
            ));
        }
        if let Some(first) = seen.get(id) {
            return Err(err(
                c.id.span(),
                "camera.id",
                format!("duplicate id {id:?} (first defined on line {first})"),
            ));
        }
        seen.insert(id.clone(), line_of(text, c.id.span().start));
        let (url, username, password) = parse_camera_url(c.url.get_ref())
            .map_err(|reason| err(c.url.span(), "camera.url", reason))?;
        let mut plugins = Vec::new();
        for p in c.plugin {
            if !raw
                .plugin
                .iter()
                .any(|rp| rp.id.get_ref() == p.id.get_ref())
            {
                return Err(err(
                    p.id.span(),
                    "camera.plugin.id",
                    format!("no [[plugin]] with id {:?}", p.id.get_ref()),
                ));
            }
            if plugins
                .iter()
                .any(|q: &CameraPlugin| &q.plugin == p.id.get_ref())
            {
                return Err(err(
                    p.id.span(),
                    "camera.plugin.id",
                    format!(
                        "plugin {:?} is enabled twice on camera {id:?}",
                        p.id.get_ref()
                    ),
                ));
            }
            let config = match p.config {
                None => serde_json::Value::Object(Default::default()),
                Some(v) => serde_json::to_value(v).map_err(|e| {
                    err(
                        p.id.span(),
                        "camera.plugin.config",
                        format!("cannot be converted to JSON: {e}"),
                    )
                })?,
            };
            plugins.push(CameraPlugin {
                plugin: p.id.get_ref().clone(),
                config,
            });
        }
        cameras.push(CameraConfig {
            id: id.clone(),
            name: c.name.unwrap_or_else(|| id.clone()),
            url,
            username,
            password,
            transport: c.transport,
            mode: c.mode,
            plugins,
        });
    }

    let mut plugin = Vec::new();
    for p in &raw.plugin {
        let pid = p.id.get_ref();
        if !valid_id(pid) {
            return Err(err(
                p.id.span(),
                "plugin.id",
                format!(
                    "{pid:?} is not a valid id: use 1 to 64 characters of a-z, 0-9, '_' and '-'"
                ),
            ));
        }
        if plugin.iter().any(|q: &PluginConfig| &q.id == pid) {
            return Err(err(
                p.id.span(),
                "plugin.id",
                format!("duplicate plugin id {pid:?}"),
            ));
        }
        let grants: Vec<String> = p
            .grants
            .as_ref()
            .map(|g| g.get_ref().clone())
            .unwrap_or_default();
        if let Some(g) = grants
            .iter()
            .find(|g| !matches!(g.as_str(), "http" | "state" | "files" | "inference"))
        {
            let span = p.grants.as_ref().map_or(0..0, |s| s.span());
            return Err(err(
                span,
                "plugin.grants",
                format!("{g:?} is not a capability: use http, state, files or inference"),
            ));
        }
        let path = PathBuf::from(p.path.get_ref());
        if p.path.get_ref().is_empty() {
            return Err(err(p.path.span(), "plugin.path", "is empty".into()));
        }
        let timeout = match &p.call_timeout_ms {
            None => None,
            Some(s) if (1..=600_000).contains(s.get_ref()) => {
                Some(Duration::from_millis(*s.get_ref()))
            }
            Some(s) => {
                return Err(err(
                    s.span(),
                    "plugin.call_timeout_ms",
                    format!("{} is out of range 1..=600000", s.get_ref()),
                ));
            }
        };
        let memory = match &p.memory_mib {
            None => None,
            Some(s) if (1..=4096).contains(s.get_ref()) => Some(*s.get_ref() << 20),
            Some(s) => {
                return Err(err(
                    s.span(),
                    "plugin.memory_mib",
                    format!("{} is out of range 1..=4096", s.get_ref()),
                ));
            }
        };
        let queue = match &p.queue {
            None => 4,
            Some(s) if (1..=10_000).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                return Err(err(
                    s.span(),
                    "plugin.queue",
                    format!("{} is out of range 1..=10000", s.get_ref()),
                ));
            }
        };
        plugin.push(PluginConfig {
            id: pid.clone(),
            path,
            grants,
            http_allow: p
                .http_allow
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            call_timeout: timeout,
            memory_limit: memory,
            queue,
        });
    }
    let mut events = EventsConfig::default();
    if let Some(d) = &raw.events.max_age_days {
        if !(1..=36_500).contains(d.get_ref()) {
            return Err(err(
                d.span(),
                "events.max_age_days",
                format!("{} is out of range 1..=36500", d.get_ref()),
            ));
        }
        events.max_age = Duration::from_secs(d.get_ref() * 86_400);
    }
    if let Some(n) = &raw.events.max_events {
        if *n.get_ref() < 1 {
            return Err(err(
                n.span(),
                "events.max_events",
                "must be at least 1".into(),
            ));
        }
        events.max_events = *n.get_ref();
    }
    let mut plugins = PluginsConfig::default();
    let rp = &raw.plugins;
    if let Some(t) = &rp.threads {
        if !(1..=256).contains(t.get_ref()) {
            return Err(err(
                t.span(),
                "plugins.threads",
                format!("{} is out of range 1..=256", t.get_ref()),
            ));
        }
        plugins.threads = *t.get_ref();
    }
    if let Some(t) = &rp.call_timeout_ms {
        if !(1..=600_000).contains(t.get_ref()) {
            return Err(err(
                t.span(),
                "plugins.call_timeout_ms",
                format!("{} is out of range 1..=600000", t.get_ref()),
            ));
        }
        plugins.call_timeout = Duration::from_millis(*t.get_ref());
    }
    if let Some(m) = &rp.memory_mib {
        if !(1..=4096).contains(m.get_ref()) {
            return Err(err(
                m.span(),
                "plugins.memory_mib",
                format!("{} is out of range 1..=4096", m.get_ref()),
            ));
        }
        plugins.memory_limit = *m.get_ref() << 20;
    }
    if let Some(m) = &rp.max_instances {
        if !(1..=100_000).contains(m.get_ref()) {
            return Err(err(
                m.span(),
                "plugins.max_instances",
                format!("{} is out of range 1..=100000", m.get_ref()),
            ));
        }
        plugins.max_instances = *m.get_ref();
    }
    if let Some(m) = &rp.events_per_second {
        if !(1..=100_000).contains(m.get_ref()) {
            return Err(err(
                m.span(),
                "plugins.events_per_second",
                format!("{} is out of range 1..=100000", m.get_ref()),
            ));
        }
        plugins.events_per_second = *m.get_ref();
    }
    let ri = &raw.inference;
    let range = |v: &Option<Spanned<usize>>, key: &str, lo: usize, hi: usize| match v {
        None => Ok(None),
        Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(Some(*s.get_ref())),
        Some(s) => Err(err(
            s.span(),
            key,
            format!("{} is out of range {lo}..={hi}", s.get_ref()),
        )),
    };
    if let Some(t) = range(&ri.threads, "inference.threads", 1, 256)? {
        plugins.inference.threads = t;
    }
    if let Some(t) = range(&ri.threads_per_run, "inference.threads_per_run", 1, 64)? {
        plugins.inference.threads_per_run = t;
    }
    if let Some(k) = ri.vigil_kernels {
        plugins.inference.vigil_kernels = k;
    }
    if let Some(q) = range(&ri.queue, "inference.queue", 1, 10_000)? {
        plugins.inference.queue = q;
    }
    if let Some(m) = range(&ri.max_model_mib, "inference.max_model_mib", 1, 4096)? {
        plugins.inference.max_model_bytes = m << 20;
    }
    if let Some(d) = &ri.models_dir {
        if d.get_ref().is_empty() {
            return Err(err(d.span(), "inference.models_dir", "is empty".into()));
        }
        plugins.inference.models_dir = PathBuf::from(d.get_ref());
        plugins.inference_models_dir_set = true;
    }
    let mut webrtc = WebrtcConfig::default();
    let w = &raw.webrtc;
    let ips = |v: &Spanned<Vec<String>>, key: &str| -> Result<Vec<std::net::IpAddr>, ConfigError> {
        v.get_ref()
            .iter()
            .map(|s| {
                s.parse::<std::net::IpAddr>()
                    .map_err(|_| err(v.span(), key, format!("{s:?} is not an IP address")))
            })
            .collect()
    };
    if let Some(a) = &w.addresses {
        webrtc.addresses = ips(a, "webrtc.addresses")?;
        if webrtc.addresses.is_empty() {
            return Err(err(
                a.span(),
                "webrtc.addresses",
                "needs at least one address".into(),
            ));
        }
    }
    if let Some(p) = &w.public_ips {
        webrtc.public_ips = ips(p, "webrtc.public_ips")?;
    }
    if let Some(r) = &w.port_range {
        let bad = || {
            err(
                r.span(),
                "webrtc.port_range",
                format!(
                    "{:?} is not a range like \"40000-40199\" of ports 1..=65535",
                    r.get_ref()
                ),
            )
        };
        let (a, b) = r.get_ref().split_once('-').ok_or_else(bad)?;
        let (a, b): (u16, u16) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || b < a {
            return Err(bad());
        }
        webrtc.ports = Some((a, b));
    }
    for s in &w.ice_server {
        let urls = &s.get_ref().urls;
        if urls.is_empty()
            || urls
                .iter()
                .any(|u| !(u.starts_with("stun:") || u.starts_with("turn:")))
        {
            return Err(err(
                s.span(),
                "webrtc.ice_server.urls",
                format!("{urls:?}: give at least one URL, each starting with stun: or turn:"),
            ));
        }
    }
    webrtc.ice_servers = w.ice_server.iter().map(|s| s.get_ref().clone()).collect();
    let count =
        |v: &Option<Spanned<usize>>, key: &str, default: usize| -> Result<usize, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) if (1..=100_000).contains(s.get_ref()) => Ok(*s.get_ref()),
                Some(s) => Err(err(
                    s.span(),
                    key,
                    format!("{} is out of range 1..=100000", s.get_ref()),
                )),
            }
        };
    webrtc.max_sessions = count(&w.max_sessions, "webrtc.max_sessions", webrtc.max_sessions)?;
    webrtc.max_sessions_per_camera = count(
        &w.max_sessions_per_camera,
        "webrtc.max_sessions_per_camera",
        webrtc.max_sessions_per_camera,
    )?;
    if let Some(s) = &w.connect_timeout_s {
        if !(1..=600).contains(s.get_ref()) {
            return Err(err(
                s.span(),
                "webrtc.connect_timeout_s",
                format!("{} is out of range 1..=600", s.get_ref()),
            ));
        }
        webrtc.connect_timeout = Duration::from_secs(*s.get_ref());
    }

    let quality = |v: &Option<Spanned<u8>>, key: &str, default: u8| -> Result<u8, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if (1..=100).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(err(
                s.span(),
                key,
                format!("{} is out of range 1..=100", s.get_ref()),
            )),
        }
    };
    let mut mjpeg = MjpegConfig::default();
    if let Some(f) = &raw.mjpeg.fps {
        if !(0.1..=60.0).contains(f.get_ref()) {
            return Err(err(
                f.span(),
                "mjpeg.fps",
                format!("{} is out of range 0.1..=60", f.get_ref()),
            ));
        }
        mjpeg.fps = *f.get_ref();
    }
    if let Some(wd) = &raw.mjpeg.width {
        if !(16..=7680).contains(wd.get_ref()) {
            return Err(err(
                wd.span(),
                "mjpeg.width",
                format!("{} is out of range 16..=7680", wd.get_ref()),
            ));
        }
        mjpeg.width = Some(*wd.get_ref());
    }
    mjpeg.quality = quality(&raw.mjpeg.quality, "mjpeg.quality", mjpeg.quality)?;
    let snapshot = SnapshotConfig {
        quality: quality(
            &raw.snapshot.quality,
            "snapshot.quality",
            SnapshotConfig::default().quality,
        )?,
    };

    Ok(Config {
        server,
        ingest,
        hls,
        webrtc,
        mjpeg,
        snapshot,
        events,
        plugins,
        plugin,
        cameras,
    })
}

/// `[a-z0-9_-]{1,64}`: ids appear in URLs and file names.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Splits a camera URL into the URL without credentials and the credentials.
/// Error messages never repeat the credentials.
pub fn parse_camera_url(raw: &str) -> Result<(url::Url, Option<String>, Option<String>), String> {
    let shown = redact_url(raw);
    let mut u = url::Url::parse(raw).map_err(|e| format!("{shown:?} is not a valid URL: {e}"))?;
    if u.scheme() != "rtsp" {
        return Err(format!(
            "{shown:?} has scheme {:?}; only rtsp:// is supported",
            u.scheme()
        ));
    }
    match u.host_str() {
        None | Some("") => return Err(format!("{shown:?} has no host")),
        Some(_) => {}
    }
    if u.port() == Some(0) {
        return Err(format!("{shown:?} has port 0"));
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let username = (!u.username().is_empty()).then(|| decode(u.username()));
    let password = u.password().map(decode);
    if username.is_none() && password.is_some() {
        return Err(format!("{shown:?} has a password but no user name"));
    }
    let _ = u.set_username("");
    let _ = u.set_password(None);
    Ok((u, username, password))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort name of the key at `offset`: `table.key` from the enclosing header and
/// the `key =` on that line, for parse errors that toml reports without a key.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[start..end];
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    // On a header line (`[[camera]]` missing a field), the table is the line itself.
    let table = text[..end]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (table, key.is_empty()) {
        (Some(t), false) => format!("{t}.{key}"),
        (Some(t), true) => t,
        (None, false) => key,
        (None, true) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"

[[camera]]
id = "lobby"
url = "rtsp://user:p%40ss@127.0.0.1:8554/lobby"
transport = "tcp"
mode = "always"

[[camera]]
id = "dock-2"
url = "rtsp://10.0.0.7/stream1"
transport = "udp"
mode = "on-demand"
"#;

    #[test]
    fn parses_good_config() {
        let c = parse("vigil.toml", GOOD).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.cameras.len(), 2);
        let lobby = &c.cameras[0];
        assert_eq!(lobby.username.as_deref(), Some("user"));
        assert_eq!(lobby.password.as_deref(), Some("p@ss"));
        assert_eq!(lobby.url.as_str(), "rtsp://127.0.0.1:8554/lobby");
        assert_eq!(lobby.display_url(), "rtsp://***@127.0.0.1:8554/lobby");
        assert!(!format!("{lobby:?}").contains("p%40ss"));
        assert_eq!(c.cameras[1].mode, Mode::OnDemand);
        assert_eq!(c.cameras[1].transport, Transport::Udp);
    }

    /// One bad config per case: the expected line, key and a fragment of the reason.
    fn check(text: &str, line: usize, key: &str, reason: &str) {
        let e = parse("site.toml", text).expect_err("config should be rejected");
        let s = e.to_string();
        assert!(s.starts_with(&format!("site.toml:{line}: {key}: ")), "{s}");
        assert!(s.contains(reason), "{s}");
        assert!(!s.contains("secret"), "credentials leaked: {s}");
    }

    #[test]
    fn bad_configs_name_file_line_and_key() {
        check(
            "[server]\nlisten = \"127.0.0.1:8080\"\nlisen = 1\n",
            3,
            "server.lisen",
            "unknown field",
        );
        check(
            "[[camera]]\nid = \"Lobby!\"\nurl = \"rtsp://h/x\"\n",
            2,
            "camera.id",
            "not a valid id",
        );
        check(
            "[[camera]]\nid = \"a\"\nurl = \"rtsp://h/x\"\n[[camera]]\nid = \"a\"\nurl = \"rtsp://h/y\"\n",
            5,
            "camera.id",
            "duplicate id \"a\" (first defined on line 2)",
        );
        check(
            "[[camera]]\nid = \"a\"\nurl = \"http://u:secret@h/x\"\n",
            3,
            "camera.url",
            "only rtsp://",
        );
        check(
            "[[camera]]\nid = \"a\"\nurl = \"rtsp://u:secret@h:99999/x\"\n",
            3,
            "camera.url",
            "not a valid URL",
        );
        check(
            "[server]\nlisten = \"127.0.0.1:70000\"\n",
            2,
            "server.listen",
            "not an address:port",
        );
        check(
            "[[camera]]\nid = \"a\"\nurl = \"rtsp://h/x\"\ntransport = \"tcpx\"\n",
            4,
            "camera.transport",
            "tcpx",
        );
        check(
            "[[camera]]\nid = \"a\"\nurl = \"rtsp://h/x\"\nmode = \"sometimes\"\n",
            4,
            "camera.mode",
            "sometimes",
        );
        check(
            "[[camera]]\nid = \"a\"\n",
            1,
            "camera",
            "missing field `url`",
        );
        check("[server\n", 1, "server", "");
        check(
            "[hls]\npart_target_ms = 5\n",
            2,
            "hls.part_target_ms",
            "out of range",
        );
        check(
            "[inference]\nvigil_kernels = \"yes\"\n",
            2,
            "inference.vigil_kernels",
            "expected a boolean",
        );
    }

    #[test]
    fn inference_kernels_are_vigils_unless_turned_off() {
        let c = parse("vigil.toml", GOOD).unwrap();
        assert!(c.plugins.inference.vigil_kernels);
        let off = format!("{GOOD}\n[inference]\nvigil_kernels = false\n");
        assert!(
            !parse("vigil.toml", &off)
                .unwrap()
                .plugins
                .inference
                .vigil_kernels
        );
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact_url("rtsp://a:b@h:554/x"), "rtsp://***@h:554/x");
        assert_eq!(redact_url("rtsp://a:b@h:99999/x"), "rtsp://***@h:99999/x");
        assert_eq!(redact_url("rtsp://h/x"), "rtsp://h/x");
    }
}
