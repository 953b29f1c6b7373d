//! Live viewing against real peers: headless Chromium plays WHEP, LL-HLS (hls.js)
//! and MJPEG from GStreamer's RTSP server and from the camera simulator; a second
//! WebRTC peer (the `webrtc` crate) decodes WHEP; snapshots, MJPEG sharing, metrics;
//! bad WHEP requests; sessions cleaned up after viewers vanish.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Plays `camera` over `protocol` in Chromium for 5 s and checks it: playing,
/// `currentTime` advancing, the source's dimensions, a picture that is not blank
/// (in the page and in the saved screenshot).
async fn check_browser(
    host: &vigil::app::Host,
    camera: &str,
    protocol: &str,
    tag: &str,
) -> serde_json::Value {
    let shot = artifacts_dir().join(format!("live-{tag}-{protocol}.png"));
    let _ = std::fs::remove_file(&shot);
    let url = format!(
        "http://{}/cameras/{camera}/player?protocol={protocol}",
        host.addr
    );
    let r = drive_browser(vec![
        "play".into(),
        url,
        "5".into(),
        shot.display().to_string(),
    ])
    .await;
    assert_eq!(r["ok"], true, "{protocol}: {r}");
    let samples = r["samples"].as_array().unwrap();
    let (first, last) = (&samples[0], samples.last().unwrap());
    assert_eq!(last["w"], 640, "{protocol} width: {r}");
    assert_eq!(last["h"], 360, "{protocol} height: {r}");
    if protocol == "mjpeg" {
        // An <img> has no clock: the picture itself must change.
        let sigs: std::collections::HashSet<String> =
            samples.iter().map(|s| s["sig"].to_string()).collect();
        assert!(sigs.len() >= 2, "MJPEG picture never changed: {r}");
    } else {
        let advanced = last["t"].as_f64().unwrap() - first["t"].as_f64().unwrap();
        assert!(
            advanced >= 4.0,
            "{protocol}: currentTime advanced only {advanced:.2} s in 5 s: {r}"
        );
    }
    let std = r["picture"]["std"].as_f64().unwrap_or(0.0);
    assert!(
        std > 10.0,
        "{protocol}: displayed picture looks blank (luma std {std}): {r}"
    );
    let (mean, std) = png_luma_stats(&shot);
    assert!(
        std > 10.0 && mean > 10.0,
        "{protocol}: screenshot {} looks blank ({mean}, {std})",
        shot.display()
    );
    eprintln!(
        "{tag}/{protocol}: playing after {} ms, first WHEP frame {} ms, hls.js latency {} s, errors {}",
        r["startedMs"], r["firstFrameMs"], r["hlsLatency"], r["errors"]
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_whep_hls_and_mjpeg_from_gstreamer() {
    // Colour bars: a picture whose screenshot is clearly not blank.
    let gst = GstServer::start(&[("cam", "h264")], &["--pattern", "smpte"]);
    let host = start_host(&format!(
        "[[camera]]\nid = \"gst\"\nurl = \"{}\"\n",
        gst.url("cam")
    ))
    .await;
    wait_state(&host, "gst", "streaming", Duration::from_secs(20)).await;
    for p in ["whep", "hls", "mjpeg"] {
        check_browser(&host, "gst", p, "gstreamer").await;
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_whep_hls_and_mjpeg_from_camera_simulator() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"sim\"\nurl = \"{}\"\n",
        sim.url(0)
    ))
    .await;
    wait_state(&host, "sim", "streaming", Duration::from_secs(20)).await;
    for p in ["whep", "hls", "mjpeg"] {
        check_browser(&host, "sim", p, "camsim").await;
    }
    // Viewer counts and bytes are in the API and in /metrics.
    let c = camera(&host, "sim").await;
    for p in ["webrtc", "hls", "mjpeg"] {
        assert!(
            c["outputs"][p]["bytes_sent"].as_u64().unwrap() > 100_000,
            "{p}: {c}"
        );
    }
    assert!(
        c["outputs"]["webrtc"]["sessions_closed"].as_u64().unwrap() >= 1,
        "{c}"
    );
    host.stop().await;
    sim.shutdown().await;
}

/// A camera with G.711 audio: Chromium receives the PCMU track next to the H.264
/// video over WHEP (passthrough, no transcoding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_receives_g711_audio_over_whep() {
    let gst = GstServer::start(&[("cam", "h264+pcmu")], &["--pattern", "smpte"]);
    let host = start_host(&format!(
        "[[camera]]\nid = \"g711\"\nurl = \"{}\"\n",
        gst.url("cam")
    ))
    .await;
    let c = wait_state(&host, "g711", "streaming", Duration::from_secs(20)).await;
    assert_eq!(c["audio"], "pcmu", "{c}");
    let r = check_browser(&host, "g711", "whep", "g711").await;
    let audio = &r["rtp"]["audio"];
    assert_eq!(audio["codec"], "audio/PCMU", "{r}");
    assert!(
        audio["packets"].as_u64().unwrap_or(0) >= 100,
        "audio packets: {r}"
    );
    let video = &r["rtp"]["video"];
    assert_eq!(video["codec"], "video/H264", "{r}");
    host.stop().await;
}

