//! The offline runner behind `vigil plugin inspect` and `vigil plugin run`: a
//! plugin against a video file (or an events file for rules and outputs), its
//! events printed as JSON lines. Same runtime, limits and sampling as the host,
//! but every input waits for the plugin (nothing is dropped), and frame sampling
//! follows the file's media time rather than the wall clock.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::Plugins;
use super::instance::{FrameInput, Input};
use super::runtime::Kind;
use crate::config::{CameraConfig, Mode, PluginConfig, PluginsConfig, Transport};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Events};
use crate::ingest::Camera;
use crate::media::{Frame, StreamInfo, TrackKind, VideoCodec, VideoTrack};

/// Options of `vigil plugin run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub wasm: PathBuf,
    /// A video file or an `rtsp://` URL (analytics), or a JSON-lines events file
    /// (rules, outputs).
    pub input: PathBuf,
    pub config: serde_json::Value,
    pub camera: String,
    /// Frame rate of a raw `.h264` input (containers carry their own).
    pub fps: f64,
    pub grants: Vec<String>,
    pub http_allow: Vec<String>,
    /// How long to run on an RTSP input.
    pub duration: Duration,
    /// Where installed models are (the `inference` capability).
    pub models_dir: Option<PathBuf>,
}

fn plugin_config(wasm: &Path, grants: Vec<String>, http_allow: Vec<String>) -> PluginConfig {
    let id = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| {
            s.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "plugin".into());
    PluginConfig {
        id,
        path: wasm.to_path_buf(),
        grants,
        http_allow,
        call_timeout: None,
        memory_limit: None,
        queue: 1_000_000,
    }
}

async fn start(
    wasm: &Path,
    grants: Vec<String>,
    http_allow: Vec<String>,
    models_dir: Option<PathBuf>,
) -> Result<(Arc<Plugins>, Arc<Events>, PluginConfig, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("vigil-plugin-run-{}", rand::random::<u64>()));
    let events = Events::open(&dir, Default::default())?;
    let pc = plugin_config(wasm, grants, http_allow);
    let plugins = Plugins::start(
        PluginsConfig {
            max_instances: 4,
            events_per_second: 100_000,
            replay_ticks: true,
            inference_models_dir_set: models_dir.is_some(),
            inference: crate::inference::InferenceConfig {
                models_dir: models_dir.unwrap_or_default(),
                ..Default::default()
            },
            ..PluginsConfig::default()
        },
        std::slice::from_ref(&pc),
        events.clone(),
        dir.clone(),
    )
    .await?;
    Ok((plugins, events, pc, dir))
}

/// `vigil plugin inspect`: the manifest as JSON.
pub async fn inspect(wasm: &Path) -> Result<serde_json::Value> {
    let (plugins, _events, pc, dir) = start(wasm, Vec::new(), Vec::new(), None).await?;
    let info = plugins.plugin(&pc.id)?;
    plugins.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    match (info.manifest, info.error) {
        (Some(m), _) => Ok(serde_json::to_value(m).unwrap_or_default()),
        (None, Some(e)) => Err(Error::new(ErrorKind::InvalidArgument, e)),
        (None, None) => Err(Error::new(ErrorKind::Internal, "the plugin did not load")),
    }
}

/// The camera the plugin sees: the RTSP input, or a stand-in for a file.
fn fake_camera(id: &str, url: Option<&str>) -> Result<Arc<Camera>> {
    let (url, username, password) =
        crate::config::parse_camera_url(url.unwrap_or("rtsp://offline.invalid/input"))
            .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("--input: {e}")))?;
    Ok(Camera::new(CameraConfig {
        id: id.to_string(),
        name: id.to_string(),
        url,
        username,
        password,
        transport: Transport::Tcp,
        mode: Mode::Always,
        plugins: Vec::new(),
    }))
}

