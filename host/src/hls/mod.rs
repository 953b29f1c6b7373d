//! LL-HLS output: one [`HlsStream`] per watched camera, started by the first request
//! and closed after an idle timeout. The segmenter itself ([`muxer::Muxer`]) is pure;
//! this module adds the subscription task, blocking reloads and caps.
//! Knows nothing of HTTP: [`crate::api`] maps results to responses.

pub mod fmp4;
pub mod muxer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::HlsConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::ingest::Camera;
use crate::media::Recv;
use muxer::{Lookup, Muxer};

/// A running muxer for one camera.
#[derive(Debug)]
pub struct HlsStream {
    muxer: Mutex<Muxer>,
    /// Bumped whenever a part is published.
    version: watch::Sender<u64>,
    last_access: Mutex<Instant>,
    waiting: AtomicUsize,
    cfg: HlsConfig,
    lags: AtomicUsize,
}

/// Summary for the API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HlsStats {
    pub buffered_bytes: usize,
    pub segments: usize,
    pub waiting_requests: usize,
    pub lags: usize,
    pub part_latency_ms_p50: Option<f64>,
    pub part_latency_ms_p99: Option<f64>,
}

impl HlsStream {
    fn touch(&self) {
        *self.last_access.lock().unwrap() = Instant::now();
    }

    /// Waits until `ready` holds for the muxer or `timeout` passes; returns whether it holds.
    async fn wait_for(&self, timeout: Duration, ready: impl Fn(&Muxer) -> bool) -> Result<bool> {
        if ready(&self.muxer.lock().unwrap()) {
            return Ok(true);
        }
        let n = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _guard = Decrement(&self.waiting);
        if n >= self.cfg.max_waiting_requests {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("too many waiting HLS requests ({n}) for this camera"),
            ));
        }
        let mut rx = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ready(&self.muxer.lock().unwrap()) {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(false), // muxer closed
                Err(_) => return Ok(ready(&self.muxer.lock().unwrap())),
            }
        }
    }

    pub fn stats(&self) -> HlsStats {
        let m = self.muxer.lock().unwrap();
        let mut l: Vec<f64> = m
            .latencies
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| (!l.is_empty()).then(|| l[((l.len() - 1) as f64 * p).round() as usize]);
        HlsStats {
            buffered_bytes: m.buffered_bytes(),
            segments: m.playlist().matches("#EXTINF").count(),
            waiting_requests: self.waiting.load(Ordering::SeqCst),
            lags: self.lags.load(Ordering::Relaxed),
            part_latency_ms_p50: pct(0.5),
            part_latency_ms_p99: pct(0.99),
        }
    }

    /// All part availability latencies recorded (for benchmarks).
    pub fn latencies(&self) -> Vec<Duration> {
        self.muxer
            .lock()
            .unwrap()
            .latencies
            .iter()
            .copied()
            .collect()
    }
}

struct Decrement<'a>(&'a AtomicUsize);
impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// All HLS muxers of the host.
#[derive(Debug)]
pub struct Hls {
    cfg: HlsConfig,
    streams: Mutex<HashMap<String, Arc<HlsStream>>>,
}

