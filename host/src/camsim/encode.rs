//! Video sources backed by openh264: the pre-encoded pattern loop shared by all
//! sessions, and the live encoder used for `--stamp`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, ensure};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode, UsageType,
};
use tokio::sync::{broadcast, watch};

use super::h264::{self, Clip, Frame, nal_type, nal_unit_type};
use super::picture::{Picture, render_pattern, render_stamp};

/// Validated encoding parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: u32,
    pub(crate) gop: u32,
    pub(crate) bitrate_kbps: u32,
}

impl Settings {
    /// Frames the box needs to cross the picture; also the length of the
    /// pre-encoded loop (two GOPs, so consecutive IDRs differ in `idr_pic_id`
    /// even when the loop wraps).
    fn motion_period(&self) -> u64 {
        2 * u64::from(self.gop)
    }
}

fn new_encoder(s: &Settings, intra_period: u32) -> anyhow::Result<Encoder> {
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(s.bitrate_kbps.saturating_mul(1000)))
        .max_frame_rate(FrameRate::from_hz(s.fps as f32))
        .rate_control_mode(RateControlMode::Bitrate)
        .usage_type(UsageType::CameraVideoRealTime)
        // Every input picture must produce an access unit: the loop and the
        // RTP timestamps assume one frame per period.
        .skip_frames(false)
        // Key frames only where we ask for them, so GOPs stay aligned.
        .scene_change_detect(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(intra_period))
        .num_threads(1);
    Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| anyhow!("creating the openh264 encoder: {e}"))
}

/// Encodes one picture; returns the Annex B output.
fn encode(enc: &mut Encoder, pic: &Picture) -> anyhow::Result<Vec<u8>> {
    let bitstream = enc
        .encode(&pic.as_yuv())
        .map_err(|e| anyhow!("openh264 encode failed: {e}"))?;
    Ok(bitstream.to_vec())
}

/// Encodes one loop of `2 * gop` pattern frames, each GOP starting with an IDR.
pub(crate) fn encode_loop(s: &Settings) -> anyhow::Result<Clip> {
    let mut enc = new_encoder(s, s.gop)?;
    let mut pic = Picture::new(s.width as usize, s.height as usize);
    let len = s.motion_period();
    let mut encoded = Vec::with_capacity(len as usize);
    for n in 0..len {
        render_pattern(&mut pic, n, len);
        // The first picture is always an IDR; forcing before the encoder has
        // been initialised (lazily, by the first encode) is not supported.
        if n > 0 && n % u64::from(s.gop) == 0 {
            enc.force_intra_frame();
        }
        encoded.push(encode(&mut enc, &pic)?);
    }
    let aus: Vec<Vec<&[u8]>> = encoded.iter().map(|b| h264::split_annex_b(b)).collect();
    let clip = h264::build_clip(&aus).context("encoding the test pattern")?;
    ensure!(
        clip.frames.len() as u64 == len,
        "openh264 produced {} pictures for {len} inputs",
        clip.frames.len()
    );
    for (n, frame) in clip.frames.iter().enumerate() {
        ensure!(
            frame.idr == (n as u64).is_multiple_of(u64::from(s.gop)),
            "openh264 did not place key frames at GOP boundaries (frame {n})"
        );
    }
    Ok(clip)
}

/// One frame from the live encoder. `index` counts frame periods since the
/// encoder started, so gaps (if the encoder fell behind) show in timestamps.
#[derive(Debug)]
pub(crate) struct LiveFrame {
    pub(crate) index: u64,
    pub(crate) frame: Frame,
}