/// The frame rate of a container file, from ffprobe.
fn probe_fps(path: &Path) -> Option<f64> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=r_frame_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let (n, d) = s.trim().split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0.0 && d > 0.0).then(|| n / d)
}

/// The H.264 video of a file (container or Annex B) as frames stamped on a
/// 90 kHz clock; `fps` is the rate of a raw stream (containers carry their own).
pub fn read_clip(path: &Path, fps: f64) -> Result<Vec<Frame>> {
    let (sps, pps, aus) = crate::camsim::read_access_units(path)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("{e:#}")))?;
    let fps = probe_fps(path).unwrap_or(fps).clamp(0.1, 240.0);
    let info = Arc::new(StreamInfo {
        generation: 1,
        video: VideoTrack {
            codec: VideoCodec::H264,
            sps: Bytes::from(sps),
            pps: Bytes::from(pps),
            vps: None,
            rfc6381: String::new(),
            sample_entry: Bytes::new(),
            width: 0,
            height: 0,
            timescale: 90_000,
            fps: Some(fps),
        },
        audio: None,
    });
    Ok(aus
        .into_iter()
        .enumerate()
        .map(|(i, au)| {
            let key = au.iter().any(|n| n.first().is_some_and(|b| b & 0x1f == 5));
            let mut data = Vec::new();
            for n in &au {
                data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                data.extend_from_slice(n);
            }
            Frame {
                track: TrackKind::Video,
                pts: (i as f64 * 90_000.0 / fps) as i64,
                key,
                data: Bytes::from(data),
                info: info.clone(),
                received: std::time::Instant::now(),
            }
        })
        .collect())
}

/// `vigil plugin run`: prints the plugin's events as JSON lines on `out`; returns
/// how many it emitted.
pub async fn run(opts: RunOptions, out: &mut (dyn Write + Send)) -> Result<u64> {
    let (plugins, events, pc, dir) = start(
        &opts.wasm,
        opts.grants.clone(),
        opts.http_allow.clone(),
        opts.models_dir.clone(),
    )
    .await?;
    let result = run_inner(&plugins, &events, &pc, &opts, out).await;
    plugins.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Writes the events the bus has so far as JSON lines.
struct Printer<'a> {
    bus: tokio::sync::broadcast::Receiver<Arc<Event>>,
    out: &'a mut (dyn Write + Send),
    printed: u64,
    missed: u64,
}

impl Printer<'_> {
    fn print(&mut self, e: &Event) {
        self.printed += 1;
        let _ = writeln!(self.out, "{}", serde_json::to_string(e).unwrap_or_default());
        let _ = self.out.flush();
    }

    fn drain(&mut self) {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match self.bus.try_recv() {
                Ok(e) => self.print(&e),
                Err(TryRecvError::Lagged(n)) => self.missed += n,
                Err(_) => return,
            }
        }
    }

    /// Waits (up to `limit`) for the next event and prints it.
    async fn next(&mut self, limit: Duration) -> bool {
        use tokio::sync::broadcast::error::RecvError;
        match tokio::time::timeout(limit, self.bus.recv()).await {
            Ok(Ok(e)) => {
                self.print(&e);
                true
            }
            Ok(Err(RecvError::Lagged(n))) => {
                self.missed += n;
                true
            }
            _ => false,
        }
    }
}

/// Where a replayed timeline starts when the file gives no times (2024-01-01).
const REPLAY_EPOCH_MS: u64 = 1_704_067_200_000;

/// One line of an events file: the shape of `POST /api/events`, plus optional
/// times.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayEvent {
    kind: String,
    #[serde(default, alias = "plugin")]
    source: Option<String>,
    #[serde(default)]
    severity: Option<crate::events::Severity>,
    #[serde(default)]
    wall_ms: Option<u64>,
    #[serde(default)]
    media_start_ns: Option<i64>,
    #[serde(default)]
    media_end_ns: Option<i64>,
    #[serde(default)]
    detections: Vec<crate::events::Detection>,
    #[serde(default)]
    attributes: Vec<(String, String)>,
    // Accepted (so stored events can be replayed) and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    camera: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    has_snapshot: Option<bool>,
}