/// The second WebRTC peer: the `webrtc` crate receives ≥ 5 s of H.264 over WHEP
/// and openh264 decodes every frame without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_whep_client_decodes_five_seconds() {
    let gst = GstServer::start(&[("cam", "h264")], &[]);
    let host = start_host(&format!(
        "[[camera]]\nid = \"gst\"\nurl = \"{}\"\n",
        gst.url("cam")
    ))
    .await;
    wait_state(&host, "gst", "streaming", Duration::from_secs(20)).await;
    let url = format!("http://{}/cameras/gst/whep", host.addr);
    let probe = tokio::spawn(async move {
        vigil::whep_client::probe(&url, &vigil::whep_client::ProbeOptions::default()).await
    });
    // While it plays, the viewer is counted in the API and in /metrics.
    let m = wait_for(
        "a WebRTC viewer in /metrics",
        Duration::from_secs(10),
        || async {
            let (_, _, m) = get(&format!("http://{}/metrics", host.addr)).await;
            let m = String::from_utf8_lossy(&m).to_string();
            m.contains("vigil_viewers{camera=\"gst\",protocol=\"webrtc\"} 1")
                .then_some(m)
        },
    )
    .await;
    assert!(m.contains("# TYPE vigil_bytes_sent_total counter"), "{m}");
    let r = probe.await.unwrap().expect("WHEP probe");
    eprintln!("rust WHEP client: {r:?}");
    assert!(r.media_seconds >= 4.9, "{r:?}");
    assert!(r.frames >= 70 && r.decoded >= 70, "{r:?}");
    assert_eq!(r.decode_errors, 0, "{r:?}");
    assert_eq!((r.width, r.height), (640, 360));
    assert!(r.key_frames >= 4, "{r:?}");
    let h = wait_for(
        "the session to be closed",
        Duration::from_secs(5),
        || async {
            let h = get_json(&format!("http://{}/api/health", host.addr)).await;
            (h["webrtc"]["sessions"] == 0).then_some(h)
        },
    )
    .await;
    assert_eq!(h["webrtc"]["opened"], 1, "{h}");
    host.stop().await;
}

