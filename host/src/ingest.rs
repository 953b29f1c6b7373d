//! RTSP ingest: a single-attempt source ([`run_session`]) and the per-camera
//! supervisor ([`supervise`]) that owns retries, backoff, staggering and on-demand
//! connection. The only module that imports `retina`.
//!
//! Errors are logged once, here at the supervisor edge, and recorded in the camera's
//! [`CameraStatus`]. Credentials are handed to retina separately from the URL, so no
//! message built here can contain them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{
    Credentials, InitialTimestampPolicy, PlayOptions, SessionGroup, SessionOptions, SetupOptions,
    TeardownPolicy,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use tokio::sync::watch;

use crate::config::{CameraConfig, IngestConfig, Mode, Transport};
use crate::error::{Error, ErrorKind};
use crate::media::{
    AudioCodec, AudioTrack, Broadcaster, Frame, StreamInfo, TrackKind, VideoCodec, VideoTrack,
};

/// Where a camera's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// On-demand camera with no consumer: not connected, by design.
    Idle,
    Connecting,
    Streaming,
    /// The last attempt failed with an error that may go away (network, camera down).
    Retrying,
    /// The last attempt failed in a way that needs an operator (bad credentials, no
    /// usable video); still retried, more slowly.
    Failed,
}

/// Live status of one camera, shown by the API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CameraStatus {
    pub state: CameraState,
    pub last_error: Option<String>,
    pub last_error_kind: Option<ErrorKind>,
    /// Seconds since the UNIX epoch of the last error.
    pub last_error_at: Option<f64>,
    pub codec: Option<VideoCodec>,
    pub codec_string: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub audio: Option<String>,
    /// Measured over the last second or so.
    pub fps: Option<f64>,
    pub bitrate_kbps: Option<f64>,
    /// Sessions started after the first one.
    pub reconnects: u64,
    pub frames: u64,
    pub bytes: u64,
}

impl Default for CameraStatus {
    fn default() -> Self {
        Self {
            state: CameraState::Connecting,
            last_error: None,
            last_error_kind: None,
            last_error_at: None,
            codec: None,
            codec_string: None,
            width: None,
            height: None,
            audio: None,
            fps: None,
            bitrate_kbps: None,
            reconnects: 0,
            frames: 0,
            bytes: 0,
        }
    }
}

/// A camera: its config, its frames and its status.
#[derive(Debug)]
pub struct Camera {
    pub config: CameraConfig,
    pub broadcaster: Broadcaster,
    pub status: Mutex<CameraStatus>,
    /// Viewers and bytes by output protocol.
    pub outputs: crate::stats::OutputStats,
    /// Camera media time against the host's wall clock (set while analytics
    /// decode the camera): places events on the timeline viewers see.
    pub clock: Arc<MediaClock>,
}

/// The latest decoded frame's camera media time (ns) and the wall-clock time
/// (ms since 1970) the host received it.
#[derive(Debug, Default)]
pub struct MediaClock(Mutex<Option<(i64, u64)>>);

impl MediaClock {
    pub fn set(&self, media_ns: i64, wall_ms: u64) {
        *self.0.lock().unwrap() = Some((media_ns, wall_ms));
    }

    /// When the host received the frame at `media_ns`, extrapolated from the
    /// latest frame; `None` without frames, more than a minute back, or after the
    /// latest frame (an event cannot be about a frame not yet received: that is
    /// another session's media time, from before the camera reconnected).
    pub fn wall_of(&self, media_ns: i64) -> Option<u64> {
        let (m, w) = (*self.0.lock().unwrap())?;
        let delta_ms = (media_ns - m) / 1_000_000;
        ((-60_000..=100).contains(&delta_ms)).then(|| (w as i64 + delta_ms).max(0) as u64)
    }
}

impl Camera {
    pub fn new(config: CameraConfig) -> Arc<Self> {
        let status = CameraStatus {
            state: match config.mode {
                Mode::Always => CameraState::Connecting,
                Mode::OnDemand => CameraState::Idle,
            },
            ..Default::default()
        };
        Arc::new(Self {
            config,
            broadcaster: Broadcaster::default(),
            status: Mutex::new(status),
            outputs: Default::default(),
            clock: Default::default(),
        })
    }

    pub fn status(&self) -> CameraStatus {
        self.status.lock().unwrap().clone()
    }

