//! The analytics frame path of one camera: exists only while an analytics plugin
//! instance is enabled on it. An async task reads the broadcaster and hands video
//! frames to a decoding thread (only key frames when every instance asked for key
//! frames only); decoded pictures go to each instance's inbox at the rate it asked
//! for. Nothing here can block ingest: the broadcaster drops a lagging reader, the
//! decoder queue drops to the next key frame, instance inboxes drop their oldest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::instance::{FrameInput, Inbox, Input};
use super::runtime::FrameRequest;
use crate::codec::Decoder;
use crate::ingest::Camera;
use crate::media::{Frame, Recv, TrackKind};

/// An instance that wants frames.
pub struct Sink {
    pub id: u64,
    pub sampler: Sampler,
    pub inbox: Arc<Inbox>,
}

/// Picks the frames a plugin asked for.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub request: FrameRequest,
    /// Media time of the last frame taken (sampling follows the camera's clock,
    /// so it is the same live and offline).
    last: Option<i64>,
}

/// A camera's frame path.
pub struct Feeder {
    sinks: Arc<Mutex<Vec<Sink>>>,
    stop: watch::Sender<bool>,
    /// Frames decoded, and frames dropped before decoding (decoder behind).
    pub decoded: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    pub last_error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Feeder")
    }
}

/// What the API shows of a camera's frame path.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FramePathStatus {
    /// Instances taking frames.
    pub consumers: usize,
    /// Only key frames are decoded (every consumer asked for key frames only).
    pub key_frames_only: bool,
    pub frames_decoded: u64,
    /// Frames skipped before decoding because the decoder was behind (the path
    /// resumes at the next key frame).
    pub frames_dropped: u64,
    pub last_error: Option<String>,
}