/// An offer as a WebRTC stack makes it (valid ICE and DTLS attributes), built once.
async fn real_offer() -> String {
    use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
    use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    use webrtc::peer_connection::{MediaEngine, PeerConnection, PeerConnectionBuilder};
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: "video/H264".into(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line:
                        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                            .into(),
                    rtcp_feedback: vec![],
                },
                payload_type: 102,
            },
            RtpCodecKind::Video,
        )
        .unwrap();
    struct NoEvents;
    #[async_trait::async_trait]
    impl webrtc::peer_connection::PeerConnectionEventHandler for NoEvents {}
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_handler(std::sync::Arc::new(NoEvents))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .unwrap();
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sdp = pc.local_description().await.unwrap().sdp;
    pc.close().await.unwrap();
    sdp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_rejects_bad_requests_clearly() {
    let sim = start_camsim(1, false).await;
    let gst = GstServer::start(&[("cam", "h265")], &[]);
    let host = start_host(&format!(
        "[webrtc]\nmax_sessions_per_camera = 2\n\
         [[camera]]\nid = \"sim\"\nurl = \"{}\"\n[[camera]]\nid = \"hevc\"\nurl = \"{}\"\n",
        sim.url(0),
        gst.url("cam")
    ))
    .await;
    wait_state(&host, "sim", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "hevc", "streaming", Duration::from_secs(20)).await;
    let base = format!("http://{}/cameras", host.addr);
    let offer = real_offer().await;
    let sdp = Some("application/sdp");

    let check = |status: u16, body: &bytes::Bytes, want: u16, needle: &str| {
        let text = String::from_utf8_lossy(body);
        assert_eq!(status, want, "{text}");
        assert!(text.contains(needle), "expected {needle:?} in {text}");
    };
    // Malformed SDP → 400 with the reason.
    let (st, _, b) = request("POST", &format!("{base}/sim/whep"), sdp, "this is not sdp").await;
    check(st, &b, 400, "malformed SDP offer");
    // No H.264 → 400 naming the codecs.
    let vp8: String = offer
        .lines()
        .map(|l| l.replace("H264/90000", "VP8/90000"))
        .filter(|l| !l.starts_with("a=fmtp:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let (st, _, b) = request("POST", &format!("{base}/sim/whep"), sdp, &vp8).await;
    check(
        st,
        &b,
        400,
        "the offer has no H.264 (offered video codecs: VP8)",
    );
    // H.264 offered only in packetization-mode 0.
    let mode0 = offer.replace("packetization-mode=1", "packetization-mode=0");
    let (st, _, b) = request("POST", &format!("{base}/sim/whep"), sdp, &mode0).await;
    check(st, &b, 400, "packetization-mode=1");
    // Wrong content type → 415.
    let (st, _, b) = request(
        "POST",
        &format!("{base}/sim/whep"),
        Some("text/plain"),
        &offer,
    )
    .await;
    check(st, &b, 415, "application/sdp");
    // Unknown camera → 404.
    let (st, _, b) = request("POST", &format!("{base}/nope/whep"), sdp, &offer).await;
    check(st, &b, 404, "no camera with id");
    // An H.265 camera → 412 naming the codec.
    let (st, _, b) = request("POST", &format!("{base}/hevc/whep"), sdp, &offer).await;
    check(st, &b, 412, "H.265");
    // Within the cap: 201 with an answer and a Location; over the cap → 503.
    let mut locations = Vec::new();
    for _ in 0..2 {
        let (st, h, b) = request("POST", &format!("{base}/sim/whep"), sdp, &offer).await;
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
        assert_eq!(h["content-type"], "application/sdp");
        assert!(
            String::from_utf8_lossy(&b).contains("a=candidate:"),
            "answer without candidates"
        );
        locations.push(h["location"].to_str().unwrap().to_string());
    }
    let (st, h, b) = request("POST", &format!("{base}/sim/whep"), sdp, &offer).await;
    check(st, &b, 503, "limit reached for camera sim (2 sessions)");
    assert_eq!(h["retry-after"], "1");
    // DELETE: the sessions end; an unknown one → 404; trickle PATCH of an unknown → 404.
    for l in &locations {
        let (st, _, _) = request("DELETE", &format!("http://{}{l}", host.addr), None, "").await;
        assert_eq!(st, 200, "{l}");
    }
    let (st, _, b) = request("DELETE", &format!("{base}/sim/whep/feedbeef"), None, "").await;
    check(st, &b, 404, "no WebRTC session");
    let (st, _, b) = request(
        "PATCH",
        &format!("{base}/sim/whep/feedbeef"),
        Some("application/trickle-ice-sdpfrag"),
        "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
    )
    .await;
    check(st, &b, 404, "no WebRTC session");
    let h = get_json(&format!("http://{}/api/health", host.addr)).await;
    assert_eq!(h["webrtc"]["sessions"], 0, "{h}");
    host.stop().await;
    sim.shutdown().await;
}

/// A host as a separate process (for RSS measurements).
struct HostProcess {
    child: Child,
    addr: String,
}

impl HostProcess {
    fn start(name: &str, toml: &str) -> HostProcess {
        let port = free_port();
        let dir = scratch_dir(name);
        let cfg = dir.join("vigil.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{toml}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(vigil_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        HostProcess {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 1000 WHEP connect/disconnect cycles — half end with DELETE, half vanish before
/// connecting — leave no session behind, and the host's RSS after them is within 5 %
/// of its RSS after the first 100. At most 16 sessions are open at once, so the
/// comparison measures leaks rather than the allocator's high-water mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_whep_cycles_leave_no_sessions_and_no_growth() {
    let sim = start_camsim(1, false).await;
    let host = HostProcess::start(
        "whep-cycles",
        &format!(
            "[webrtc]\nconnect_timeout_s = 1\nmax_sessions = 2000\nmax_sessions_per_camera = 2000\n\
             [[camera]]\nid = \"sim\"\nurl = \"{}\"\n",
            sim.url(0)
        ),
    );
    let api = format!("http://{}", host.addr);
    wait_for("the host to stream", Duration::from_secs(20), || async {
        if tokio::net::TcpStream::connect(&host.addr).await.is_err() {
            return None;
        }
        (get_json(&format!("{api}/api/cameras/sim")).await["state"] == "streaming").then_some(())
    })
    .await;
    let offer = real_offer().await;
    let sessions = || async {
        get_json(&format!("{api}/api/health")).await["webrtc"]["sessions"]
            .as_u64()
            .unwrap()
    };
    let settle = || async {
        wait_for(
            "WebRTC sessions to drain",
            Duration::from_secs(15),
            || async { (sessions().await == 0).then_some(()) },
        )
        .await;
    };
    let t0 = Instant::now();
    let mut rss_after_100 = 0;
    let cycles: usize = std::env::var("VIGIL_WHEP_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for i in 0..cycles {
        while sessions().await >= 16 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (st, h, b) = request(
            "POST",
            &format!("{api}/cameras/sim/whep"),
            Some("application/sdp"),
            &offer,
        )
        .await;
        assert_eq!(st, 201, "cycle {i}: {}", String::from_utf8_lossy(&b));
        if i % 2 == 0 {
            let l = h["location"].to_str().unwrap();
            let (st, _, _) = request("DELETE", &format!("{api}{l}"), None, "").await;
            assert_eq!(st, 200, "cycle {i}");
        }
        if i == 99 {
            settle().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss_after_100 = rss_kib(host.child.id());
        }
        if (i + 1) % 250 == 0 {
            eprintln!(
                "after {} cycles: RSS {} KiB",
                i + 1,
                rss_kib(host.child.id())
            );
        }
    }
    settle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after_1000 = rss_kib(host.child.id());
    let h = get_json(&format!("{api}/api/health")).await;
    eprintln!(
        "1000 WHEP cycles in {:?}; RSS after 100: {rss_after_100} KiB, after 1000: {rss_after_1000} KiB; {h}",
        t0.elapsed()
    );
    assert_eq!(h["webrtc"]["sessions"], 0);
    assert_eq!(h["webrtc"]["opened"], 1000, "{h}");
    assert_eq!(h["webrtc"]["closed"], 1000, "{h}");
    let growth = rss_after_1000 as f64 / rss_after_100 as f64 - 1.0;
    assert!(
        growth <= 0.05,
        "RSS grew {:.1} % ({rss_after_100} → {rss_after_1000} KiB)",
        growth * 100.0
    );
    sim.shutdown().await;
}

/// A browser that disappears mid-session (SIGKILL, no DELETE) is noticed through
/// ICE consent failure and its session cleaned up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_browser_session_is_cleaned_up() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"sim\"\nurl = \"{}\"\n",
        sim.url(0)
    ))
    .await;
    wait_state(&host, "sim", "streaming", Duration::from_secs(20)).await;
    let url = format!("http://{}/cameras/sim/player?protocol=whep", host.addr);
    let r = drive_browser(vec!["vanish".into(), url]).await;
    assert_eq!(r["ok"], true, "{r}");
    let killed = Instant::now();
    let c = camera(&host, "sim").await;
    assert_eq!(c["outputs"]["webrtc"]["viewers"], 1, "{c}");
    wait_for(
        "the vanished session to be cleaned up",
        Duration::from_secs(30),
        || async {
            let h = get_json(&format!("http://{}/api/health", host.addr)).await;
            (h["webrtc"]["sessions"] == 0).then_some(())
        },
    )
    .await;
    eprintln!("vanished viewer cleaned up after {:?}", killed.elapsed());
    let c = camera(&host, "sim").await;
    assert_eq!(c["outputs"]["webrtc"]["viewers"], 0, "{c}");
    host.stop().await;
    sim.shutdown().await;
}

/// Snapshots come from the cached key frame at once; bad requests and cameras
/// without pictures get clear errors, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_instant_and_errors_are_clear() {
    let gst = GstServer::start(&[("cam", "h264"), ("hevc", "h265")], &[]);
    let closed = free_port();
    let host = start_host(&format!(
        "[[camera]]\nid = \"gst\"\nurl = \"{}\"\n[[camera]]\nid = \"hevc\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"down\"\nurl = \"rtsp://127.0.0.1:{closed}/x\"\n",
        gst.url("cam"),
        gst.url("hevc")
    ))
    .await;
    wait_state(&host, "gst", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "hevc", "streaming", Duration::from_secs(20)).await;
    let base = format!("http://{}/cameras", host.addr);
    let jpeg_dims = |b: &[u8]| {
        assert_eq!(&b[..2], &[0xff, 0xd8], "not a JPEG");
        let sof = b
            .windows(2)
            .position(|w| w == [0xff, 0xc0] || w == [0xff, 0xc2])
            .unwrap();
        (
            u16::from_be_bytes([b[sof + 7], b[sof + 8]]),
            u16::from_be_bytes([b[sof + 5], b[sof + 6]]),
        )
    };
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (st, ct, b) = get(&format!("{base}/gst/snapshot.jpg")).await;
        times.push(t.elapsed());
        assert_eq!((st, ct.as_str()), (200, "image/jpeg"));
        assert_eq!(jpeg_dims(&b), (640, 360));
    }
    times.sort();
    eprintln!(
        "snapshot: first {:?}, median {:?}",
        times.last().unwrap(),
        times[10]
    );
    assert!(*times.last().unwrap() < Duration::from_secs(1), "{times:?}");
    let (st, _, b) = get(&format!("{base}/gst/snapshot.jpg?width=320")).await;
    assert_eq!(st, 200);
    assert_eq!(jpeg_dims(&b), (320, 180));
    for (url, want, needle) in [
        (
            format!("{base}/gst/snapshot.jpg?width=abc"),
            400,
            "is not a number",
        ),
        (
            format!("{base}/gst/snapshot.jpg?width=5"),
            400,
            "out of range",
        ),
        (
            format!("{base}/nope/snapshot.jpg"),
            404,
            "no camera with id",
        ),
        (format!("{base}/hevc/snapshot.jpg"), 412, "H.265"),
        (
            format!("{base}/down/snapshot.jpg"),
            503,
            "has no picture yet",
        ),
        (format!("{base}/down/mjpeg"), 503, "has no picture yet"),
        (format!("{base}/hevc/mjpeg"), 412, "H.265"),
    ] {
        let t = Instant::now();
        let (st, _, b) = get(&url).await;
        let text = String::from_utf8_lossy(&b);
        assert_eq!(st, want, "{url}: {text}");
        assert!(
            text.contains(needle),
            "{url}: expected {needle:?} in {text}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{url} took {:?}",
            t.elapsed()
        );
    }
    host.stop().await;
}

