//! The camera simulator against real RTSP clients (ffprobe/ffmpeg): valid H.264
//! over RTSP, the wall-clock stamp readable from decoded pictures, MP4 input.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;

/// `ffmpeg` decodes `secs` of an RTSP stream; returns (frames, stderr).
fn ffmpeg_decode_rtsp(url: &str, secs: u32) -> (u64, String) {
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            url,
        ])
        .args([
            "-t",
            &secs.to_string(),
            "-f",
            "null",
            "-",
            "-progress",
            "pipe:1",
        ])
        .output()
        .expect("run ffmpeg");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let frames = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or(0);
    assert!(
        out.status.success(),
        "ffmpeg {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_the_pattern_without_errors() {
    let sim = start_camsim(3, false).await;
    let url = sim.url(2);
    let probe = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-show_streams",
                    "-of",
                    "json",
                    &url,
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{v}");
    assert_eq!(s["width"], 640);
    assert_eq!(s["height"], 360);
    let (frames, stderr) = tokio::task::spawn_blocking(move || ffmpeg_decode_rtsp(&url, 4))
        .await
        .unwrap();
    assert!(frames >= 55, "only {frames} frames in 4 s");
    assert!(stderr.trim().is_empty(), "decode errors: {stderr}");
    // Unknown mount → ffprobe fails (404), the simulator keeps serving.
    let bad = format!("rtsp://{}/cam3", sim.addr());
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sim.shutdown().await;
}

/// The stamp in a frame decoded by ffmpeg (not our decoder) reads back as a wall
/// clock time within a second of now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamp_reads_back_from_ffmpeg_decoded_frames() {
    let sim = start_camsim(1, true).await;
    let url = sim.url(0);
    let (luma, t_after) = tokio::task::spawn_blocking(move || {
        let out = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                &url,
            ])
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        (out.stdout, now)
    })
    .await
    .unwrap();
    assert_eq!(luma.len(), 640 * 360);
    let stamp = vigil::camsim::decode_stamp(&luma, 640, 640, 360).expect("a stamp in the picture");
    assert!(
        stamp <= t_after && t_after - stamp < 2000,
        "stamp {stamp} vs now {t_after}"
    );
    sim.shutdown().await;
}

/// An MP4 file (made by ffmpeg's libx264) loops through the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_an_mp4_file() {
    let dir = scratch_dir("camsim-mp4");
    let mp4 = dir.join("clip.mp4");
    let st = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-t",
            "2",
        ])
        .args([
            "-c:v", "libx264", "-g", "10", "-bf", "0", "-pix_fmt", "yuv420p",
        ])
        .arg(&mp4)
        .status()
        .unwrap();
    assert!(st.success());
    let sim = vigil::camsim::Camsim::start(&vigil::camsim::CamsimArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        input: Some(mp4.clone()),
        fps: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = sim.url(0);
    // 3 s covers a loop wrap-around (the clip is 2 s): continuous timestamps, no errors.
    let (frames, stderr) = tokio::task::spawn_blocking(move || ffmpeg_decode_rtsp(&url, 3))
        .await
        .unwrap();
    assert!(frames >= 25, "only {frames} frames");
    assert!(stderr.trim().is_empty(), "decode errors: {stderr}");
    sim.shutdown().await;

    // A file that is not video gives a clear error.
    let junk = dir.join("junk.mp4");
    std::fs::write(&junk, b"not a video").unwrap();
    let err = vigil::camsim::Camsim::start(&vigil::camsim::CamsimArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        input: Some(junk),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("junk.mp4"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host ingests 50 simulated cameras at once; all stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ingests_fifty_simulated_cameras() {
    let sim = start_camsim(50, false).await;
    let cams: String = (0..50)
        .map(|i| format!("[[camera]]\nid = \"c{i}\"\nurl = \"{}\"\n", sim.url(i)))
        .collect();
    let host = start_host(&cams).await;
    wait_for("50 cameras streaming", Duration::from_secs(30), || async {
        let all = get_json(&format!("http://{}/api/cameras", host.addr)).await;
        let n = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "streaming")
            .count();
        (n == 50).then_some(())
    })
    .await;
    host.stop().await;
    assert_eq!(
        sim.stats()
            .teardowns
            .load(std::sync::atomic::Ordering::Relaxed),
        50
    );
    sim.shutdown().await;
}
