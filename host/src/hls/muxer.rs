//! The LL-HLS segmenter: turns a camera's frames into parts, segments, init segments
//! and a playlist. Pure and synchronous (no tokio, no HTTP) so it is tested with
//! plain frames; [`super::HlsStream`] drives it from a broadcaster subscription.
//!
//! Timing: a frame joins the open part the moment it arrives, with the previous
//! frame interval as its provisional duration; when the next frame arrives while the
//! part is still open, the duration is corrected from the real timestamps. A part
//! closes as soon as one more frame interval would push it past the part target, so
//! parts never exceed the target for regular frame rates and a frame never waits for
//! its successor (that would add a frame interval of latency). Each fragment's
//! `tfdt` carries the real decode time, so a provisional duration that turns out
//! wrong costs at most a sub-frame gap, never drift. Segments start only at key
//! frames, once the running segment has reached the segment target.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::fmp4::{self, AUDIO_TRACK, Sample, TrackRun, VIDEO_TRACK};
use crate::config::HlsConfig;
use crate::media::{Frame, StreamInfo, TrackKind};

/// A published part.
#[derive(Clone, Debug)]
pub struct Part {
    /// Global part number (the fragment's `mfhd` sequence): part URIs use it, so the
    /// preload hint is right whichever segment the next part lands in.
    pub seq: u32,
    pub duration: f64,
    pub independent: bool,
    pub data: Bytes,
    /// When the part became fetchable, and the arrival of its oldest frame.
    pub ready_at: Instant,
    pub oldest_frame: Instant,
}

/// A segment: its parts in order; complete once the next segment started.
#[derive(Clone, Debug)]
pub struct Segment {
    pub msn: u64,
    pub parts: Vec<Part>,
    pub complete: bool,
    /// Init segment id (the stream generation).
    pub init_id: u64,
    /// Timestamps do not continue from the previous segment's (reconnect, lag).
    pub discontinuity: bool,
    pub start_wall: SystemTime,
}

impl Segment {
    pub fn duration(&self) -> f64 {
        self.parts.iter().map(|p| p.duration).sum()
    }
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }
}

/// What a request for a part or segment finds.
#[derive(Debug)]
pub enum Lookup {
    Ready(Bytes),
    /// Not yet produced, but expected soon: worth a blocking wait.
    Pending,
    /// Evicted, or too far in the future.
    Gone,
}

/// The segmenter's state for one camera.
#[derive(Debug)]
pub struct Muxer {
    part_target: f64,
    segment_target: f64,
    window: usize,
    max_bytes: usize,
    segments: VecDeque<Segment>,
    inits: VecDeque<(u64, Bytes)>,
    next_msn: u64,
    discontinuity_seq: u64,
    frag_seq: u32,
    info: Option<Arc<StreamInfo>>,
    /// Added to input video pts to get output decode times (ticks).
    video_offset: i64,
    /// Next output decode time of video, ticks.
    video_next: u64,
    /// Input pts of the newest video frame, to correct its provisional duration.
    last_video_pts: Option<i64>,
    /// Smoothed frame interval in ticks (0 until two frames were seen).
    interval: f64,
    last_duration: u32,
    part_video: Vec<Sample>,
    part_video_base: u64,
    part_audio: Vec<Sample>,
    part_audio_base: u64,
    part_oldest: Option<Instant>,
    next_discontinuity: bool,
    max_segment_duration: f64,
    /// Part availability latencies: part fetchable − arrival of its oldest frame
    /// (the longest any frame of the part waited).
    pub latencies: VecDeque<Duration>,
}

impl Muxer {
    pub fn new(cfg: &HlsConfig) -> Self {
        Self {
            part_target: cfg.part_target.as_secs_f64(),
            segment_target: cfg.segment_target.as_secs_f64(),
            window: cfg.window_segments,
            max_bytes: cfg.max_buffer_bytes,
            segments: VecDeque::new(),
            inits: VecDeque::new(),
            next_msn: 0,
            discontinuity_seq: 0,
            frag_seq: 1,
            info: None,
            video_offset: 0,
            video_next: 0,
            last_video_pts: None,
            interval: 0.0,
            last_duration: 0,
            part_video: Vec::new(),
            part_video_base: 0,
            part_audio: Vec::new(),
            part_audio_base: 0,
            part_oldest: None,
            next_discontinuity: false,
            max_segment_duration: 0.0,
            latencies: VecDeque::new(),
        }
    }