/// Reads `n` JPEG parts from an MJPEG response; returns them.
async fn read_mjpeg(url: &str, n: usize) -> Vec<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u: hyper::Uri = url.parse().unwrap();
    let mut s = tokio::net::TcpStream::connect(u.authority().unwrap().as_str())
        .await
        .unwrap();
    s.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", u.path()).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut parts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while parts.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} MJPEG parts",
            parts.len()
        );
        let mut chunk = [0u8; 65536];
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(k > 0, "MJPEG stream closed");
        buf.extend_from_slice(&chunk[..k]);
        if parts.is_empty() && buf.starts_with(b"HTTP/1.1") {
            let head = String::from_utf8_lossy(&buf).to_string();
            assert!(
                head.contains("multipart/x-mixed-replace; boundary=frame"),
                "{head}"
            );
        }
        // Collect complete JPEGs (SOI ... EOI).
        while let (Some(a), Some(b)) = (
            buf.windows(2).position(|w| w == [0xff, 0xd8]),
            buf.windows(2).position(|w| w == [0xff, 0xd9]),
        ) {
            if b < a {
                buf.drain(..b + 2);
                continue;
            }
            parts.push(buf[a..b + 2].to_vec());
            buf.drain(..b + 2);
        }
    }
    parts
}

/// Two MJPEG viewers share one decoder+encoder, which stops after the last leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_viewers_share_one_encoder() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[mjpeg]\nfps = 10\nwidth = 320\n[[camera]]\nid = \"sim\"\nurl = \"{}\"\n",
        sim.url(0)
    ))
    .await;
    wait_state(&host, "sim", "streaming", Duration::from_secs(20)).await;
    let url = format!("http://{}/cameras/sim/mjpeg", host.addr);
    let (u1, u2) = (url.clone(), url.clone());
    let a = tokio::spawn(async move { read_mjpeg(&u1, 10).await });
    let b = tokio::spawn(async move { read_mjpeg(&u2, 10).await });
    let h = wait_for("two MJPEG viewers", Duration::from_secs(5), || async {
        let c = camera(&host, "sim").await;
        (c["outputs"]["mjpeg"]["viewers"] == 2)
            .then_some(get_json(&format!("http://{}/api/health", host.addr)).await)
    })
    .await;
    assert_eq!(h["mjpeg_encoders"], 1, "{h}");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    for p in a.iter().chain(&b) {
        let sof = p.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        assert_eq!(u16::from_be_bytes([p[sof + 7], p[sof + 8]]), 320, "width");
    }
    assert!(
        a.windows(2).any(|w| w[0] != w[1]),
        "MJPEG pictures never change"
    );
    wait_for(
        "the MJPEG encoder to stop",
        Duration::from_secs(5),
        || async {
            let h = get_json(&format!("http://{}/api/health", host.addr)).await;
            (h["mjpeg_encoders"] == 0).then_some(())
        },
    )
    .await;
    let c = camera(&host, "sim").await;
    assert_eq!(c["outputs"]["mjpeg"]["viewers"], 0, "{c}");
    assert_eq!(c["outputs"]["mjpeg"]["sessions_closed"], 2, "{c}");
    host.stop().await;
    sim.shutdown().await;
}
