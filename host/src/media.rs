//! Frames, stream parameters and the per-camera [`Broadcaster`].
//!
//! Architecture invariant: this module knows nothing of RTSP, HTTP, files or plugins.
//! Sources publish [`Frame`]s; consumers (HLS muxer, later WebRTC, MJPEG, analytics)
//! subscribe. Publishing never waits for a consumer: a consumer that falls behind the
//! bounded ring is told how many frames it missed and resumes at the next key frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

/// Video codec of a camera stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    H265,
}

/// Parameters of the video track; a new value (new generation) means consumers re-init.
#[derive(Clone, Debug)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    /// Parameter set NAL units (without start codes): SPS and PPS, plus VPS for H.265.
    pub sps: Bytes,
    pub pps: Bytes,
    pub vps: Option<Bytes>,
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub rfc6381: String,
    /// The ISO BMFF sample entry box (`avc1`/`hvc1` with `avcC`/`hvcC`).
    pub sample_entry: Bytes,
    pub width: u32,
    pub height: u32,
    /// Ticks per second of frame timestamps (90 kHz for RTP video).
    pub timescale: u32,
    /// Nominal frame rate from the SPS, when present.
    pub fps: Option<f64>,
}

/// Audio codecs the host passes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    /// AAC (MPEG-4 audio): carried by LL-HLS.
    Aac,
    /// G.711 µ-law: carried by WebRTC.
    Pcmu,
    /// G.711 A-law: carried by WebRTC.
    Pcma,
}

/// Parameters of the audio track.
#[derive(Clone, Debug)]
pub struct AudioTrack {
    pub codec: AudioCodec,
    /// RFC 6381 codec string (`mp4a.40.2`) for AAC, the encoding name otherwise.
    pub rfc6381: String,
    /// The ISO BMFF sample entry box (`mp4a` with `esds`); AAC only.
    pub sample_entry: Option<Bytes>,
    pub sample_rate: u32,
    pub channels: u16,
    /// Samples per frame (1024 for AAC-LC); for G.711 the nominal packet size.
    pub frame_length: u32,
}

/// Everything a consumer needs to interpret frames; shared by all frames of one
/// generation. A reconnect or an SPS/PPS change makes a new generation.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    pub generation: u64,
    pub video: VideoTrack,
    pub audio: Option<AudioTrack>,
}

/// Which track a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One access unit (video) or one audio frame. Cloning is cheap: data is shared.
#[derive(Clone, Debug)]
pub struct Frame {
    pub track: TrackKind,
    /// Presentation time in the track's timescale, from the start of the session.
    pub pts: i64,
    /// Video: an IDR/IRAP picture a decoder can start at. Audio: always true.
    pub key: bool,
    /// Video: one access unit as 4-byte length-prefixed NAL units (the ISO BMFF
    /// form), without in-band parameter sets: those are in [`VideoTrack`]; see
    /// [`write_annex_b`] for decoders and WebRTC. Audio: one raw AAC frame or a run
    /// of G.711 samples.
    pub data: Bytes,
    pub info: Arc<StreamInfo>,
    /// When the last byte of the frame arrived.
    pub received: Instant,
}

/// The NAL units of a 4-byte length-prefixed access unit. Stops at the first
/// length that overruns the data; never panics on malformed input.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > tail.len() {
            rest = &[];
            return None;
        }
        let (nal, next) = tail.split_at(len);
        rest = next;
        Some(nal)
    })
}

/// Appends a video frame to `out` in Annex B form (start codes), for decoders and
/// RTP packetizers. With `parameter_sets`, a key frame is preceded by the track's
/// VPS (H.265), SPS and PPS so decoding can start there.
pub fn write_annex_b(frame: &Frame, parameter_sets: bool, out: &mut Vec<u8>) {
    const START: [u8; 4] = [0, 0, 0, 1];
    if parameter_sets && frame.key {
        let v = &frame.info.video;
        for ps in v.vps.iter().chain([&v.sps, &v.pps]) {
            out.extend_from_slice(&START);
            out.extend_from_slice(ps);
        }
    }
    for nal in nal_units(&frame.data) {
        out.extend_from_slice(&START);
        out.extend_from_slice(nal);
    }
}