    fn set_state(&self, state: CameraState) {
        self.status.lock().unwrap().state = state;
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Runs one RTSP session until it fails or `stop` resolves. Single attempt: retries
/// belong to [`supervise`].
pub async fn run_session(
    cam: &Camera,
    cfg: &IngestConfig,
    group: &Arc<SessionGroup>,
) -> Result<(), Error> {
    let c = &cam.config;
    let ctx = |what: &str| format!("camera {}: {what} {}", c.id, c.url);
    let creds = c.username.as_ref().map(|u| Credentials {
        username: u.clone(),
        password: c.password.clone().unwrap_or_default(),
    });
    let opts = SessionOptions::default()
        .creds(creds)
        .user_agent(format!("vigil/{}", env!("CARGO_PKG_VERSION")))
        .session_group(group.clone())
        .teardown(TeardownPolicy::Auto);
    let connect_timeout = cfg.read_timeout.max(Duration::from_secs(2));
    let mut session = tokio::time::timeout(
        connect_timeout,
        retina::client::Session::describe(c.url.clone(), opts),
    )
    .await
    .map_err(|_| Error::new(ErrorKind::DeadlineExceeded, ctx("DESCRIBE timed out for")))?
    .map_err(|e| rtsp_error(ctx("DESCRIBE failed for"), e))?;

    let streams = session.streams();
    let video_i = streams
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
        .ok_or_else(|| {
            let offered: Vec<String> = streams
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            Error::new(
                ErrorKind::FailedPrecondition,
                format!(
                    "camera {}: no H.264 or H.265 video stream offered (offers: {})",
                    c.id,
                    if offered.is_empty() {
                        "nothing".into()
                    } else {
                        offered.join(", ")
                    }
                ),
            )
        })?;
    // AAC feeds LL-HLS; G.711 feeds WebRTC. Other audio is left out.
    let audio_i = streams.iter().position(|s| {
        s.media() == "audio" && matches!(s.encoding_name(), "mpeg4-generic" | "pcmu" | "pcma")
    });
    let transport = match c.transport {
        Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
        Transport::Udp => retina::client::Transport::Udp(Default::default()),
    };
    for i in std::iter::once(video_i).chain(audio_i) {
        let setup = SetupOptions::default()
            .transport(transport.clone())
            .frame_format(FrameFormat::MP4);
        tokio::time::timeout(connect_timeout, session.setup(i, setup))
            .await
            .map_err(|_| Error::new(ErrorKind::DeadlineExceeded, ctx("SETUP timed out for")))?
            .map_err(|e| rtsp_error(ctx("SETUP failed for"), e))?;
    }
    let playing = tokio::time::timeout(
        connect_timeout,
        session.play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive)),
    )
    .await
    .map_err(|_| Error::new(ErrorKind::DeadlineExceeded, ctx("PLAY timed out for")))?
    .map_err(|e| rtsp_error(ctx("PLAY failed for"), e))?;
    let mut demuxed = playing
        .demuxed()
        .map_err(|e| rtsp_error(ctx("cannot depacketize"), e))?;

    let mut info: Option<Arc<StreamInfo>> = None;
    let mut meter = Meter::new();
    loop {
        let item = match tokio::time::timeout(cfg.read_timeout, demuxed.next()).await {
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::DeadlineExceeded,
                    format!(
                        "camera {}: no data for {:.1} s from {}",
                        c.id,
                        cfg.read_timeout.as_secs_f64(),
                        c.url
                    ),
                ));
            }
            Ok(None) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("camera {}: {} closed the session", c.id, c.url),
                ));
            }
            Ok(Some(Err(e))) => return Err(rtsp_error(ctx("stream error from"), e)),
            Ok(Some(Ok(item))) => item,
        };
        match item {
            CodecItem::VideoFrame(vf) => {
                if info.is_none() || vf.has_new_parameters() {
                    let streams = demuxed.streams();
                    let new = stream_info(&streams[video_i], audio_i.map(|i| &streams[i]))
                        .map_err(|m| {
                            Error::new(ErrorKind::Protocol, format!("camera {}: {m}", c.id))
                        })?;
                    {
                        let mut st = cam.status.lock().unwrap();
                        st.codec = Some(new.video.codec);
                        st.codec_string = Some(new.video.rfc6381.clone());
                        st.width = Some(new.video.width);
                        st.height = Some(new.video.height);
                        st.audio = new.audio.as_ref().map(|a| a.rfc6381.clone());
                        if st.state != CameraState::Streaming {
                            st.state = CameraState::Streaming;
                        }
                    }
                    info = Some(Arc::new(new));
                }
                let Some(info) = &info else { continue };
                // retina marks only IDR pictures; a CRA also starts a decodable GOP.
                let key = vf.is_random_access_point()
                    || (info.video.codec == VideoCodec::H265
                        && crate::media::h265_is_irap(vf.data()));
                let pts = vf.timestamp().elapsed();
                let data = Bytes::from(vf.into_data());
                meter.add(&cam.status, data.len());
                cam.broadcaster.publish(Frame {
                    track: TrackKind::Video,
                    pts,
                    key,
                    data,
                    info: info.clone(),
                    received: Instant::now(),
                });
            }
            CodecItem::AudioFrame(af) => {
                // Audio before the first video parameters has nothing to sync to.
                let Some(info) = &info else { continue };
                if info.audio.is_none() {
                    continue;
                }
                cam.broadcaster.publish(Frame {
                    track: TrackKind::Audio,
                    pts: af.timestamp().elapsed(),
                    key: true,
                    data: Bytes::copy_from_slice(af.data()),
                    info: info.clone(),
                    received: Instant::now(),
                });
            }
            _ => {}
        }
    }
}

