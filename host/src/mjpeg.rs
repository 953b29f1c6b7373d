//! MJPEG: one decoder + JPEG encoder per camera, shared by all of that camera's
//! MJPEG viewers, started by the first viewer and stopped when the last one leaves.
//!
//! An async task reads the camera's broadcaster and hands frames to a dedicated
//! thread (decoding is CPU-bound) through a small bounded queue; when the thread
//! falls behind, frames are dropped up to the next key frame (never a half GOP to
//! the decoder) and counted. Encoded JPEGs go out through a `watch` channel: every
//! viewer sees the newest picture, a slow viewer simply skips pictures.
//! Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::codec::{self, Decoder, JpegEncoder};
pub use crate::config::MjpegConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::ingest::Camera;
use crate::media::{Frame, Recv, TrackKind, VideoCodec};

/// One camera's running encoder.
struct Encoder {
    tx: watch::Sender<Option<Bytes>>,
    /// Frames dropped because the decoder thread fell behind.
    dropped: AtomicU64,
    /// Pictures encoded.
    encoded: AtomicU64,
}

/// Counters of a camera's MJPEG encoder, for the API.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct MjpegStats {
    pub encoded: u64,
    pub dropped: u64,
}

/// All MJPEG encoders of the host.
pub struct Mjpeg {
    cfg: MjpegConfig,
    encoders: Mutex<HashMap<String, Arc<Encoder>>>,
}

impl std::fmt::Debug for Mjpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mjpeg").field("cfg", &self.cfg).finish()
    }
}

impl Mjpeg {
    pub fn new(cfg: MjpegConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            encoders: Mutex::new(HashMap::new()),
        })
    }

    /// Encoders running now.
    pub fn active(&self) -> usize {
        self.encoders.lock().unwrap().len()
    }

    pub fn stats(&self, camera: &str) -> Option<MjpegStats> {
        self.encoders
            .lock()
            .unwrap()
            .get(camera)
            .map(|e| MjpegStats {
                encoded: e.encoded.load(Ordering::Relaxed),
                dropped: e.dropped.load(Ordering::Relaxed),
            })
    }

    /// A receiver of the camera's newest JPEG, starting the encoder if needed.
    pub fn subscribe(
        self: &Arc<Self>,
        cam: &Arc<Camera>,
    ) -> Result<watch::Receiver<Option<Bytes>>> {
        match cam.broadcaster.latest_info() {
            // An idle on-demand camera connects for the encoder's subscription.
            None if cam.config.mode == crate::config::Mode::OnDemand => {}
            None => {
                let st = cam.status();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "camera {} has no picture yet (state: {:?}{})",
                        cam.config.id,
                        st.state,
                        st.last_error
                            .map(|e| format!(", last error: {e}"))
                            .unwrap_or_default()
                    ),
                ));
            }
            Some(i) if i.video.codec != VideoCodec::H264 => {
                return Err(Error::new(
                    ErrorKind::FailedPrecondition,
                    format!(
                        "camera {} streams H.265; MJPEG supports H.264 cameras only",
                        cam.config.id
                    ),
                ));
            }
            Some(_) => {}
        }
        let mut encoders = self.encoders.lock().unwrap();
        if let Some(e) = encoders.get(&cam.config.id) {
            return Ok(e.tx.subscribe());
        }
        let (tx, rx) = watch::channel(None);
        let enc = Arc::new(Encoder {
            tx,
            dropped: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
        });
        encoders.insert(cam.config.id.clone(), enc.clone());
        tokio::spawn(run(self.clone(), cam.clone(), enc));
        Ok(rx)
    }

    /// Removes the encoder if nobody watches; under the map lock so a concurrent
    /// `subscribe` either sees the encoder alive or starts a new one.
    fn retire(&self, camera: &str, enc: &Arc<Encoder>) -> bool {
        if enc.tx.receiver_count() > 0 {
            return false;
        }
        self.remove(camera, enc);
        true
    }

    /// Removes the encoder whatever its viewers: they see their stream end once the
    /// last reference to its sender goes.
    fn remove(&self, camera: &str, enc: &Arc<Encoder>) {
        let mut encoders = self.encoders.lock().unwrap();
        if encoders.get(camera).is_some_and(|e| Arc::ptr_eq(e, enc)) {
            encoders.remove(camera);
        }
    }
}

