//! LL-HLS against real clients: GStreamer RTSP in, ffprobe/ffmpeg out; playlist
//! conformance and blocking reload.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

fn ffprobe_streams(url: &str) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json", url])
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Decodes `secs` of the stream with ffmpeg; returns (decoded seconds, frames, stderr).
fn ffmpeg_decode(url: &str, secs: u32) -> (f64, u64, String) {
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-i",
            url,
            "-t",
            &secs.to_string(),
        ])
        .args(["-map", "0:v:0", "-f", "null", "-", "-progress", "pipe:1"])
        .output()
        .expect("run ffmpeg");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = |key: &str| {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .next_back()
            .unwrap_or(0.0)
    };
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        last("out_time_us=") / 1e6,
        last("frame=") as u64,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn plays_in_ffmpeg(kind: &str, codec: &str, with_audio: bool) {
    let gst = GstServer::start(&[("cam", kind)], &[]);
    let host = start_host(&format!(
        "[[camera]]\nid = \"cam\"\nurl = \"{}\"\n",
        gst.url("cam")
    ))
    .await;
    let c = wait_state(&host, "cam", "streaming", Duration::from_secs(20)).await;
    assert_eq!(c["width"], 640, "{c}");
    let url = format!("http://{}/cameras/cam/hls/index.m3u8", host.addr);
    // First request starts the muxer; it answers once the first part exists.
    let (status, ct, _) = get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/vnd.apple.mpegurl");
    // Let a few segments build up so ffmpeg starts inside the window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let u = url.clone();
    let probe = tokio::task::spawn_blocking(move || ffprobe_streams(&u))
        .await
        .unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let v = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("video stream");
    assert_eq!(v["codec_name"], codec, "{probe}");
    assert_eq!(v["width"], 640);
    assert_eq!(v["height"], 360);
    if with_audio {
        let a = streams
            .iter()
            .find(|s| s["codec_type"] == "audio")
            .expect("audio stream");
        assert_eq!(a["codec_name"], "aac", "{probe}");
    }
    let u = url.clone();
    let (secs, frames, stderr) = tokio::task::spawn_blocking(move || ffmpeg_decode(&u, 5))
        .await
        .unwrap();
    assert!(
        secs >= 4.5,
        "decoded only {secs} s ({frames} frames): {stderr}"
    );
    assert!(frames >= 60, "decoded only {frames} frames in {secs} s");
    assert!(stderr.trim().is_empty(), "decode errors: {stderr}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_with_aac_plays_in_ffmpeg() {
    plays_in_ffmpeg("h264+aac", "h264", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_plays_in_ffmpeg() {
    plays_in_ffmpeg("h265", "hevc", false).await;
}

/// Attribute value of an `#EXT-X-...:A=B,C="D"` line.
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.split_once(':')?.1;
    let mut i = 0;
    let b = rest.as_bytes();
    while i < b.len() {
        let eq = rest[i..].find('=')? + i;
        let key = &rest[i..eq];
        let (val, next) = if b.get(eq + 1) == Some(&b'"') {
            let end = rest[eq + 2..].find('"')? + eq + 2;
            (&rest[eq + 2..end], end + 2)
        } else {
            let end = rest[eq + 1..].find(',').map_or(rest.len(), |e| e + eq + 1);
            (&rest[eq + 1..end], end + 1)
        };
        if key == name {
            return Some(val);
        }
        i = next;
    }
    None
}

fn tag<'a>(pl: &'a str, name: &str) -> Option<&'a str> {
    pl.lines().find(|l| l.starts_with(name))
}

