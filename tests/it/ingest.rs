//! RTSP ingest against real servers: GStreamer's RTSP server and our camera simulator.
//! Outages, authentication, transports, on-demand cameras and bad peers.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn frames(c: &serde_json::Value) -> u64 {
    c["frames"].as_u64().unwrap_or(0)
}

/// Stop the RTSP server: the camera shows `retrying` with a reason; restart it:
/// streaming again within 2 s of its return; a second camera is unaffected
/// throughout. Uses the default (production) retry policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_recovery_leave_other_cameras_alone() {
    let mut gst = GstServer::start(&[("a", "h264")], &[]);
    let sim = start_camsim(1, false).await;
    let host = start_host_config(&format!(
        "[[camera]]\nid = \"flaky\"\nurl = \"{}\"\n[[camera]]\nid = \"steady\"\nurl = \"{}\"\n",
        gst.url("a"),
        sim.url(0)
    ))
    .await;
    wait_state(&host, "flaky", "streaming", Duration::from_secs(20)).await;
    let steady0 = wait_state(&host, "steady", "streaming", Duration::from_secs(20)).await;

    gst.stop();
    let down = wait_state(&host, "flaky", "retrying", Duration::from_secs(10)).await;
    let reason = down["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("camera flaky"),
        "reason should name the camera: {down}"
    );
    assert!(
        reason.contains(&gst.url("a")),
        "reason should name the URL: {down}"
    );

    // Stay down a while: several retries fail, the other camera keeps streaming.
    let mut last = frames(&steady0);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = camera(&host, "steady").await;
        assert_eq!(s["state"], "streaming", "{s}");
        assert!(frames(&s) > last, "steady camera stalled: {s}");
        last = frames(&s);
        let f = camera(&host, "flaky").await;
        assert_ne!(f["state"], "streaming", "{f}");
    }

    gst.restart();
    let back = Instant::now();
    let c = wait_state(&host, "flaky", "streaming", Duration::from_secs(10)).await;
    let took = back.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "streaming again only after {took:?}"
    );
    assert!(c["reconnects"].as_u64().unwrap() >= 1, "{c}");
    let s = camera(&host, "steady").await;
    assert_eq!(s["reconnects"], 0, "steady camera reconnected: {s}");
    eprintln!("outage: camera streaming again {took:?} after the server returned");
    host.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_basic_digest_and_wrong() {
    let basic = GstServer::start(
        &[("cam", "h264")],
        &["--user", "op", "--password", "s3cret-pw", "--auth", "basic"],
    );
    let digest = GstServer::start(
        &[("cam", "h264")],
        &[
            "--user",
            "op",
            "--password",
            "s3cret-pw",
            "--auth",
            "digest",
        ],
    );
    let at = |port: u16, pw: &str| format!("rtsp://op:{pw}@127.0.0.1:{port}/cam");
    let host = start_host(&format!(
        "[[camera]]\nid = \"basic\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"digest\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"wrong\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"anonymous\"\nurl = \"rtsp://127.0.0.1:{}/cam\"\n",
        at(basic.port, "s3cret-pw"),
        at(digest.port, "s3cret-pw"),
        at(digest.port, "not-the-pw"),
        basic.port
    ))
    .await;
    wait_state(&host, "basic", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "digest", "streaming", Duration::from_secs(20)).await;
    for id in ["wrong", "anonymous"] {
        let c = wait_state(&host, id, "failed", Duration::from_secs(10)).await;
        assert_eq!(c["last_error_kind"], "unauthenticated", "{c}");
        assert!(
            c["last_error"].as_str().unwrap().contains("unauthorized"),
            "{c}"
        );
    }
    let (_, _, all) = get(&format!("http://{}/api/cameras", host.addr)).await;
    let all = String::from_utf8_lossy(&all);
    assert!(
        !all.contains("s3cret-pw") && !all.contains("not-the-pw"),
        "credentials leaked: {all}"
    );
    assert!(all.contains("rtsp://***@127.0.0.1"), "{all}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_transport() {
    let gst = GstServer::start(&[("cam", "h264")], &[]);
    let host = start_host(&format!(
        "[[camera]]\nid = \"u\"\nurl = \"{}\"\ntransport = \"udp\"\n",
        gst.url("cam")
    ))
    .await;
    let c = wait_state(&host, "u", "streaming", Duration::from_secs(20)).await;
    assert_eq!(c["transport"], "udp");
    let c = wait_for("frames over UDP", Duration::from_secs(10), || async {
        let c = camera(&host, "u").await;
        (frames(&c) >= 30).then_some(c)
    })
    .await;
    assert_eq!(c["codec"], "h264", "{c}");
    host.stop().await;
}

/// Unreachable host, garbage bytes, a server with no video: each camera gets a
/// clear error of its own and the good camera keeps streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_give_clear_per_camera_errors() {
    // A TCP server that answers every connection with garbage.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = garbage.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = s.write_all(&junk).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            });
        }
    });
    let audio_only = GstServer::start(&[("radio", "audio-only")], &[]);
    let sim = start_camsim(1, false).await;
    let closed = free_port();
    let host = start_host(&format!(
        "[[camera]]\nid = \"good\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"unreachable\"\nurl = \"rtsp://127.0.0.1:{closed}/x\"\n\
         [[camera]]\nid = \"garbage\"\nurl = \"rtsp://127.0.0.1:{garbage_port}/x\"\n\
         [[camera]]\nid = \"novideo\"\nurl = \"{}\"\n\
         [[camera]]\nid = \"nomount\"\nurl = \"rtsp://127.0.0.1:{}/nothing-here\"\n",
        sim.url(0),
        audio_only.url("radio"),
        audio_only.port,
    ))
    .await;
    wait_state(&host, "good", "streaming", Duration::from_secs(20)).await;

    let check =
        |id: &'static str, state: &'static str, kind: &'static str, needle: &'static str| {
            let host = &host;
            async move {
                let c = wait_for(
                    &format!("{id} to report its error"),
                    Duration::from_secs(15),
                    || async {
                        let c = camera(host, id).await;
                        (c["state"] == state && c["last_error"].is_string()).then_some(c)
                    },
                )
                .await;
                let msg = c["last_error"].as_str().unwrap();
                assert!(msg.contains(&format!("camera {id}")), "{c}");
                assert!(msg.contains(needle), "{id}: expected {needle:?} in {msg:?}");
                assert_eq!(c["last_error_kind"], kind, "{c}");
                eprintln!("{id}: {msg}");
            }
        };
    check("unreachable", "retrying", "unavailable", "refused").await;
    check("garbage", "retrying", "protocol", "127.0.0.1").await;
    check(
        "novideo",
        "failed",
        "failed_precondition",
        "no H.264 or H.265 video stream offered (offers: audio/mpeg4-generic)",
    )
    .await;
    check("nomount", "failed", "not_found", "404").await;

    // The good camera streamed throughout and the API still answers for everyone.
    let good = camera(&host, "good").await;
    assert_eq!(good["state"], "streaming");
    assert_eq!(good["reconnects"], 0, "{good}");
    let health = get_json(&format!("http://{}/api/health", host.addr)).await;
    assert_eq!(health["cameras"], 5);
    host.stop().await;
    sim.shutdown().await;
}