    /// Feeds one frame; returns true if a part was published.
    pub fn push(&mut self, f: Frame) -> bool {
        let mut published = false;
        let new_gen = self.info.as_ref().map(|i| i.generation) != Some(f.info.generation);
        if new_gen {
            if f.track != TrackKind::Video || !f.key {
                return false; // wait for a key frame of the new generation
            }
            published |= self.close_part();
            published |= self.close_segment();
            if self.info.is_some() {
                self.next_discontinuity = true;
            }
            self.info = Some(f.info.clone());
            self.video_offset = self.video_next as i64 - f.pts;
            self.last_duration = 0;
            self.last_video_pts = None;
            let init = Bytes::from(fmp4::init_segment(&f.info));
            self.inits.push_back((f.info.generation, init));
        }
        match f.track {
            TrackKind::Video => {
                if let Some(prev) = self.last_video_pts {
                    let d = f.pts.saturating_sub(prev);
                    // Track the usual frame interval, ignoring stalls.
                    if d > 0 && (self.interval <= 0.0 || (d as f64) <= 4.0 * self.interval) {
                        self.interval = if self.interval <= 0.0 {
                            d as f64
                        } else {
                            0.9 * self.interval + 0.1 * d as f64
                        };
                    }
                    // A gap longer than the cap (a stalled camera) stays a gap in
                    // the timeline (the next fragment's tfdt is exact) rather than
                    // stretching one frame over it and the part past its target.
                    if d > 0 && d <= i64::from(self.duration_cap(&f)) {
                        self.last_duration = d as u32;
                        // The previous frame is the open part's last sample unless
                        // the part closed after it.
                        if let Some(s) = self.part_video.last_mut() {
                            s.duration = d as u32;
                        }
                    }
                }
                self.last_video_pts = Some(f.pts);
                let dur = self.estimate_duration(&f);
                published |= self.add_video(f, dur);
            }
            TrackKind::Audio => self.add_audio(f),
        }
        published
    }

    /// The subscription lagged: frames were lost, so timestamps jump. Flush what we
    /// have and mark the next segment as a discontinuity.
    pub fn on_lag(&mut self) -> bool {
        let p = self.close_part() | self.close_segment();
        self.next_discontinuity = true;
        // Force a fresh timeline mapping at the next key frame.
        self.info = None;
        p
    }

    /// A frame's provisional duration: the last interval seen, or the nominal one
    /// from the SPS, capped (see `duration_cap`) so a stall before this frame cannot
    /// make its part (and segment) balloon.
    fn estimate_duration(&self, f: &Frame) -> u32 {
        let ts = f.info.video.timescale;
        let nominal = f
            .info
            .video
            .fps
            .filter(|&r| r > 0.0)
            .map(|r| (f64::from(ts) / r) as u32);
        let d = if self.last_duration > 0 {
            self.last_duration
        } else {
            nominal.unwrap_or(ts / 15)
        };
        d.min(self.duration_cap(f)).max(1)
    }

    /// The longest a single frame may last: twice the usual frame interval seen, but
    /// at least the part target (cameras at 1–5 fps have longer frames than that).
    fn duration_cap(&self, f: &Frame) -> u32 {
        let ts = f.info.video.timescale;
        let target = self.part_target * f64::from(ts);
        (2.0 * self.interval).max(target).min(f64::from(ts) * 10.0) as u32
    }

    fn timescale(&self) -> f64 {
        self.info
            .as_ref()
            .map_or(90_000.0, |i| f64::from(i.video.timescale))
    }

    fn part_duration(&self) -> f64 {
        self.part_video
            .iter()
            .map(|s| f64::from(s.duration))
            .sum::<f64>()
            / self.timescale()
    }

