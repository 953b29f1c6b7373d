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
    /// A video file (analytics) or a JSON-lines events file (rules, outputs).
    pub input: PathBuf,
    pub config: serde_json::Value,
    pub camera: String,
    /// Frame rate of a raw `.h264` input (containers carry their own).
    pub fps: f64,
    pub grants: Vec<String>,
    pub http_allow: Vec<String>,
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
) -> Result<(Arc<Plugins>, Arc<Events>, PluginConfig, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("vigil-plugin-run-{}", rand::random::<u64>()));
    let events = Events::open(&dir, Default::default())?;
    let pc = plugin_config(wasm, grants, http_allow);
    let plugins = Plugins::start(
        PluginsConfig {
            max_instances: 4,
            events_per_second: 100_000,
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
    let (plugins, _events, pc, dir) = start(wasm, Vec::new(), Vec::new()).await?;
    let info = plugins.plugin(&pc.id)?;
    plugins.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    match (info.manifest, info.error) {
        (Some(m), _) => Ok(serde_json::to_value(m).unwrap_or_default()),
        (None, Some(e)) => Err(Error::new(ErrorKind::InvalidArgument, e)),
        (None, None) => Err(Error::new(ErrorKind::Internal, "the plugin did not load")),
    }
}

fn fake_camera(id: &str) -> Result<Arc<Camera>> {
    let (url, _, _) = crate::config::parse_camera_url("rtsp://offline.invalid/input")
        .map_err(|e| Error::new(ErrorKind::Internal, e))?;
    Ok(Camera::new(CameraConfig {
        id: id.to_string(),
        name: id.to_string(),
        url,
        username: None,
        password: None,
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

/// `vigil plugin run`: prints the plugin's events as JSON lines on `out`; returns
/// how many it emitted.
pub async fn run(opts: RunOptions, out: &mut (dyn Write + Send)) -> Result<u64> {
    let (plugins, events, pc, dir) =
        start(&opts.wasm, opts.grants.clone(), opts.http_allow.clone()).await?;
    let result = run_inner(&plugins, &events, &pc, &opts, out).await;
    plugins.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
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
    let cam = fake_camera(&opts.camera)?;
    let mut bus = events.subscribe();
    plugins.enable(&cam, &pc.id, opts.config.clone()).await?;
    let key = (cam.config.id.clone(), pc.id.clone());
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
            let path = opts.input.clone();
            let (sps, pps, aus) =
                tokio::task::spawn_blocking(move || crate::camsim::read_access_units(&path))
                    .await
                    .map_err(|e| Error::new(ErrorKind::Internal, format!("reader: {e}")))?
                    .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("{e:#}")))?;
            let fps = probe_fps(&opts.input).unwrap_or(opts.fps).clamp(0.1, 240.0);
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
            let request = manifest.frames.unwrap_or(super::runtime::FrameRequest {
                max_fps: 1.0,
                key_frames_only: true,
            });
            let mut decoder = crate::codec::Decoder::new()?;
            let mut last_sent: Option<i64> = None;
            for (i, au) in aus.into_iter().enumerate() {
                let key = au.iter().any(|n| n.first().is_some_and(|b| b & 0x1f == 5));
                let mut data = Vec::new();
                for n in &au {
                    data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    data.extend_from_slice(n);
                }
                let pts = (i as f64 * 90_000.0 / fps) as i64;
                let frame = Frame {
                    track: TrackKind::Video,
                    pts,
                    key,
                    data: Bytes::from(data),
                    info: info.clone(),
                    received: std::time::Instant::now(),
                };
                if request.key_frames_only && !key {
                    continue;
                }
                let Some(picture) = decoder.decode(&frame)? else {
                    continue;
                };
                let media_ns = pts * 1_000_000_000 / 90_000;
                if request.max_fps > 0.0
                    && let Some(l) = last_sent
                    && ((media_ns - l) as f64) < 0.95e9 / f64::from(request.max_fps)
                {
                    continue;
                }
                last_sent = Some(media_ns);
                inst.inbox.push(Input::Frame(FrameInput {
                    picture: Arc::new(picture),
                    media_ns,
                    wall_ms: crate::events::now_ms(),
                    key,
                }));
                pushed += 1;
                settle(pushed).await;
            }
        }
        Kind::Rule | Kind::Output => {
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
                let mut e: Event = serde_json::from_str(&line).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{}:{}: not an event: {e}", opts.input.display(), n + 1),
                    )
                })?;
                e.camera = cam.config.id.clone();
                inst.inbox.push(Input::Event(Arc::new(e)));
                pushed += 1;
                settle(pushed).await;
            }
        }
    }
    // Let the store commit and publish what the plugin emitted.
    let mut count = 0u64;
    let mut quiet = 0;
    while quiet < 5 {
        match tokio::time::timeout(Duration::from_millis(100), bus.recv()).await {
            Ok(Ok(e)) => {
                quiet = 0;
                count += 1;
                let _ = writeln!(out, "{}", serde_json::to_string(&*e).unwrap_or_default());
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => quiet = 0,
            _ => quiet += 1,
        }
    }
    let status = plugins.status(&cam.config.id, &pc.id)?;
    if status.traps > 0 || status.errors > 0 {
        tracing::warn!(
            "plugin reported {} errors and {} traps; last: {}",
            status.errors,
            status.traps,
            status.last_error.unwrap_or_default()
        );
    }
    Ok(count)
}