impl ReplayEvent {
    fn into_event(self, camera: &str, wall_ms: u64) -> Event {
        Event {
            id: crate::events::new_id(wall_ms),
            camera: camera.to_string(),
            plugin: self.source.unwrap_or_else(|| "replay".into()),
            kind: self.kind,
            severity: self.severity.unwrap_or(crate::events::Severity::Info),
            media_start_ns: self.media_start_ns,
            media_end_ns: self.media_end_ns,
            media_wall_ms: None,
            wall_ms,
            detections: self.detections,
            attributes: self.attributes,
            has_snapshot: false,
        }
    }
}

/// Is the input an RTSP URL rather than a file?
fn rtsp_input(input: &Path) -> Option<&str> {
    input
        .to_str()
        .filter(|s| s.starts_with("rtsp://") || s.starts_with("rtsps://"))
}

async fn run_inner(
    plugins: &Arc<Plugins>,
    events: &Arc<Events>,
    pc: &PluginConfig,
    opts: &RunOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64> {
    let info = plugins.plugin(&pc.id)?;
    let manifest = info
        .manifest
        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, info.error.unwrap_or_default()))?;
    let live = rtsp_input(&opts.input);
    if live.is_some() && manifest.kind != Kind::Analytics {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "an RTSP input needs an analytics plugin; {} is a {} plugin: give it an events file (JSON lines)",
                opts.wasm.display(),
                format!("{:?}", manifest.kind).to_lowercase()
            ),
        ));
    }
    let cam = fake_camera(&opts.camera, live)?;
    let mut printer = Printer {
        bus: events.subscribe(),
        out,
        printed: 0,
        missed: 0,
    };
    let key = (cam.config.id.clone(), pc.id.clone());
    if let Some(url) = live {
        // The real ingest and frame path, for `duration`.
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let supervisor = tokio::spawn(crate::ingest::supervise(
            cam.clone(),
            crate::config::IngestConfig::default(),
            Duration::ZERO,
            Arc::new(retina::client::SessionGroup::default()),
            stop_rx,
        ));
        plugins.enable(&cam, &pc.id, opts.config.clone()).await?;
        tracing::info!(url = %crate::config::redact_url(url), seconds = opts.duration.as_secs_f64(), "running the plugin on a live camera");
        let deadline = tokio::time::Instant::now() + opts.duration;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = printer.next(Duration::from_secs(3600)) => {}
            }
        }
        let _ = stop.send(true);
        let _ = supervisor.await;
    } else {
        plugins.enable(&cam, &pc.id, opts.config.clone()).await?;
    }
    let inst = plugins
        .instances
        .lock()
        .unwrap()
        .get(&key)
        .cloned()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "instance missing"))?;
    if let Some(e) = inst.stats.last_error.lock().unwrap().clone()
        && *inst.stats.state.lock().unwrap() != super::instance::State::Running
    {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("the plugin did not start: {e}"),
        ));
    }
    if live.is_none() {
        feed_file(&inst, &manifest, opts, &mut printer).await?;
    }
    // Let the store commit and publish everything the plugin emitted.
    let emitted = inst.ctx.emitted.load(Ordering::Relaxed);
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.counters().0 < emitted && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    printer.drain();
    while printer.printed + printer.missed < emitted
        && printer.next(Duration::from_millis(200)).await
    {}
    let status = plugins.status(&cam.config.id, &pc.id)?;
    if status.traps > 0 || status.errors > 0 {
        tracing::warn!(
            "plugin reported {} errors and {} traps; last: {}",
            status.errors,
            status.traps,
            status.last_error.unwrap_or_default()
        );
    }
    if printer.missed > 0 {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} of the plugin's events came faster than they could be printed and are missing above",
                printer.missed
            ),
        ));
    }
    Ok(printer.printed)
}