fn stream_info(
    video: &retina::client::Stream,
    audio: Option<&retina::client::Stream>,
) -> Result<StreamInfo, String> {
    let Some(ParametersRef::Video(vp)) = video.parameters() else {
        return Err("video parameters (SPS/PPS) not available".into());
    };
    let codec = match vp.codec_params() {
        VideoParametersCodec::H264 { .. } => VideoCodec::H264,
        VideoParametersCodec::H265 { .. } => VideoCodec::H265,
        other => return Err(format!("unsupported video codec {other:?}")),
    };
    let sample_entry = vp
        .mp4_sample_entry()
        .build()
        .map_err(|e| format!("cannot build video sample entry: {e}"))?;
    let (width, height) = vp.pixel_dimensions();
    let fps = vp
        .frame_rate()
        .filter(|&(n, d)| n > 0 && d > 0)
        .map(|(n, d)| f64::from(d) / f64::from(n));
    let (sps, pps, vps) = match vp.codec_params() {
        VideoParametersCodec::H264 { sps, pps } => (sps.clone(), pps.clone(), None),
        VideoParametersCodec::H265 { vps, sps, pps } => {
            (sps.clone(), pps.clone(), Some(vps.clone()))
        }
        _ => unreachable!("codec checked above"),
    };
    let audio = match (audio, audio.and_then(|s| s.parameters())) {
        (Some(s), Some(ParametersRef::Audio(ap))) => match s.encoding_name() {
            "mpeg4-generic" => match (ap.rfc6381_codec(), ap.mp4_sample_entry().build()) {
                (Some(codec), Ok(entry)) => Some(AudioTrack {
                    codec: AudioCodec::Aac,
                    rfc6381: codec.to_string(),
                    sample_entry: Some(Bytes::from(entry)),
                    sample_rate: ap.clock_rate(),
                    channels: ap.channels().get(),
                    frame_length: ap.frame_length().map_or(1024, |n| n.get()),
                }),
                _ => None,
            },
            name @ ("pcmu" | "pcma") => Some(AudioTrack {
                codec: if name == "pcmu" {
                    AudioCodec::Pcmu
                } else {
                    AudioCodec::Pcma
                },
                rfc6381: name.to_string(),
                sample_entry: None,
                sample_rate: ap.clock_rate(),
                channels: ap.channels().get(),
                frame_length: ap.frame_length().map_or(160, |n| n.get()),
            }),
            _ => None,
        },
        _ => None,
    };
    Ok(StreamInfo {
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        video: VideoTrack {
            codec,
            sps,
            pps,
            vps,
            rfc6381: vp.rfc6381_codec().to_string(),
            sample_entry: Bytes::from(sample_entry),
            width,
            height,
            timescale: 90_000,
            fps,
        },
        audio,
    })
}

/// Classifies a retina error. Retina's errors are opaque apart from the RTSP status,
/// so the class comes from the status or the message's leading words; the message
/// (with retina's connection/packet context) is kept, folded onto one line.
fn rtsp_error(ctx: String, e: retina::Error) -> Error {
    let text = e.to_string();
    let kind = match e.status_code() {
        Some(401 | 403) => ErrorKind::Unauthenticated,
        Some(404) => ErrorKind::NotFound,
        Some(454 | 503) => ErrorKind::Unavailable,
        Some(_) => ErrorKind::Protocol,
        None if text.starts_with("Unable to connect")
            || text.starts_with("Error reading")
            || text.starts_with("Error writing")
            || text.starts_with("Error receiving") =>
        {
            ErrorKind::Unavailable
        }
        None if text.starts_with("Timeout") => ErrorKind::DeadlineExceeded,
        None if text.starts_with("Unsupported") || text.starts_with("Failed precondition") => {
            ErrorKind::FailedPrecondition
        }
        None => ErrorKind::Protocol,
    };
    let hint = match kind {
        ErrorKind::Unauthenticated => " (unauthorized: check the camera's user name and password)",
        ErrorKind::NotFound => " (the camera has no such stream: check the URL's path)",
        _ => "",
    };
    let folded = text
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Error::new(kind, format!("{ctx}{hint}: {folded}"))
}

/// Frame rate and bitrate over roughly one-second windows.
struct Meter {
    start: Instant,
    frames: u32,
    bytes: usize,
}