async fn run(mjpeg: Arc<Mjpeg>, cam: Arc<Camera>, enc: Arc<Encoder>) {
    let id = cam.config.id.clone();
    tracing::debug!(camera = %id, "MJPEG encoder started");
    let (ftx, frx) = std::sync::mpsc::sync_channel::<Frame>(4);
    let cfg = mjpeg.cfg;
    let thread_enc = enc.clone();
    let thread_id = id.clone();
    let worker = std::thread::Builder::new()
        .name(format!("mjpeg-{id}"))
        .spawn(move || encode_loop(&thread_id, cfg, frx, &thread_enc));
    if let Err(e) = worker {
        tracing::warn!(camera = %id, "cannot start the MJPEG encoder thread: {e}");
        mjpeg.remove(&id, &enc);
        return;
    }
    let mut sub = cam.broadcaster.subscribe();
    let mut need_key = false;
    // Viewers of a camera that sends nothing (down, or an on-demand camera that
    // cannot connect) get their stream ended rather than an endless empty one.
    let quiet = Duration::from_secs(15);
    let mut last_video = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(last_video + quiet) => {
                tracing::debug!(camera = %id, "MJPEG: no video for {quiet:?}; ending the stream");
                break;
            }
            r = sub.recv() => match r {
                None => break,
                Some(Recv::Lagged { missed }) => {
                    enc.dropped.fetch_add(missed, Ordering::Relaxed);
                    need_key = true;
                }
                Some(Recv::Frame(f)) => {
                    if f.track != TrackKind::Video {
                        continue;
                    }
                    last_video = tokio::time::Instant::now();
                    if need_key && !f.key {
                        continue;
                    }
                    need_key = false;
                    match ftx.try_send(f) {
                        Ok(()) => {}
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            enc.dropped.fetch_add(1, Ordering::Relaxed);
                            need_key = true;
                        }
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
                    }
                }
            },
            _ = enc.tx.closed() => {
                if mjpeg.retire(&id, &enc) {
                    break;
                }
            }
        }
    }
    mjpeg.remove(&id, &enc);
    tracing::debug!(camera = %id, "MJPEG encoder stopped");
    // Dropping `ftx` ends the thread; the thread's and this task's references to
    // the encoder then go, and with them the sender: viewers' streams end.
}

fn encode_loop(
    id: &str,
    cfg: MjpegConfig,
    frames: std::sync::mpsc::Receiver<Frame>,
    enc: &Encoder,
) {
    let (mut decoder, mut jpeg) = match (Decoder::new(), JpegEncoder::new(cfg.quality)) {
        (Ok(d), Ok(j)) => (d, j),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(camera = %id, "MJPEG encoder: {e}");
            return;
        }
    };
    let period = Duration::from_secs_f64(1.0 / cfg.fps.clamp(0.1, 60.0));
    let mut next = Instant::now();
    let mut generation = None;
    let mut broken = false;
    for f in frames {
        // A new stream generation (reconnect, new parameters) needs a fresh decoder.
        if generation != Some(f.info.generation) {
            if !f.key {
                continue;
            }
            generation = Some(f.info.generation);
            match Decoder::new() {
                Ok(d) => decoder = d,
                Err(e) => {
                    tracing::warn!(camera = %id, "MJPEG encoder: {e}");
                    return;
                }
            }
        }
        if broken && !f.key {
            continue;
        }
        let picture = match decoder.decode(&f) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) if e.kind() == ErrorKind::FailedPrecondition => {
                // The camera switched to a codec we cannot decode: end the stream.
                tracing::debug!(camera = %id, "MJPEG: {e}");
                return;
            }
            Err(e) => {
                // Skip to the next key frame rather than feed the decoder garbage.
                tracing::debug!(camera = %id, "MJPEG decode error: {e}");
                broken = true;
                continue;
            }
        };
        broken = false;
        let now = Instant::now();
        if now < next {
            continue;
        }
        next = (next + period).max(now);
        let scaled;
        let p = match cfg.width {
            Some(w) if w < picture.width => match codec::scale(&picture, w) {
                Ok(s) => {
                    scaled = s;
                    &scaled
                }
                Err(_) => &picture,
            },
            _ => &picture,
        };
        match jpeg.encode(p) {
            Ok(j) => {
                enc.encoded.fetch_add(1, Ordering::Relaxed);
                enc.tx.send_replace(Some(Bytes::from(j)));
            }
            Err(e) => tracing::debug!(camera = %id, "MJPEG encode error: {e}"),
        }
    }
}