impl Hls {
    pub fn new(cfg: HlsConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// The camera's muxer, started if needed.
    pub fn stream(self: &Arc<Self>, cam: &Arc<Camera>) -> Arc<HlsStream> {
        let mut streams = self.streams.lock().unwrap();
        if let Some(s) = streams.get(&cam.config.id) {
            s.touch();
            return s.clone();
        }
        let (version, _) = watch::channel(0);
        let s = Arc::new(HlsStream {
            muxer: Mutex::new(Muxer::new(&self.cfg)),
            version,
            last_access: Mutex::new(Instant::now()),
            waiting: AtomicUsize::new(0),
            cfg: self.cfg.clone(),
            lags: AtomicUsize::new(0),
        });
        streams.insert(cam.config.id.clone(), s.clone());
        tokio::spawn(run_muxer(self.clone(), cam.clone(), s.clone()));
        s
    }

    /// The camera's muxer if one is running.
    pub fn existing(&self, id: &str) -> Option<Arc<HlsStream>> {
        self.streams.lock().unwrap().get(id).cloned()
    }

    pub fn active(&self) -> usize {
        self.streams.lock().unwrap().len()
    }

    fn first_media_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn block_timeout(&self) -> Duration {
        self.cfg.segment_target * 3 + Duration::from_secs(1)
    }

    /// The media playlist; with `msn` (and `part`), a blocking reload.
    pub async fn playlist(
        self: &Arc<Self>,
        cam: &Arc<Camera>,
        msn: Option<u64>,
        part: Option<usize>,
    ) -> Result<String> {
        let s = self.stream(cam);
        // Two complete segments (see `Muxer::has_segments_to_start`); for cameras
        // with GOPs too long for that, settle for one.
        let ready = s
            .wait_for(self.first_media_timeout(), Muxer::has_segments_to_start)
            .await?
            || s.wait_for(Duration::from_secs(20), Muxer::has_complete_segment)
                .await?;
        if !ready {
            let st = cam.status();
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "camera {} has no media yet (state: {:?}{})",
                    cam.config.id,
                    st.state,
                    st.last_error
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if let Some(msn) = msn {
            {
                let m = s.muxer.lock().unwrap();
                let (next_msn, _) = m.next_part();
                if msn > next_msn + 2 {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "_HLS_msn={msn} is more than two segments ahead of the live edge ({next_msn})"
                        ),
                    ));
                }
            }
            s.wait_for(self.block_timeout(), |m| m.satisfies(msn, part))
                .await?;
        }
        let pl = s.muxer.lock().unwrap().playlist();
        Ok(pl)
    }

    /// A part by its global number; the next part (the preload hint) blocks until
    /// it exists.
    pub async fn part(self: &Arc<Self>, cam: &Arc<Camera>, seq: u32) -> Result<Bytes> {
        let s = self.stream(cam);
        let pending = matches!(s.muxer.lock().unwrap().part(seq), Lookup::Pending);
        if pending {
            s.wait_for(self.block_timeout(), |m| {
                !matches!(m.part(seq), Lookup::Pending)
            })
            .await?;
        }
        let found = s.muxer.lock().unwrap().part(seq);
        match found {
            Lookup::Ready(b) => Ok(b),
            _ => Err(Error::new(
                ErrorKind::NotFound,
                format!("part {seq} is not available"),
            )),
        }
    }

    pub async fn segment(self: &Arc<Self>, cam: &Arc<Camera>, msn: u64) -> Result<Bytes> {
        let s = self.stream(cam);
        if matches!(s.muxer.lock().unwrap().segment(msn), Lookup::Pending) {
            s.wait_for(self.block_timeout(), |m| {
                !matches!(m.segment(msn), Lookup::Pending)
            })
            .await?;
        }
        let found = s.muxer.lock().unwrap().segment(msn);
        match found {
            Lookup::Ready(b) => Ok(b),
            _ => Err(Error::new(
                ErrorKind::NotFound,
                format!("segment {msn} is not available"),
            )),
        }
    }

    pub async fn init(self: &Arc<Self>, cam: &Arc<Camera>, id: u64) -> Result<Bytes> {
        let s = self.stream(cam);
        s.wait_for(self.first_media_timeout(), Muxer::has_media)
            .await?;
        let init = s.muxer.lock().unwrap().init(id);
        init.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("init segment {id} is not available"),
            )
        })
    }
}

async fn run_muxer(hls: Arc<Hls>, cam: Arc<Camera>, s: Arc<HlsStream>) {
    let mut sub = cam.broadcaster.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tracing::debug!(camera = %cam.config.id, "HLS muxer started");
    loop {
        tokio::select! {
            r = sub.recv() => {
                let published = match r {
                    None => break,
                    Some(Recv::Frame(f)) => s.muxer.lock().unwrap().push(f),
                    Some(Recv::Lagged { missed }) => {
                        s.lags.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(camera = %cam.config.id, missed, "HLS muxer lagged");
                        s.muxer.lock().unwrap().on_lag()
                    }
                };
                if published {
                    s.version.send_modify(|v| *v += 1);
                }
            }
            _ = tick.tick() => {
                // Decide under the streams lock: `Hls::stream` touches `last_access`
                // under it, so a request cannot pick up a muxer that is closing.
                let mut streams = hls.streams.lock().unwrap();
                let idle = s.last_access.lock().unwrap().elapsed();
                if idle > hls.cfg.idle_timeout && s.waiting.load(Ordering::SeqCst) == 0 {
                    if streams.get(&cam.config.id).is_some_and(|x| Arc::ptr_eq(x, &s)) {
                        streams.remove(&cam.config.id);
                    }
                    break;
                }
            }
        }
    }
    let mut streams = hls.streams.lock().unwrap();
    if streams
        .get(&cam.config.id)
        .is_some_and(|x| Arc::ptr_eq(x, &s))
    {
        streams.remove(&cam.config.id);
    }
    drop(streams);
    tracing::debug!(camera = %cam.config.id, "HLS muxer closed after idle");
}