/// First sample's flags of the first `trun` in an fMP4 fragment.
fn first_sample_is_key(frag: &[u8]) -> bool {
    let t = frag.windows(4).position(|w| w == b"trun").expect("trun");
    let flags = u32::from_be_bytes(frag[t + 4..t + 8].try_into().unwrap()) & 0xff_ffff;
    assert_eq!(flags, 0x701, "unexpected trun flags");
    let first_flags = u32::from_be_bytes(frag[t + 24..t + 28].try_into().unwrap());
    first_flags == 0x0200_0000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_conformance_and_blocking_reload() {
    let gst = GstServer::start(&[("cam", "h264")], &[]);
    let host = start_host(&format!(
        "[[camera]]\nid = \"cam\"\nurl = \"{}\"\n",
        gst.url("cam")
    ))
    .await;
    wait_state(&host, "cam", "streaming", Duration::from_secs(20)).await;
    let base = format!("http://{}/cameras/cam/hls", host.addr);
    get(&format!("{base}/index.m3u8")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, _, body) = get(&format!("{base}/index.m3u8")).await;
    let pl = String::from_utf8(body.to_vec()).unwrap();

    // Tags present and consistent.
    assert!(pl.starts_with("#EXTM3U\n"), "{pl}");
    let td: f64 = tag(&pl, "#EXT-X-TARGETDURATION:").unwrap()[22..]
        .parse()
        .unwrap();
    let pinf = tag(&pl, "#EXT-X-PART-INF:").expect("PART-INF");
    let part_target: f64 = attr(pinf, "PART-TARGET").unwrap().parse().unwrap();
    assert!((part_target - 0.2).abs() < 1e-9);
    let sc = tag(&pl, "#EXT-X-SERVER-CONTROL:").expect("SERVER-CONTROL");
    assert_eq!(attr(sc, "CAN-BLOCK-RELOAD"), Some("YES"));
    let phb: f64 = attr(sc, "PART-HOLD-BACK").unwrap().parse().unwrap();
    assert!(phb >= 3.0 * part_target - 1e-9, "PART-HOLD-BACK {phb}");
    assert!(tag(&pl, "#EXT-X-MAP:").is_some());
    assert!(tag(&pl, "#EXT-X-PRELOAD-HINT:TYPE=PART").is_some());
    let version: u32 = tag(&pl, "#EXT-X-VERSION:").unwrap()[15..].parse().unwrap();
    assert!(version >= 6);

    // Parts: duration ≤ target; segments: EXTINF ≈ sum of its parts, ≤ target duration,
    // and each starts at a key frame.
    let mut parts_in_seg: Vec<f64> = Vec::new();
    let mut segs = 0;
    let mut lines = pl.lines().peekable();
    let mut first_part_independent = None;
    while let Some(l) = lines.next() {
        if l.starts_with("#EXT-X-PART:") {
            let d: f64 = attr(l, "DURATION").unwrap().parse().unwrap();
            assert!(d <= part_target + 1e-6, "part of {d} s > target: {l}");
            if parts_in_seg.is_empty() {
                first_part_independent = Some(attr(l, "INDEPENDENT") == Some("YES"));
            }
            parts_in_seg.push(d);
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            let d: f64 = v.trim_end_matches(',').parse().unwrap();
            assert!(d <= td + 0.5, "segment of {d} s vs target duration {td}");
            if !parts_in_seg.is_empty() {
                let sum: f64 = parts_in_seg.iter().sum();
                assert!((sum - d).abs() < 0.01, "EXTINF {d} != sum of parts {sum}");
                assert_eq!(
                    first_part_independent,
                    Some(true),
                    "segment does not start independent"
                );
            }
            let uri = lines.next().unwrap();
            let (st, ct, seg) = get(&format!("{base}/{uri}")).await;
            assert_eq!(st, 200, "{uri}");
            assert_eq!(ct, "video/iso.segment");
            assert!(
                first_sample_is_key(&seg),
                "{uri} does not start with a key frame"
            );
            segs += 1;
            parts_in_seg.clear();
        }
    }
    assert!(segs >= 2, "{pl}");

    // Blocking reload. The next part's position (msn, index) follows from the
    // playlist: the open segment is MEDIA-SEQUENCE + the complete segments, its
    // parts are those listed after the last EXTINF.
    let next_part_of = |pl: &str| -> (u64, u64) {
        let seq: u64 = tag(pl, "#EXT-X-MEDIA-SEQUENCE:").unwrap()[22..]
            .parse()
            .unwrap();
        let complete = pl.matches("#EXTINF:").count() as u64;
        let tail = pl.rsplit("#EXTINF:").next().unwrap();
        let open_parts = if complete == 0 { pl } else { tail }
            .matches("#EXT-X-PART:")
            .count() as u64;
        (seq + complete, open_parts)
    };
    // A part two ahead of the next cannot exist yet: wait for that one, so the test
    // observes a real wait. On a loaded machine more than two parts may pass
    // between reading a playlist and asking: then the answer is immediate (and
    // right); ask again from that newer playlist, a few times at most.
    let mut latest = pl.clone();
    let mut attempts = Vec::new();
    let (pl2, waited) = loop {
        let (msn, idx) = next_part_of(&latest);
        let (want_msn, want_part) = (msn, idx + 2);
        let t0 = Instant::now();
        let (status, _, body) = get(&format!(
            "{base}/index.m3u8?_HLS_msn={want_msn}&_HLS_part={want_part}"
        ))
        .await;
        let waited = t0.elapsed();
        assert_eq!(status, 200);
        let pl2 = String::from_utf8(body.to_vec()).unwrap();
        let (next_msn, next_part) = next_part_of(&pl2);
        assert!(
            (next_msn, next_part) > (want_msn, want_part),
            "returned before part {want_msn}.{want_part} existed (next now {next_msn}.{next_part})"
        );
        attempts.push(waited);
        if waited >= Duration::from_millis(150) || attempts.len() == 4 {
            break (pl2, waited);
        }
        latest = pl2;
    };
    assert!(
        waited >= Duration::from_millis(150),
        "never blocked: answered after {attempts:?}"
    );
    assert!(
        waited <= Duration::from_millis(1500),
        "blocked for {waited:?}"
    );

    // The hinted part (parts are numbered across segments, so the hint is always the
    // part that comes next): a blocking GET answers with its bytes.
    let hint = attr(tag(&pl2, "#EXT-X-PRELOAD-HINT:").unwrap(), "URI")
        .unwrap()
        .to_string();
    let hinted: u64 = hint[5..hint.len() - 4].parse().unwrap();
    let last_listed: u64 = pl2
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .map(|l| {
            let u = attr(l, "URI").unwrap();
            u[5..u.len() - 4].parse::<u64>().unwrap()
        })
        .max()
        .unwrap();
    assert_eq!(hinted, last_listed + 1, "{pl2}");
    let t0 = Instant::now();
    let (status, _, part) = get(&format!("{base}/{hint}")).await;
    assert_eq!(status, 200);
    assert!(part.len() > 100 && &part[4..8] == b"moof");
    assert!(t0.elapsed() < Duration::from_millis(1500));

    // Too far ahead → 400; evicted → 404; garbage → 400.
    let (next_msn, _) = next_part_of(&pl2);
    let (status, _, _) = get(&format!("{base}/index.m3u8?_HLS_msn={}", next_msn + 10)).await;
    assert_eq!(status, 400);
    let (status, _, _) = get(&format!("{base}/part-0.m4s")).await;
    assert_eq!(status, 404, "parts are numbered from 1");
    let (status, _, _) = get(&format!("{base}/part-0.0.m4s")).await;
    assert!(status == 400 || status == 404);
    let (status, _, _) = get(&format!("{base}/seg-1000000.m4s")).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{base}/../../etc/passwd")).await;
    assert!(status == 404 || status == 400);
    host.stop().await;
}