/// Whether a length-prefixed H.265 access unit holds an IRAP picture (BLA, IDR or
/// CRA, NAL types 16..=23): a decoder can start there. Needed because encoders
/// such as x265 mark periodic key frames as CRA, not IDR.
pub fn h265_is_irap(data: &[u8]) -> bool {
    nal_units(data).any(|nal| (16..=23).contains(&((nal[0] >> 1) & 0x3f)))
}

/// What a subscriber receives.
#[derive(Debug)]
pub enum Recv {
    Frame(Frame),
    /// The subscriber fell behind; it skipped `missed` frames and resumes at the next
    /// key frame.
    Lagged {
        missed: u64,
    },
}

/// Bounds of a broadcaster's ring.
#[derive(Clone, Copy, Debug)]
pub struct RingLimits {
    /// Hard cap of frames kept.
    pub max_frames: usize,
    /// Hard cap of bytes of frame data kept.
    pub max_bytes: usize,
    /// How far behind the live edge (by arrival time) frames are kept even when
    /// they precede the cached GOP: how long a consumer may stall before it lags.
    /// Frames of the current GOP are always kept (within the hard caps).
    pub slack: Duration,
}

impl Default for RingLimits {
    fn default() -> Self {
        // Hard caps fit a 4 s GOP at 30 fps plus audio, or a few MB of a high bitrate
        // GOP. Consumers read within microseconds, so only a stalled one falls half a
        // second behind; memory per camera is then about one GOP.
        Self {
            max_frames: 512,
            max_bytes: 8 << 20,
            slack: Duration::from_millis(500),
        }
    }
}

struct Ring {
    frames: VecDeque<Frame>,
    /// Sequence number of `frames[0]`.
    first_seq: u64,
    bytes: usize,
    /// Sequence number of the newest video key frame still in the ring.
    gop_start: Option<u64>,
    limits: RingLimits,
    /// Total frames published.
    published: u64,
}

impl Ring {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.frames.len() as u64
    }
}

/// Fan-out of one camera's frames to any number of consumers.
#[derive(Clone)]
pub struct Broadcaster {
    inner: Arc<Inner>,
}

struct Inner {
    ring: Mutex<Ring>,
    /// Carries the next sequence number; receivers wake on publish.
    tx: watch::Sender<u64>,
    subscribers: AtomicUsize,
    /// Subscriber count changes, for on-demand sources.
    count_tx: watch::Sender<usize>,
}

impl std::fmt::Debug for Broadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcaster")
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}

impl Default for Broadcaster {
    fn default() -> Self {
        Self::new(RingLimits::default())
    }
}