/// An on-demand camera connects for its first consumer and disconnects (with a
/// TEARDOWN) after the idle grace period; an always-on camera tears down on stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_connects_for_consumers_and_tears_down() {
    let sim = start_camsim(2, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"od\"\nurl = \"{}\"\nmode = \"on-demand\"\n\
         [[camera]]\nid = \"on\"\nurl = \"{}\"\n\
         [hls]\nidle_timeout_s = 1\n",
        sim.url(0),
        sim.url(1)
    ))
    .await;
    wait_state(&host, "on", "streaming", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = camera(&host, "od").await;
    assert_eq!(c["state"], "idle", "{c}");
    assert_eq!(
        sim.stats()
            .playing
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // A viewer arrives: the first playlist request connects the camera.
    let t0 = Instant::now();
    let (status, _, _) = get(&format!("http://{}/cameras/od/hls/index.m3u8", host.addr)).await;
    assert_eq!(status, 200);
    eprintln!("on-demand: first playlist after {:?}", t0.elapsed());
    let c = camera(&host, "od").await;
    assert_eq!(c["state"], "streaming", "{c}");
    assert_eq!(c["consumers"], 1, "{c}");

    // The viewer leaves: muxer closes after 1 s idle, camera after the grace (1 s).
    let c = wait_for(
        "on-demand camera to disconnect",
        Duration::from_secs(15),
        || async {
            let c = camera(&host, "od").await;
            (c["state"] == "idle").then_some(c)
        },
    )
    .await;
    assert_eq!(c["consumers"], 0, "{c}");
    wait_for(
        "the simulator to see the session end",
        Duration::from_secs(5),
        || async {
            (sim.stats()
                .playing
                .load(std::sync::atomic::Ordering::Relaxed)
                == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        sim.stats()
            .teardowns
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    host.stop().await;
    assert_eq!(
        sim.stats()
            .teardowns
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    sim.shutdown().await;
}

/// The host ingests the simulator: metrics are right and the camera sees the
/// simulator's frame rate and resolution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_metrics_from_simulator() {
    let sim = start_camsim(1, false).await;
    let host = start_host(&format!(
        "[[camera]]\nid = \"s\"\nurl = \"{}\"\n",
        sim.url(0)
    ))
    .await;
    wait_state(&host, "s", "streaming", Duration::from_secs(20)).await;
    let c = wait_for("fps and bitrate", Duration::from_secs(10), || async {
        let c = camera(&host, "s").await;
        (c["fps"].is_number() && c["bitrate_kbps"].is_number()).then_some(c)
    })
    .await;
    let fps = c["fps"].as_f64().unwrap();
    assert!((13.0..=17.0).contains(&fps), "fps {fps}: {c}");
    let kbps = c["bitrate_kbps"].as_f64().unwrap();
    assert!((150.0..=1500.0).contains(&kbps), "bitrate {kbps}: {c}");
    assert_eq!(c["width"], 640);
    assert_eq!(c["height"], 360);
    assert_eq!(c["codec"], "h264");
    assert!(
        c["codec_string"].as_str().unwrap().starts_with("avc1."),
        "{c}"
    );
    assert_eq!(c["reconnects"], 0);
    host.stop().await;
    sim.shutdown().await;
}
