//! JPEG snapshots: served from the camera's latest key frame (the broadcaster's
//! cached GOP), decoded on demand and cached until the next key frame, so a snapshot
//! never waits for the camera and a camera nobody snapshots costs nothing.
//! Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::codec::{self, Decoder, JpegEncoder, Picture};
use crate::error::{Error, ErrorKind, Result};
use crate::ingest::Camera;

pub use crate::config::SnapshotConfig;

/// Identity of a key frame: stream generation and presentation time.
type KeyId = (u64, i64);

/// Only JPEGs are kept (kilobytes), not the decoded picture (megabytes per camera):
/// another width of the same key frame decodes again.
#[derive(Default)]
struct Cached {
    key: Option<KeyId>,
    /// JPEGs of this key frame by requested width (`None`: full size).
    jpegs: HashMap<Option<u32>, Bytes>,
}

/// The host's snapshot service.
pub struct Snapshots {
    cfg: SnapshotConfig,
    /// Per camera; the async mutex makes concurrent requests for one camera share a
    /// single decode.
    cache: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cached>>>>,
    /// Bounds concurrent decodes host-wide (decoding is CPU-bound).
    decodes: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").field("cfg", &self.cfg).finish()
    }
}

/// How long a snapshot waits for a key frame when none is cached (an idle
/// on-demand camera connecting, or a long GOP).
const ON_DEMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Subscribes (which connects an on-demand camera) and waits for a key frame.
async fn wait_for_key_frame(
    cam: &Camera,
    timeout: std::time::Duration,
) -> Option<crate::media::Frame> {
    let mut sub = cam.broadcaster.subscribe();
    let wait = async {
        loop {
            match sub.recv().await? {
                crate::media::Recv::Frame(f)
                    if f.track == crate::media::TrackKind::Video && f.key =>
                {
                    return Some(f);
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.ok().flatten()
}

/// Largest `?width=` accepted.
pub const MAX_WIDTH: u32 = 7680;

impl Snapshots {
    pub fn new(cfg: SnapshotConfig) -> Arc<Self> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Self {
            cfg,
            cache: Mutex::new(HashMap::new()),
            decodes: tokio::sync::Semaphore::new(cpus),
        })
    }

    /// A JPEG of the camera's latest key frame, `width` pixels wide if given.
    pub async fn jpeg(&self, cam: &Camera, width: Option<u32>) -> Result<Bytes> {
        if let Some(w) = width
            && !(16..=MAX_WIDTH).contains(&w)
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("width={w} is out of range 16..={MAX_WIDTH}"),
            ));
        }
        let mut key = cam.broadcaster.latest_key_frame();
        // No key frame cached: an idle on-demand camera connects for this request,
        // and a streaming camera whose long GOP outgrew the ring sends one soon.
        let streaming = cam.status().state == crate::ingest::CameraState::Streaming;
        if key.is_none() && (cam.config.mode == crate::config::Mode::OnDemand || streaming) {
            key = wait_for_key_frame(cam, ON_DEMAND_WAIT).await;
        }
        let Some(key) = key else {
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
        };
        let id: KeyId = (key.info.generation, key.pts);
        let slot = self
            .cache
            .lock()
            .unwrap()
            .entry(cam.config.id.clone())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if cached.key != Some(id) {
            *cached = Cached {
                key: Some(id),
                ..Cached::default()
            };
        }
        if let Some(j) = cached.jpegs.get(&width) {
            return Ok(j.clone());
        }
        let _permit = self
            .decodes
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "shutting down"))?;
        let quality = self.cfg.quality;
        let camera = cam.config.id.clone();
        let jpeg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let picture: Picture = Decoder::new()?.decode(&key)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    format!("camera {camera}: its key frame did not decode to a picture"),
                )
            })?;
            let scaled;
            let p = match width {
                Some(w) if w < picture.width => {
                    scaled = codec::scale(&picture, w)?;
                    &scaled
                }
                _ => &picture,
            };
            JpegEncoder::new(quality)?.encode(p)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("snapshot task failed: {e}")))??;
        let jpeg = Bytes::from(jpeg);
        // Widths are client-chosen: keep the cache small.
        if cached.jpegs.len() >= 8 {
            cached.jpegs.clear();
        }
        cached.jpegs.insert(width, jpeg.clone());
        Ok(jpeg)
    }
}