impl Broadcaster {
    pub fn new(limits: RingLimits) -> Self {
        let (tx, _) = watch::channel(0);
        let (count_tx, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                ring: Mutex::new(Ring {
                    frames: VecDeque::new(),
                    first_seq: 0,
                    bytes: 0,
                    gop_start: None,
                    limits,
                    published: 0,
                }),
                tx,
                subscribers: AtomicUsize::new(0),
                count_tx,
            }),
        }
    }

    /// Adds a frame. Never blocks on consumers: the ring drops its oldest frames.
    pub fn publish(&self, frame: Frame) {
        let next = {
            let mut r = self.inner.ring.lock().unwrap();
            let seq = r.next_seq();
            if frame.track == TrackKind::Video && frame.key {
                r.gop_start = Some(seq);
            }
            r.bytes += frame.data.len();
            r.frames.push_back(frame);
            r.published += 1;
            // Memory per camera is the current GOP or the slack, not the hard caps.
            let newest = r.frames.back().map(|f| f.received);
            let stale = |r: &Ring| {
                r.gop_start.is_some_and(|g| r.first_seq < g)
                    && r.frames.front().zip(newest).is_some_and(|(f, n)| {
                        n.saturating_duration_since(f.received) > r.limits.slack
                    })
            };
            while r.frames.len() > r.limits.max_frames
                || (r.bytes > r.limits.max_bytes && r.frames.len() > 1)
                || stale(&r)
            {
                let old = r.frames.pop_front().expect("non-empty");
                r.bytes -= old.data.len();
                r.first_seq += 1;
            }
            if r.gop_start.is_some_and(|g| g < r.first_seq) {
                r.gop_start = None;
            }
            r.next_seq()
        };
        self.inner.tx.send_replace(next);
    }

    /// Forgets cached frames (e.g. when the source disconnects, so a new consumer
    /// does not start with stale video).
    pub fn clear(&self) {
        let mut r = self.inner.ring.lock().unwrap();
        let next = r.next_seq();
        r.frames.clear();
        r.bytes = 0;
        r.first_seq = next;
        r.gop_start = None;
    }

    /// A new consumer. It starts at the cached GOP's key frame when there is one, or
    /// else at the next key frame to arrive.
    pub fn subscribe(&self) -> Subscription {
        let (next, synced) = {
            let r = self.inner.ring.lock().unwrap();
            match r.gop_start {
                Some(g) => (g, true),
                None => (r.next_seq(), false),
            }
        };
        let n = self.inner.subscribers.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.count_tx.send_replace(n);
        Subscription {
            inner: self.inner.clone(),
            rx: self.inner.tx.subscribe(),
            next,
            synced,
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::SeqCst)
    }

    /// Watches the subscriber count (drives on-demand sources).
    pub fn watch_subscribers(&self) -> watch::Receiver<usize> {
        self.inner.count_tx.subscribe()
    }

    /// Total frames published since creation.
    pub fn published(&self) -> u64 {
        self.inner.ring.lock().unwrap().published
    }

    /// Bytes of frame data held in the ring (the cached GOP and what consumers
    /// may still need).
    pub fn cached_bytes(&self) -> usize {
        self.inner.ring.lock().unwrap().bytes
    }

    /// The cached GOP's key frame: the newest picture a decoder can start from.
    pub fn latest_key_frame(&self) -> Option<Frame> {
        let r = self.inner.ring.lock().unwrap();
        let g = r.gop_start?;
        r.frames.get((g - r.first_seq) as usize).cloned()
    }

    /// The newest stream parameters seen, if any frame is cached.
    pub fn latest_info(&self) -> Option<Arc<StreamInfo>> {
        let r = self.inner.ring.lock().unwrap();
        r.frames.back().map(|f| f.info.clone())
    }
}

/// One consumer's position in a [`Broadcaster`]. Dropping it unsubscribes.
pub struct Subscription {
    inner: Arc<Inner>,
    rx: watch::Receiver<u64>,
    next: u64,
    /// False until the subscriber has seen a video key frame; frames before it are
    /// skipped so decoders never start mid-GOP.
    synced: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("next", &self.next)
            .finish()
    }
}

impl Subscription {
    /// The next frame or lag notice, without waiting.
    pub fn try_recv(&mut self) -> Option<Recv> {
        let r = self.inner.ring.lock().unwrap();
        if self.next < r.first_seq {
            let missed = r.first_seq - self.next;
            self.next = r.first_seq;
            self.synced = false;
            return Some(Recv::Lagged { missed });
        }
        while self.next < r.next_seq() {
            let f = &r.frames[(self.next - r.first_seq) as usize];
            self.next += 1;
            if !self.synced {
                if f.track == TrackKind::Video && f.key {
                    self.synced = true;
                } else {
                    continue;
                }
            }
            return Some(Recv::Frame(f.clone()));
        }
        None
    }