/// A running live encoder.
#[derive(Debug)]
pub(crate) struct Live {
    /// Template receiver; sessions call `resubscribe()` on it. When the encoder
    /// thread stops, its sender is dropped and every session sees `Closed`.
    pub(crate) rx: broadcast::Receiver<Arc<LiveFrame>>,
    pub(crate) sps: Vec<u8>,
    pub(crate) pps: Vec<u8>,
    pub(crate) thread: JoinHandle<()>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the `--stamp` live encoder on its own OS thread (encoding is CPU-bound
/// and would otherwise stall a runtime worker). It renders the pattern plus the
/// current wall-clock stamp at `fps` and broadcasts each encoded frame. It stops
/// when `stop` becomes true or its sender is dropped.
pub(crate) fn start_live(s: Settings, stop: watch::Receiver<bool>) -> anyhow::Result<Live> {
    // Intra period 0: key frames only where forced, which is robust to the
    // frame index jumping ahead after a stall.
    let mut enc = new_encoder(&s, 0)?;
    let mut pic = Picture::new(s.width as usize, s.height as usize);
    ensure!(
        render_stamp(&mut pic, now_ms()),
        "{}x{} is too small for the time stamp",
        s.width,
        s.height
    );
    // Prime the encoder once to learn the parameter sets for the SDP.
    let first = encode(&mut enc, &pic)?;
    let mut sps = None;
    let mut pps = None;
    for nal in h264::split_annex_b(&first) {
        match nal_unit_type(nal) {
            nal_type::SPS => sps = Some(nal.to_vec()),
            nal_type::PPS => pps = Some(nal.to_vec()),
            _ => {}
        }
    }
    let (Some(sps), Some(pps)) = (sps, pps) else {
        return Err(anyhow!("openh264 emitted no SPS/PPS on its first frame"));
    };
    // Two seconds of frames: a session further behind than that skips ahead.
    let capacity = (s.fps as usize * 2).max(16);
    let (tx, rx) = broadcast::channel(capacity);
    let (thread_sps, thread_pps) = (sps.clone(), pps.clone());
    let thread = std::thread::Builder::new()
        .name("camsim-live".into())
        .spawn(move || live_loop(s, enc, pic, tx, stop, &thread_sps, &thread_pps))
        .context("spawning the live encoder thread")?;
    Ok(Live {
        rx,
        sps,
        pps,
        thread,
    })
}

fn live_loop(
    s: Settings,
    mut enc: Encoder,
    mut pic: Picture,
    tx: broadcast::Sender<Arc<LiveFrame>>,
    mut stop: watch::Receiver<bool>,
    sps: &[u8],
    pps: &[u8],
) {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(s.fps));
    let gop = u64::from(s.gop);
    let start = Instant::now();
    let mut index: u64 = 0;
    let mut previous_gop = None;
    loop {
        if stop.has_changed().is_err() || *stop.borrow_and_update() {
            break;
        }
        let due = start + period.saturating_mul(index.min(u64::from(u32::MAX)) as u32);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            // More than a frame late (e.g. CPU starvation): jump to the current
            // period so timestamps keep tracking the wall clock.
            let current = (now - start).as_nanos() / period.as_nanos().max(1);
            index = index.max(current as u64);
        }
        render_pattern(&mut pic, index, s.motion_period());
        render_stamp(&mut pic, now_ms());
        // Key frame whenever we enter a new GOP (also after a jump).
        if previous_gop.is_some_and(|g| g != index / gop) {
            enc.force_intra_frame();
        }
        previous_gop = Some(index / gop);
        let annex_b = match encode(&mut enc, &pic) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("camsim live encoder stopped: {e:#}");
                break;
            }
        };
        let mut nals = h264::split_annex_b(&annex_b);
        nals.retain(|n| nal_unit_type(n) != nal_type::AUD);
        let idr = nals.iter().any(|n| nal_unit_type(n) == nal_type::IDR);
        let has_ps = nals.iter().any(|n| nal_unit_type(n) == nal_type::SPS)
            && nals.iter().any(|n| nal_unit_type(n) == nal_type::PPS);
        if idr && !has_ps {
            nals.retain(|n| !matches!(nal_unit_type(n), nal_type::SPS | nal_type::PPS));
            nals.splice(0..0, [sps, pps]);
        }
        if !nals.is_empty() {
            let frame = Frame::packetize(&nals);
            // An error only means nobody is subscribed right now.
            let _ = tx.send(Arc::new(LiveFrame { index, frame }));
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_loop_has_key_frames_at_gop_starts() {
        let s = Settings {
            width: 320,
            height: 180,
            fps: 15,
            gop: 5,
            bitrate_kbps: 300,
        };
        let clip = encode_loop(&s).unwrap();
        assert_eq!(clip.frames.len(), 10);
        assert!(clip.frames[0].idr && clip.frames[5].idr);
        assert_eq!(nal_unit_type(&clip.sps), nal_type::SPS);
        assert_eq!(nal_unit_type(&clip.pps), nal_type::PPS);
        // Big IDRs get fragmented, P frames are small.
        assert!(clip.frames[0].packet_count() >= 1);
        let total: u64 = clip
            .frames
            .iter()
            .map(|f| u64::from(f.payload_octets()))
            .sum();
        assert!(total > 1000, "suspiciously small loop: {total} bytes");
    }
}