    fn add_video(&mut self, f: Frame, dur: u32) -> bool {
        let mut published = false;
        let ts = self.timescale();
        let d = f64::from(dur) / ts;
        let eps = 0.0005;
        if f.key {
            let seg_dur = self
                .segments
                .back()
                .filter(|s| !s.complete)
                .map_or(0.0, |s| s.duration())
                + self.part_duration();
            if (self.segments.back().is_some_and(|s| !s.complete) || !self.part_video.is_empty())
                && seg_dur + eps >= self.segment_target - d / 2.0
            {
                published |= self.close_part();
                published |= self.close_segment();
            }
        }
        let open_segment = self.segments.back().is_some_and(|s| !s.complete);
        if !open_segment && self.part_video.is_empty() && !f.key {
            return published; // a segment must start with a key frame
        }
        if !self.part_video.is_empty() && self.part_duration() + d > self.part_target + eps {
            published |= self.close_part();
        }
        if self.part_video.is_empty() {
            self.part_video_base = (f.pts + self.video_offset).max(0) as u64;
        }
        self.video_next = (f.pts + self.video_offset).max(0) as u64 + u64::from(dur);
        self.last_duration = dur;
        self.part_oldest = Some(self.part_oldest.map_or(f.received, |t| t.min(f.received)));
        self.part_video.push(Sample {
            duration: dur,
            key: f.key,
            data: f.data,
        });
        if self.part_duration() + d > self.part_target + eps {
            published |= self.close_part();
        }
        published
    }

    fn add_audio(&mut self, f: Frame) {
        let Some(info) = &self.info else { return };
        let Some(a) = fmp4::hls_audio(info) else {
            return;
        };
        if self.part_video.is_empty() && self.segments.back().is_none_or(|s| s.complete) {
            return; // no segment to attach it to yet
        }
        let sr = i64::from(a.sample_rate);
        let offset = self.video_offset * sr / i64::from(info.video.timescale);
        let dts = f.pts + offset;
        if dts < 0 {
            return;
        }
        if self.part_audio.is_empty() {
            self.part_audio_base = dts as u64;
        } else {
            // Keep runs contiguous: a gap in audio starts the next part's run.
            let expected = self.part_audio_base
                + self
                    .part_audio
                    .iter()
                    .map(|s| u64::from(s.duration))
                    .sum::<u64>();
            if (dts as u64).abs_diff(expected) > u64::from(a.frame_length) {
                return;
            }
        }
        self.part_audio.push(Sample {
            duration: a.frame_length,
            key: true,
            data: f.data,
        });
    }

    fn close_part(&mut self) -> bool {
        if self.part_video.is_empty() {
            return false;
        }
        let duration = self.part_duration();
        let independent = self.part_video[0].key;
        let data = fmp4::fragment(
            self.frag_seq,
            &[
                TrackRun {
                    track_id: VIDEO_TRACK,
                    base_dts: self.part_video_base,
                    samples: &self.part_video,
                },
                TrackRun {
                    track_id: AUDIO_TRACK,
                    base_dts: self.part_audio_base,
                    samples: &self.part_audio,
                },
            ],
        );
        self.frag_seq = self.frag_seq.wrapping_add(1);
        self.part_video.clear();
        self.part_audio.clear();
        let now = Instant::now();
        let oldest = self.part_oldest.take().unwrap_or(now);
        if self.latencies.len() >= 1000 {
            self.latencies.pop_front();
        }
        self.latencies
            .push_back(now.saturating_duration_since(oldest));
        if self.segments.back().is_none_or(|s| s.complete) {
            let init_id = self.info.as_ref().map_or(0, |i| i.generation);
            self.segments.push_back(Segment {
                msn: self.next_msn,
                parts: Vec::new(),
                complete: false,
                init_id,
                discontinuity: std::mem::take(&mut self.next_discontinuity),
                start_wall: SystemTime::now() - Duration::from_secs_f64(duration),
            });
            self.next_msn += 1;
        }
        let seg = self.segments.back_mut().expect("just ensured");
        seg.parts.push(Part {
            seq: self.frag_seq.wrapping_sub(1),
            duration,
            independent,
            data: Bytes::from(data),
            ready_at: now,
            oldest_frame: oldest,
        });
        true
    }

    /// Completes the open segment, if any; returns whether one was completed (the
    /// playlist changed: blocking reloads must wake).
    fn close_segment(&mut self) -> bool {
        let mut closed = false;
        if let Some(s) = self.segments.back_mut().filter(|s| !s.complete) {
            s.complete = true;
            closed = true;
            self.max_segment_duration = self.max_segment_duration.max(s.duration());
        }
        self.evict();
        closed
    }