    /// The next frame or lag notice. Returns `None` only if the broadcaster is gone.
    pub async fn recv(&mut self) -> Option<Recv> {
        loop {
            self.rx.borrow_and_update();
            if let Some(r) = self.try_recv() {
                return Some(r);
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let n = self.inner.subscribers.fetch_sub(1, Ordering::SeqCst) - 1;
        self.inner.count_tx.send_replace(n);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info() -> Arc<StreamInfo> {
        Arc::new(StreamInfo {
            generation: 1,
            video: VideoTrack {
                codec: VideoCodec::H264,
                sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
                pps: Bytes::from_static(&[0x68, 0xce]),
                vps: None,
                rfc6381: "avc1.42c01e".into(),
                sample_entry: Bytes::from_static(b"avc1"),
                width: 640,
                height: 360,
                timescale: 90_000,
                fps: Some(15.0),
            },
            audio: None,
        })
    }

    fn frame(i: i64, key: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            pts: i * 6000,
            key,
            data: Bytes::from(vec![0u8; 100]),
            info: info(),
            received: Instant::now(),
        }
    }

    fn pts(r: Option<Recv>) -> Option<i64> {
        match r {
            Some(Recv::Frame(f)) => Some(f.pts / 6000),
            _ => None,
        }
    }

    #[test]
    fn nal_units_and_annex_b() {
        let data = [0, 0, 0, 2, 0x41, 0x9a, 0, 0, 0, 1, 0x06, 0, 0, 0, 9, 1];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x41, 0x9a][..], &[0x06]],
            "stops at the overrunning length"
        );
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 0, 0, 1]).count(), 0);
        let mut f = frame(0, true);
        f.data = Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]);
        let mut out = Vec::new();
        write_annex_b(&f, true, &mut out);
        assert_eq!(
            out,
            [
                &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce][..],
                &[0, 0, 0, 1, 0x65, 0x88]
            ]
            .concat()
        );
        out.clear();
        write_annex_b(&f, false, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0x88]);
    }

    #[test]
    fn h265_irap_detection() {
        let nal = |t: u8, len: usize| -> Vec<u8> {
            let mut v = (len as u32 + 2).to_be_bytes().to_vec();
            v.extend_from_slice(&[t << 1, 1]);
            v.extend(std::iter::repeat_n(0xaa, len));
            v
        };
        let cra = [nal(39, 5), nal(21, 40)].concat(); // SEI, CRA
        let idr = nal(19, 10);
        let trail = [nal(39, 5), nal(1, 40)].concat();
        assert!(h265_is_irap(&cra));
        assert!(h265_is_irap(&idr));
        assert!(!h265_is_irap(&trail));
        assert!(!h265_is_irap(&[]));
        assert!(!h265_is_irap(&[0xff, 0xff, 0xff, 0xff, 2, 1, 0]));
    }

    #[test]
    fn new_subscriber_starts_at_cached_gop() {
        let b = Broadcaster::default();
        for i in 0..10 {
            b.publish(frame(i, i % 4 == 0));
        }
        let mut s = b.subscribe();
        // Key frames at 0, 4, 8: the current GOP starts at 8.
        assert_eq!(pts(s.try_recv()), Some(8));
        assert_eq!(pts(s.try_recv()), Some(9));
        assert!(s.try_recv().is_none());
        b.publish(frame(10, false));
        assert_eq!(pts(s.try_recv()), Some(10));
    }

    #[test]
    fn subscriber_before_first_key_frame_waits_for_it() {
        let b = Broadcaster::default();
        b.publish(frame(0, false));
        let mut s = b.subscribe();
        b.publish(frame(1, false));
        b.publish(frame(2, true));
        assert_eq!(pts(s.try_recv()), Some(2));
    }

    #[test]
    fn lagging_subscriber_is_told_and_resumes_at_next_key_frame() {
        let b = Broadcaster::new(RingLimits {
            max_frames: 8,
            max_bytes: 1 << 20,
            slack: Duration::from_secs(60),
        });
        b.publish(frame(0, true));
        let mut s = b.subscribe();
        assert_eq!(pts(s.try_recv()), Some(0));
        // 12 more frames, key frames every 5: 5 and 10. Ring keeps frames 5..=12.
        for i in 1..=12 {
            b.publish(frame(i, i % 5 == 0));
        }
        match s.try_recv() {
            Some(Recv::Lagged { missed }) => assert_eq!(missed, 4), // frames 1..=4
            other => panic!("expected lag, got {other:?}"),
        }
        // Resumes at the first key frame in the ring, never mid-GOP.
        assert_eq!(pts(s.try_recv()), Some(5));
    }

    #[test]
    fn lag_mid_gop_skips_to_next_key_frame() {
        let b = Broadcaster::new(RingLimits {
            max_frames: 4,
            max_bytes: 1 << 20,
            slack: Duration::from_secs(60),
        });
        b.publish(frame(0, true));
        let mut s = b.subscribe();
        for i in 1..=9 {
            b.publish(frame(i, i == 8));
        }
        // Ring holds 6..=9; frames 0..=5 were missed; 6 and 7 are mid-GOP and skipped.
        match s.try_recv() {
            Some(Recv::Lagged { missed }) => assert_eq!(missed, 6),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(pts(s.try_recv()), Some(8));
        assert_eq!(pts(s.try_recv()), Some(9));
    }

    #[test]
    fn byte_cap_bounds_ring() {
        let b = Broadcaster::new(RingLimits {
            max_frames: 1000,
            max_bytes: 1000,
            slack: Duration::from_secs(60),
        });
        for i in 0..100 {
            b.publish(frame(i, i == 0));
        }
        let r = b.inner.ring.lock().unwrap();
        assert!(r.bytes <= 1000 && r.frames.len() == 10);
        assert_eq!(
            r.gop_start, None,
            "evicted key frame is no longer the cached GOP"
        );
    }

    #[test]
    fn ring_keeps_current_gop_plus_slack_only() {
        let b = Broadcaster::new(RingLimits {
            max_frames: 1000,
            max_bytes: 1 << 20,
            slack: Duration::from_millis(600),
        });
        // Frames arrive every 60 ms: the slack is 10 frame intervals.
        let t0 = Instant::now();
        let at = |i: i64| Frame {
            received: t0 + Duration::from_millis(60 * i as u64),
            ..frame(i, i % 15 == 0)
        };
        // 60 frames, key frames every 15: the current GOP starts at 45.
        for i in 0..60 {
            b.publish(at(i));
        }
        {
            let r = b.inner.ring.lock().unwrap();
            assert_eq!(
                r.frames.len(),
                15,
                "only the current GOP (longer than the slack)"
            );
            assert_eq!(r.gop_start, Some(45));
        }
        // Two frames into a new GOP: the slack keeps 10 frames, the GOP start is kept.
        b.publish(at(60));
        b.publish(at(61));
        let r = b.inner.ring.lock().unwrap();
        assert_eq!(r.frames.len(), 11);
        assert_eq!(r.frames.front().unwrap().pts / 6000, 51);
        assert_eq!(r.gop_start, Some(60));
    }

    #[test]
    fn subscriber_count_tracks_drops() {
        let b = Broadcaster::default();
        let w = b.watch_subscribers();
        let s1 = b.subscribe();
        let s2 = b.subscribe();
        assert_eq!(*w.borrow(), 2);
        drop(s1);
        assert_eq!(b.subscriber_count(), 1);
        drop(s2);
        assert_eq!(*w.borrow(), 0);
    }

    #[tokio::test]
    async fn recv_wakes_on_publish_and_publish_never_waits() {
        let b = Broadcaster::default();
        let mut s = b.subscribe();
        let h = tokio::spawn(async move { pts(s.recv().await) });
        tokio::task::yield_now().await;
        b.publish(frame(0, true));
        assert_eq!(
            h.await.unwrap(),
            Some(0),
            "a waiting subscriber wakes on publish"
        );

        // A stalled subscriber (never reading) does not block publishing; when it
        // finally reads it learns what it missed and resumes at a key frame.
        let mut stalled = b.subscribe();
        for i in 1..10_000 {
            b.publish(frame(i, i % 15 == 0));
        }
        match stalled.recv().await {
            Some(Recv::Lagged { missed }) => assert!(missed > 9_000, "{missed}"),
            other => panic!("expected a lag notice, got {other:?}"),
        }
        let next = pts(stalled.recv().await).unwrap();
        assert_eq!(next % 15, 0, "resumed at frame {next}, not a key frame");
    }
}