impl Meter {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            frames: 0,
            bytes: 0,
        }
    }

    fn add(&mut self, status: &Mutex<CameraStatus>, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes;
        let el = self.start.elapsed();
        let mut st = status.lock().unwrap();
        st.frames += 1;
        st.bytes += bytes as u64;
        if el >= Duration::from_secs(1) {
            let secs = el.as_secs_f64();
            st.fps = Some((f64::from(self.frames) / secs * 10.0).round() / 10.0);
            st.bitrate_kbps = Some((self.bytes as f64 * 8.0 / 1000.0 / secs).round());
            *self = Self::new();
        }
    }
}

/// Exponential backoff with +-25 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random_range(0.75..1.25);
        base.mul_f64(jitter).min(self.max)
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Supervises one camera until `shutdown` turns true: connects (always, or while
/// someone consumes for on-demand cameras), records errors, retries with backoff.
pub async fn supervise(
    cam: Arc<Camera>,
    cfg: IngestConfig,
    start_delay: Duration,
    group: Arc<SessionGroup>,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = cam.config.id.clone();
    tokio::select! {
        _ = tokio::time::sleep(start_delay) => {}
        _ = shutdown.wait_for(|s| *s) => return,
    }
    let mut backoff = Backoff::new(cfg.retry_initial, cfg.retry_max);
    let mut subscribers = cam.broadcaster.watch_subscribers();
    let mut sessions = 0u64;
    loop {
        if cam.config.mode == Mode::OnDemand {
            cam.set_state(CameraState::Idle);
            tokio::select! {
                _ = subscribers.wait_for(|n| *n > 0) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        {
            let mut st = cam.status.lock().unwrap();
            if sessions > 0 {
                st.reconnects += 1;
            }
            if st.state != CameraState::Failed && st.state != CameraState::Retrying {
                st.state = CameraState::Connecting;
            }
        }
        sessions += 1;
        let started = Instant::now();
        let idle = idle_watch(&cam, cfg.idle_grace);
        let result = tokio::select! {
            r = run_session(&cam, &cfg, &group) => r,
            _ = idle => {
                tracing::info!(camera = %id, "no consumers for {:?}; disconnecting on-demand camera", cfg.idle_grace);
                cam.broadcaster.clear();
                backoff.reset();
                continue;
            }
            _ = shutdown.wait_for(|s| *s) => {
                cam.set_state(CameraState::Idle);
                return;
            }
        };
        cam.broadcaster.clear();
        let err = match result {
            Ok(()) => Error::new(
                ErrorKind::Unavailable,
                format!("camera {id}: session ended"),
            ),
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        // Errors an operator must fix are retried slowly and shown as `failed`.
        let permanent = matches!(
            err.kind(),
            ErrorKind::Unauthenticated | ErrorKind::NotFound | ErrorKind::FailedPrecondition
        );
        let delay = if permanent {
            backoff.next_delay().max(cfg.retry_max) * 5
        } else {
            backoff.next_delay()
        };
        tracing::warn!(camera = %id, error = %err, retry_in_ms = delay.as_millis() as u64, "camera session failed");
        {
            let mut st = cam.status.lock().unwrap();
            st.state = if permanent {
                CameraState::Failed
            } else {
                CameraState::Retrying
            };
            st.last_error = Some(err.to_string());
            st.last_error_kind = Some(err.kind());
            st.last_error_at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64());
            st.fps = None;
            st.bitrate_kbps = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Resolves when an on-demand camera has had no consumers for `grace`; never for
/// always-on cameras.
async fn idle_watch(cam: &Camera, grace: Duration) {
    if cam.config.mode != Mode::OnDemand {
        return futures::future::pending().await;
    }
    let mut rx = cam.broadcaster.watch_subscribers();
    loop {
        let _ = rx.wait_for(|n| *n == 0).await;
        let came_back = tokio::time::timeout(grace, rx.wait_for(|n| *n > 0)).await;
        if came_back.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_clock_places_media_times_on_the_wall_clock() {
        let c = MediaClock::default();
        assert_eq!(c.wall_of(0), None, "no frame yet");
        c.set(10_000_000_000, 1_000_000);
        assert_eq!(c.wall_of(10_000_000_000), Some(1_000_000));
        // 250 ms of media earlier is 250 ms of wall time earlier.
        assert_eq!(c.wall_of(9_750_000_000), Some(999_750));
        // After the latest frame, or over a minute before it: another session's
        // media time, not placed.
        assert_eq!(c.wall_of(10_250_000_000), None);
        assert_eq!(c.wall_of(-60_000_000_000), None);
    }

    #[test]
    fn backoff_grows_and_caps_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let d: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert!((75..=125).contains(&d[0]), "{d:?}");
        assert!((150..=250).contains(&d[1]), "{d:?}");
        assert!(d[5..].iter().all(|&x| (750..=1000).contains(&x)), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