/// Feeds a file to the instance, each input waiting for the plugin, printing
/// events as they come.
async fn feed_file(
    inst: &Arc<super::Instance>,
    manifest: &super::runtime::Manifest,
    opts: &RunOptions,
    printer: &mut Printer<'_>,
) -> Result<()> {
    let mut pushed = 0u64;
    // Waits until the plugin handled everything pushed so far.
    let settle = |pushed: u64| {
        let inst = inst.clone();
        async move {
            loop {
                let done = inst.stats.calls.load(Ordering::Relaxed) > pushed // plus the configure call
                    || *inst.stats.state.lock().unwrap() != super::instance::State::Running;
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    match manifest.kind {
        Kind::Analytics => {
            let (path, fps) = (opts.input.clone(), opts.fps);
            let frames = tokio::task::spawn_blocking(move || read_clip(&path, fps))
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("reader: {e}")))??;
            let mut sampler = super::feeder::Sampler::new(manifest.frames.unwrap_or(
                super::runtime::FrameRequest {
                    max_fps: 1.0,
                    key_frames_only: true,
                },
            ));
            let mut decoder = crate::codec::Decoder::new()?;
            for frame in frames {
                let key = frame.key;
                if sampler.request.key_frames_only && !key {
                    continue; // not even decoded
                }
                let Some(picture) = decoder.decode(&frame)? else {
                    continue;
                };
                let media_ns = frame.pts * 1_000_000_000 / 90_000;
                if !sampler.wants(media_ns, key) {
                    continue;
                }
                inst.inbox.push(Input::Frame(FrameInput {
                    picture: Arc::new(picture),
                    media_ns,
                    wall_ms: crate::events::now_ms(),
                    key,
                }));
                pushed += 1;
                settle(pushed).await;
                printer.drain();
            }
        }
        Kind::Rule | Kind::Output => {
            // Rule plugins tick on the events' timeline (their wall_ms), at the
            // interval they asked for; the timeline ends with the last event.
            let tick_every = manifest
                .tick_interval_ms
                .filter(|_| manifest.kind == Kind::Rule)
                .map(u64::from);
            let mut next_tick: Option<u64> = None;
            // Lines without a time follow the previous one by 100 ms.
            let mut last_ms: u64 = REPLAY_EPOCH_MS;
            let f = std::fs::File::open(&opts.input).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{}: {e}", opts.input.display()),
                )
            })?;
            for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{}: {e}", opts.input.display()),
                    )
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                let r: ReplayEvent = serde_json::from_str(&line).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{}:{}: not an event: {e}", opts.input.display(), n + 1),
                    )
                })?;
                let wall_ms = r.wall_ms.unwrap_or(last_ms + 100);
                if wall_ms < last_ms {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "{}:{}: wall_ms {wall_ms} goes back in time (previous {last_ms})",
                            opts.input.display(),
                            n + 1
                        ),
                    ));
                }
                last_ms = wall_ms;
                let e = r.into_event(&opts.camera, wall_ms);
                e.validate().map_err(|err| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{}:{}: {}", opts.input.display(), n + 1, err.message()),
                    )
                })?;
                if let Some(every) = tick_every.filter(|t| *t > 0) {
                    let next = next_tick.get_or_insert(e.wall_ms + every);
                    // A long quiet stretch: skip to its last tick (time-based rules
                    // see the same elapsed time, without thousands of calls).
                    if e.wall_ms.saturating_sub(*next) / every > 100 {
                        *next += (e.wall_ms - *next) / every * every;
                    }
                    while *next <= e.wall_ms {
                        inst.inbox.push(Input::Tick(*next));
                        pushed += 1;
                        settle(pushed).await;
                        *next += every;
                    }
                }
                inst.inbox.push(Input::Event(Arc::new(e)));
                pushed += 1;
                settle(pushed).await;
                printer.drain();
            }
        }
    }
    Ok(())
}