impl Feeder {
    pub fn status(&self) -> FramePathStatus {
        let sinks = self.sinks.lock().unwrap();
        FramePathStatus {
            consumers: sinks.len(),
            key_frames_only: key_frames_only(&sinks),
            frames_decoded: self.decoded.load(Ordering::Relaxed),
            frames_dropped: self.dropped.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }

    /// Starts the frame path of a camera.
    pub fn start(cam: Arc<Camera>) -> Arc<Feeder> {
        let (stop, stop_rx) = watch::channel(false);
        let feeder = Arc::new(Feeder {
            sinks: Arc::new(Mutex::new(Vec::new())),
            stop,
            decoded: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            last_error: Arc::new(Mutex::new(None)),
        });
        let (ftx, frx) = std::sync::mpsc::sync_channel::<Frame>(4);
        let sinks = feeder.sinks.clone();
        let (decoded, last_error) = (feeder.decoded.clone(), feeder.last_error.clone());
        let id = cam.config.id.clone();
        let clock = cam.clock.clone();
        if let Err(e) = std::thread::Builder::new()
            .name(format!("analytics-{id}"))
            .spawn(move || decode_loop(&id, frx, &sinks, &decoded, &last_error, &clock))
        {
            *feeder.last_error.lock().unwrap() =
                Some(format!("cannot start the decoder thread: {e}"));
            return feeder;
        }
        tokio::spawn(read_loop(
            cam,
            feeder.sinks.clone(),
            ftx,
            stop_rx,
            feeder.dropped.clone(),
        ));
        feeder
    }

    pub fn add(&self, id: u64, request: FrameRequest, inbox: Arc<Inbox>) {
        self.sinks.lock().unwrap().push(Sink {
            id,
            sampler: Sampler::new(request),
            inbox,
        });
    }

    /// Removes a sink; returns how many remain.
    pub fn remove(&self, id: u64) -> usize {
        let mut s = self.sinks.lock().unwrap();
        s.retain(|k| k.id != id);
        s.len()
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

async fn read_loop(
    cam: Arc<Camera>,
    sinks: Arc<Mutex<Vec<Sink>>>,
    ftx: std::sync::mpsc::SyncSender<Frame>,
    mut stop: watch::Receiver<bool>,
    dropped: Arc<AtomicU64>,
) {
    let mut sub = cam.broadcaster.subscribe();
    let mut need_key = false;
    loop {
        let r = tokio::select! {
            r = sub.recv() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        match r {
            None => break,
            Some(Recv::Lagged { missed }) => {
                dropped.fetch_add(missed, Ordering::Relaxed);
                need_key = true;
            }
            Some(Recv::Frame(f)) => {
                if f.track != TrackKind::Video || (need_key && !f.key) {
                    continue;
                }
                need_key = false;
                // Key frames only, when that is all anyone wants: skip decoding the rest.
                let key_only = key_frames_only(&sinks.lock().unwrap());
                if key_only && !f.key {
                    continue;
                }
                match ftx.try_send(f) {
                    Ok(()) => {}
                    Err(std::sync::mpsc::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        need_key = true;
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }
}

fn decode_loop(
    camera: &str,
    frames: std::sync::mpsc::Receiver<Frame>,
    sinks: &Mutex<Vec<Sink>>,
    decoded: &AtomicU64,
    last_error: &Mutex<Option<String>>,
    clock: &crate::ingest::MediaClock,
) {
    let mut decoder: Option<Decoder> = None;
    let mut generation = None;
    let mut broken = false;
    for f in frames {
        if generation != Some(f.info.generation) || decoder.is_none() {
            if !f.key {
                continue;
            }
            generation = Some(f.info.generation);
            decoder = Decoder::new().ok();
        }
        let Some(d) = decoder.as_mut() else { continue };
        if broken && !f.key {
            continue;
        }
        let picture = match d.decode(&f) {
            Ok(Some(p)) => Arc::new(p),
            Ok(None) => continue,
            Err(e) => {
                *last_error.lock().unwrap() = Some(format!("camera {camera}: {e}"));
                broken = true;
                continue;
            }
        };
        broken = false;
        decoded.fetch_add(1, Ordering::Relaxed);
        let media_ns =
            f.pts.saturating_mul(1_000_000_000) / i64::from(f.info.video.timescale.max(1));
        // When the frame arrived, not when its decoding finished.
        let wall_ms =
            crate::events::now_ms().saturating_sub(f.received.elapsed().as_millis() as u64);
        clock.set(media_ns, wall_ms);
        let mut sinks = sinks.lock().unwrap();
        for s in sinks.iter_mut() {
            if !s.sampler.wants(media_ns, f.key) {
                continue;
            }
            s.inbox.push(Input::Frame(FrameInput {
                picture: picture.clone(),
                media_ns,
                wall_ms,
                key: f.key,
            }));
        }
    }
}

/// Whether every consumer wants key frames only (then nothing else is decoded).
fn key_frames_only(sinks: &[Sink]) -> bool {
    !sinks.is_empty() && sinks.iter().all(|s| s.sampler.request.key_frames_only)
}

impl Sampler {
    pub fn new(request: FrameRequest) -> Sampler {
        Sampler {
            request,
            last: None,
        }
    }

    /// Whether this consumer takes a frame at `media_ns`: key frames only if it
    /// asked so, and at most `max_fps` by the camera's clock (5 % slack, so a
    /// 15 fps camera sampled at 5 fps gives every third frame). Time going
    /// backwards (a reconnect) restarts the sampling.
    pub fn wants(&mut self, media_ns: i64, key: bool) -> bool {
        if self.request.key_frames_only && !key {
            return false;
        }
        if self.request.max_fps > 0.0
            && let Some(last) = self.last
            && media_ns >= last
            && ((media_ns - last) as f64) < 0.95e9 / f64::from(self.request.max_fps)
        {
            return false;
        }
        self.last = Some(media_ns);
        true
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(max_fps: f32, key_frames_only: bool) -> Sink {
        Sink {
            id: 1,
            sampler: Sampler::new(FrameRequest {
                max_fps,
                key_frames_only,
            }),
            inbox: Arc::new(Inbox::new(4)),
        }
    }

    /// Which of `n` frames at `fps` (key frame every `gop`) a sink takes.
    fn taken(s: &mut Sink, n: i64, fps: i64, gop: i64) -> Vec<i64> {
        (0..n)
            .filter(|i| s.sampler.wants(i * 1_000_000_000 / fps, i % gop == 0))
            .collect()
    }

    #[test]
    fn samples_by_media_time() {
        // 15 fps sampled at 5: every third frame.
        assert_eq!(taken(&mut sink(5.0, false), 10, 15, 15), [0, 3, 6, 9]);
        // 0 = every frame.
        assert_eq!(taken(&mut sink(0.0, false), 4, 15, 15).len(), 4);
        // Asking for more than the camera has: every frame.
        assert_eq!(taken(&mut sink(30.0, false), 4, 15, 15).len(), 4);
        // Key frames only: the key frames, further limited by the rate.
        assert_eq!(taken(&mut sink(0.0, true), 31, 15, 15), [0, 15, 30]);
        assert_eq!(taken(&mut sink(0.5, true), 61, 15, 15), [0, 30, 60]);
    }

    #[test]
    fn a_clock_going_back_restarts_sampling() {
        let mut s = Sampler::new(FrameRequest {
            max_fps: 1.0,
            key_frames_only: false,
        });
        assert!(s.wants(10_000_000_000, true));
        assert!(!s.wants(10_500_000_000, false));
        // A reconnect: timestamps start over.
        assert!(s.wants(0, true));
        assert!(!s.wants(100_000_000, false));
    }

    #[test]
    fn decodes_only_key_frames_when_every_consumer_wants_only_those() {
        assert!(!key_frames_only(&[]));
        assert!(key_frames_only(&[sink(1.0, true), sink(0.0, true)]));
        assert!(!key_frames_only(&[sink(1.0, true), sink(5.0, false)]));
    }
}