    fn evict(&mut self) {
        let complete = |m: &Self| m.segments.iter().filter(|s| s.complete).count();
        let bytes = |m: &Self| m.segments.iter().map(Segment::bytes).sum::<usize>();
        while complete(self) > self.window
            || (bytes(self) > self.max_bytes && self.segments.len() > 2)
        {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.discontinuity_seq += 1;
            }
        }
        let oldest_init = self.segments.front().map(|s| s.init_id);
        while self.inits.len() > 1 && Some(self.inits[0].0) != oldest_init {
            self.inits.pop_front();
        }
    }

    /// True once at least one part exists.
    pub fn has_media(&self) -> bool {
        self.segments.iter().any(|s| !s.parts.is_empty())
    }

    /// True once two complete segments exist: the first playlist a client sees
    /// has them. hls.js rejects a playlist of parts only, ffmpeg ignores parts, and
    /// with a single complete segment hls.js (1.7) reloads that segment in a loop at
    /// its end instead of moving on to the next segment's parts, then stalls (seen
    /// in its debug log); a stall raises its target latency for good.
    pub fn has_segments_to_start(&self) -> bool {
        self.segments.iter().filter(|s| s.complete).count() >= 2
    }

    /// True once a complete segment exists (the fallback for long GOPs).
    pub fn has_complete_segment(&self) -> bool {
        self.segments.iter().any(|s| s.complete)
    }

    /// The msn and part index the next part will have.
    pub fn next_part(&self) -> (u64, usize) {
        match self.segments.back() {
            Some(s) if !s.complete => (s.msn, s.parts.len()),
            _ => (self.next_msn, 0),
        }
    }

    /// Whether the playlist already satisfies a blocking reload for `msn`/`part`.
    pub fn satisfies(&self, msn: u64, part: Option<usize>) -> bool {
        let (next_msn, next_part) = self.next_part();
        match part {
            Some(p) => (msn, p) < (next_msn, next_part),
            None => self.segments.iter().any(|s| s.msn >= msn && s.complete) || next_msn > msn + 1,
        }
    }

    /// Whether part `seq` is the next one or the one after: worth a blocking wait.
    pub fn is_near_future(&self, seq: u32) -> bool {
        let ahead = seq.wrapping_sub(self.frag_seq);
        ahead <= 1
    }

    /// A part by its global number.
    pub fn part(&self, seq: u32) -> Lookup {
        let found = self
            .segments
            .iter()
            .rev()
            .flat_map(|s| s.parts.iter().rev())
            .find(|p| p.seq == seq);
        match found {
            Some(p) => Lookup::Ready(p.data.clone()),
            None if self.is_near_future(seq) => Lookup::Pending,
            None => Lookup::Gone,
        }
    }

    pub fn segment(&self, msn: u64) -> Lookup {
        match self.segments.iter().find(|s| s.msn == msn) {
            Some(s) if s.complete => {
                let mut b = Vec::with_capacity(s.bytes());
                s.parts.iter().for_each(|p| b.extend_from_slice(&p.data));
                Lookup::Ready(Bytes::from(b))
            }
            Some(_) => Lookup::Pending,
            None if msn >= self.next_msn && msn <= self.next_msn + 1 => Lookup::Pending,
            None => Lookup::Gone,
        }
    }

    pub fn init(&self, id: u64) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }

    /// Bytes of media held.
    pub fn buffered_bytes(&self) -> usize {
        self.segments.iter().map(Segment::bytes).sum()
    }

    /// `EXT-X-TARGETDURATION`: every EXTINF rounded to the nearest integer must not
    /// exceed it (RFC 8216 4.3.3.1).
    pub fn target_duration(&self) -> u64 {
        self.max_segment_duration
            .round()
            .max(self.segment_target.ceil())
            .max(1.0) as u64
    }

    /// The media playlist.
    pub fn playlist(&self) -> String {
        let td = self.target_duration();
        let mut s = String::with_capacity(2048);
        let _ = write!(
            s,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{td}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},HOLD-BACK={:.3}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            3.0 * self.part_target,
            3.0 * td as f64,
            self.part_target,
            self.segments.front().map_or(self.next_msn, |s| s.msn),
            self.discontinuity_seq,
        );
        // Parts are listed for the newest segments only (about three target durations).
        let with_parts = self.segments.len().saturating_sub(4);
        let mut map: Option<u64> = None;
        for (i, seg) in self.segments.iter().enumerate() {
            // Also on the first segment: the discontinuity sequence counts it.
            if seg.discontinuity {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(seg.init_id) {
                let _ = writeln!(s, "#EXT-X-MAP:URI=\"init-{}.mp4\"", seg.init_id);
                map = Some(seg.init_id);
            }
            let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(seg.start_wall));
            if i >= with_parts {
                for p in &seg.parts {
                    let _ = writeln!(
                        s,
                        "#EXT-X-PART:DURATION={:.5},URI=\"part-{}.m4s\"{}",
                        p.duration,
                        p.seq,
                        if p.independent {
                            ",INDEPENDENT=YES"
                        } else {
                            ""
                        }
                    );
                }
            }
            if seg.complete {
                let _ = write!(s, "#EXTINF:{:.5},\nseg-{}.m4s\n", seg.duration(), seg.msn);
            }
        }
        let _ = writeln!(
            s,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-{}.m4s\"",
            self.frag_seq
        );
        s
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a system time.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's published algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tests::info;

    fn frame(info: &Arc<StreamInfo>, i: i64, key: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            pts: 1_000_000 + i * 6000, // 15 fps
            key,
            data: Bytes::from(vec![i as u8; 10]),
            info: info.clone(),
            received: Instant::now(),
        }
    }

    fn feed(m: &mut Muxer, info: &Arc<StreamInfo>, range: std::ops::Range<i64>) {
        for i in range {
            m.push(frame(info, i, i % 15 == 0));
        }
    }

    #[test]
    fn playlist_golden_15fps_1s_gop() {
        let mut m = Muxer::new(&HlsConfig::default());
        let inf = info();
        feed(&mut m, &inf, 0..35);
        let pl = m.playlist();
        let stripped: String = pl
            .lines()
            .filter(|l| !l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
            .map(|l| format!("{l}\n"))
            .collect();
        let want = "\
#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,HOLD-BACK=3.000
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI=\"init-1.mp4\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-1.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part-2.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-3.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-4.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-5.m4s\"
#EXTINF:1.00000,
seg-0.m4s
#EXT-X-PART:DURATION=0.20000,URI=\"part-6.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part-7.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-8.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-9.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part-10.m4s\"
#EXTINF:1.00000,
seg-1.m4s
#EXT-X-PART:DURATION=0.20000,URI=\"part-11.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-12.m4s\"
";
        assert_eq!(stripped, want);
        assert_eq!(pl.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3);
    }

    #[test]
    fn parts_never_exceed_target_and_segments_start_on_key_frames() {
        // 30 fps with a 2 s GOP and an irregular frame.
        let mut m = Muxer::new(&HlsConfig::default());
        let inf = info();
        for i in 0..300i64 {
            let jitter = if i == 100 { 1500 } else { 0 };
            m.push(Frame {
                track: TrackKind::Video,
                pts: i * 3000 + jitter,
                key: i % 60 == 0,
                data: Bytes::from_static(b"x"),
                info: inf.clone(),
                received: Instant::now(),
            });
        }
        for s in &m.segments {
            assert!(s.parts[0].independent, "segment {} starts mid-GOP", s.msn);
            for p in &s.parts {
                assert!(p.duration <= 0.2 + 1e-9, "part of {}", p.duration);
            }
            // A part that closes right after the odd frame keeps that frame's
            // provisional duration: off by at most one frame interval (1/30 s).
            if s.complete {
                assert!(
                    (s.duration() - 2.0).abs() <= 1.0 / 30.0 + 1e-6,
                    "segment of {}",
                    s.duration()
                );
            }
        }
        assert_eq!(m.target_duration(), 2);
        assert_eq!(m.segments.iter().filter(|s| s.complete).count(), 4);
    }

    #[test]
    fn blocking_reload_conditions() {
        let mut m = Muxer::new(&HlsConfig::default());
        let inf = info();
        feed(&mut m, &inf, 0..4); // samples 0..=2 complete: part 0.0 exists
        assert_eq!(m.next_part(), (0, 1));
        assert!(m.satisfies(0, Some(0)));
        assert!(!m.satisfies(0, Some(1)));
        // Parts are numbered globally from 1: part 0.0 is part 1, 0.1 is part 2.
        assert!(matches!(m.part(1), Lookup::Ready(_)));
        assert!(matches!(m.part(2), Lookup::Pending));
        assert!(
            matches!(m.part(3), Lookup::Pending),
            "the one after next may be waited for"
        );
        assert!(matches!(m.part(9), Lookup::Gone));
        assert!(matches!(m.part(0), Lookup::Gone));
        m.push(frame(&inf, 4, false));
        assert!(!m.satisfies(0, Some(1)), "part 0.1 needs three samples");
        // The third sample closes the part at once: no waiting for its successor.
        m.push(frame(&inf, 5, false));
        assert!(m.satisfies(0, Some(1)));
        assert!(matches!(m.part(2), Lookup::Ready(_)));
        assert!(!m.satisfies(0, None));
    }

    #[test]
    fn preload_hint_is_right_across_segment_boundaries() {
        let mut m = Muxer::new(&HlsConfig::default());
        let inf = info();
        // 15 fps, key frame every 15: the hint after part 5 of segment 0 must be the
        // first part of segment 1, whatever its index inside the segment.
        feed(&mut m, &inf, 0..15);
        assert!(
            m.playlist()
                .contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-6.m4s\"")
        );
        feed(&mut m, &inf, 15..18);
        let pl = m.playlist();
        assert!(pl.contains("#EXTINF:1.00000,\nseg-0.m4s\n"), "{pl}");
        assert!(pl.contains("URI=\"part-6.m4s\",INDEPENDENT=YES"), "{pl}");
        assert!(matches!(m.part(6), Lookup::Ready(_)));
    }

    #[test]
    fn slow_cameras_keep_their_real_frame_durations() {
        // 2 fps, a key frame every 2 frames: frames last 0.5 s, longer than a part.
        let mut m = Muxer::new(&HlsConfig::default());
        let inf = info();
        for i in 0..20i64 {
            m.push(Frame {
                pts: i * 45_000,
                ..frame(&inf, i, i % 2 == 0)
            });
        }
        let complete: Vec<f64> = m
            .segments
            .iter()
            .filter(|s| s.complete)
            .map(Segment::duration)
            .collect();
        assert!(!complete.is_empty());
        for d in complete {
            assert!((d - 1.0).abs() < 1e-6, "segment of {d} s, want 1 s");
        }
    }

    #[test]
    fn a_stall_does_not_balloon_parts() {
        let mut m = Muxer::new(&HlsConfig::default());
        let inf = info();
        feed(&mut m, &inf, 0..10);
        // The camera stalls for 2 s, then carries on.
        for i in 40..60 {
            m.push(frame(&inf, i, i % 15 == 0));
        }
        for s in &m.segments {
            for p in &s.parts {
                assert!(
                    p.duration <= 0.2 + 1e-9,
                    "part of {} s after a stall",
                    p.duration
                );
            }
        }
    }

    #[test]
    fn window_and_byte_cap_evict_old_segments() {
        let cfg = HlsConfig {
            window_segments: 3,
            ..HlsConfig::default()
        };
        let mut m = Muxer::new(&cfg);
        let inf = info();
        // Frame 150 (a key frame) is muxed once frame 151 gives its duration; it
        // closes segment 9 and opens segment 10.
        feed(&mut m, &inf, 0..15 * 10 + 2);
        assert_eq!(m.segments.iter().filter(|s| s.complete).count(), 3);
        assert!(m.playlist().contains("#EXT-X-MEDIA-SEQUENCE:7\n"));
        assert!(matches!(m.segment(2), Lookup::Gone));
        assert!(matches!(m.segment(8), Lookup::Ready(_)));

        let cfg = HlsConfig {
            max_buffer_bytes: 400,
            ..HlsConfig::default()
        };
        let mut m = Muxer::new(&cfg);
        feed(&mut m, &inf, 0..15 * 10 + 1);
        assert!(m.segments.len() <= 3, "{}", m.segments.len());
    }

    #[test]
    fn new_generation_starts_discontinuity_with_new_map() {
        let mut m = Muxer::new(&HlsConfig::default());
        let a = info();
        feed(&mut m, &a, 0..20);
        let mut b = (*info()).clone();
        b.generation = 2;
        let b = Arc::new(b);
        // The new session restarts timestamps near zero.
        for i in 0..20 {
            m.push(Frame {
                pts: i * 6000,
                ..frame(&b, i, i % 15 == 0)
            });
        }
        let pl = m.playlist();
        assert!(
            pl.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4\"\n"),
            "{pl}"
        );
        assert!(m.init(2).is_some() && m.init(1).is_some());
        // Output timeline continues: the new segment's first part starts where the old ended.
        assert!(m.video_next > 20 * 6000);
    }

    #[test]
    fn rfc3339_formats() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(rfc3339(t), "2025-11-24T16:00:00.123Z");
    }
}
