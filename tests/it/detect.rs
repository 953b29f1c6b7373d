//! Object detection: the `detect` plugin with the converted YOLOv3-tiny model
//! (scripts/fetch-model.sh) on real footage served by GStreamer's RTSP server,
//! bad models, and a saturated inference pool.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::plugins::{events, frame_gaps, p99, plugin_status as status, wasm};
use crate::support::*;

/// Where scripts/fetch-model.sh put the converted models.
pub(crate) fn models_dir() -> PathBuf {
    let cache = std::env::var_os("VIGIL_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vigil"),
        PathBuf::from,
    );
    let dir = cache.join("models");
    assert!(
        dir.join("yolov3-tiny-416x416.onnx").exists(),
        "no model in {} (run scripts/setup.sh)",
        dir.display()
    );
    dir
}

/// `vtest.avi` (Debian's opencv-doc: people walking) as H.264, no B-frames.
pub(crate) fn people_clip(dir: &std::path::Path) -> PathBuf {
    let out = dir.join("people.mp4");
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-i",
            "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
        ])
        .args([
            "-c:v", "libx264", "-bf", "0", "-g", "10", "-pix_fmt", "yuv420p", "-an",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(
        st.success(),
        "transcoding vtest.avi (opencv-doc installed?)"
    );
    out
}

/// An empty scene: a grey wall with sensor-like noise, same size and rate.
fn empty_clip(dir: &std::path::Path) -> PathBuf {
    let out = dir.join("empty.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=c=0x808078:s=768x576:r=10,noise=alls=8:allf=t")
        .args([
            "-t", "60", "-c:v", "libx264", "-bf", "0", "-g", "10", "-pix_fmt", "yuv420p",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_finds_people_on_real_footage_and_nothing_on_an_empty_scene() {
    let dir = scratch_dir("detect-footage");
    let (people, empty) = (people_clip(&dir), empty_clip(&dir));
    let gst = GstServer::start(
        &[
            ("people", &format!("file:{}", people.display())),
            ("empty", &format!("file:{}", empty.display())),
        ],
        &[],
    );
    let host = start_host_in(
        &dir.join("data"),
        &format!(
            "[inference]\nmodels_dir = \"{}\"\n\
             [[plugin]]\nid = \"detect\"\npath = \"{}\"\ngrants = [\"inference\"]\n\
             [[camera]]\nid = \"people\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"detect\"\nconfig = {{ fps = 2, motion_gate = false }}\n\
             [[camera]]\nid = \"empty\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"detect\"\nconfig = {{ fps = 2, motion_gate = false }}\n",
            models_dir().display(),
            wasm("vigil_plugin_detect"),
            gst.url("people"),
            gst.url("empty"),
        ),
    )
    .await;
    wait_state(&host, "people", "streaming", Duration::from_secs(20)).await;
    wait_state(&host, "empty", "streaming", Duration::from_secs(20)).await;
    let found = wait_for(
        "three detection events",
        Duration::from_secs(30),
        || async {
            let e = events(&host, "camera=people&kind=detection").await;
            (e.len() >= 3).then_some(e)
        },
    )
    .await;
    for e in &found {
        let persons: Vec<&serde_json::Value> = e["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["label"] == "person")
            .collect();
        // vtest.avi has several people on the walkway in every frame.
        assert!(persons.len() >= 2, "{e}");
        for d in &persons {
            let b = &d["bbox"];
            let (x, y, w, h) = (
                b["x"].as_f64().unwrap(),
                b["y"].as_f64().unwrap(),
                b["width"].as_f64().unwrap(),
                b["height"].as_f64().unwrap(),
            );
            assert!(d["score"].as_f64().unwrap() >= 0.35, "{d}");
            assert!(
                x >= 0.0 && y >= 0.0 && x + w <= 1.0 + 1e-6 && y + h <= 1.0 + 1e-6,
                "{d}"
            );
            // People standing: taller than wide (in pixels: 768×576 frame),
            // a person-sized box, on the walkway (not the sky or the lawn's top).
            assert!(h * 576.0 > w * 768.0, "not upright: {d}");
            assert!(h > 0.05 && h < 0.6, "{d}");
            assert!(y + h > 0.25, "{d}");
        }
        assert_eq!(e["has_snapshot"], true, "{e}");
    }
    // Tracked: every person has a track id, distinct within an event, and people
    // keep theirs from one analysed frame to the next (events are newest first).
    let ids = |e: &serde_json::Value| -> Vec<u64> {
        e["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["label"] == "person")
            .map(|d| {
                d["track_id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no track id: {d}"))
            })
            .collect()
    };
    for e in &found {
        let mut v = ids(e);
        v.sort_unstable();
        v.dedup();
        assert_eq!(
            v.len(),
            ids(e).len(),
            "track ids repeat within an event: {e}"
        );
    }
    let (newer, older) = (ids(&found[0]), ids(&found[1]));
    let kept = newer.iter().filter(|i| older.contains(i)).count();
    assert!(
        kept * 2 >= newer.len().min(older.len()),
        "most people should keep their track id between frames: {older:?} → {newer:?}"
    );
    let (st, ct, _) = get(&format!(
        "http://{}/api/events/{}/snapshot.jpg",
        host.addr,
        found[0]["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!((st, ct.as_str()), (200, "image/jpeg"));
    // The model really ran on the empty scene (this instance's own runs, not
    // calls skipped for the rate) and reported nothing.
    let s = wait_for(
        "model runs on the empty scene",
        Duration::from_secs(20),
        || async {
            let s = status(&host, "empty", "detect").await;
            (s["inference_runs"].as_u64().unwrap_or(0) >= 5).then_some(s)
        },
    )
    .await;
    assert_eq!(s["state"], "running", "{s}");
    assert!(s["last_error"].is_null(), "{s}");
    assert!(events(&host, "camera=empty").await.is_empty());
    let (_, _, m) = get(&format!("http://{}/metrics", host.addr)).await;
    let m = String::from_utf8_lossy(&m);
    assert!(metric(&m, "vigil_inference_runs_total") >= 6.0, "{m}");
    assert_eq!(
        metric(&m, "vigil_inference_models_loaded_total"),
        1.0,
        "one shared plan"
    );
    let p = status(&host, "people", "detect").await;
    eprintln!(
        "detect: {} events on people, {} calls, mean call {:.1} ms; inference {:.1} ms per run",
        found.len(),
        p["calls"],
        p["mean_call_ms"].as_f64().unwrap_or(0.0),
        metric(&m, "vigil_inference_run_seconds_total") * 1e3
            / metric(&m, "vigil_inference_runs_total")
    );
    host.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_models_are_clear_errors_and_the_plugin_stays_alive() {
    let sim = start_camsim(1, false).await;
    let dir = scratch_dir("detect-bad-models");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/models/dynamic.onnx"),
        models.join("dynamic.onnx"),
    )
    .unwrap();
    std::fs::write(models.join("large.onnx"), vec![0u8; 3 << 20]).unwrap();
    let bad = wasm("vigil_test_plugin_misbehave");
    let host = start_host_in(
        &dir.join("data"),
        &format!(
            "{TEST_INGEST}[inference]\nmodels_dir = \"{}\"\nmax_model_mib = 2\n\
             [[plugin]]\nid = \"models\"\npath = \"{bad}\"\ngrants = [\"inference\"]\n\
             [[plugin]]\nid = \"ungranted\"\npath = \"{bad}\"\n\
             [[camera]]\nid = \"a\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"models\"\nconfig = {{ mode = \"models\" }}\n\
             [[camera.plugin]]\nid = \"ungranted\"\nconfig = {{ mode = \"models\" }}\n",
            models.display(),
            sim.url(0),
        ),
    )
    .await;
    wait_state(&host, "a", "streaming", Duration::from_secs(20)).await;
    let s = wait_for("the model errors", Duration::from_secs(20), || async {
        let s = status(&host, "a", "models").await;
        (s["errors"].as_u64().unwrap_or(0) >= 3).then_some(s)
    })
    .await;
    let err = s["last_error"].as_str().unwrap();
    assert!(err.contains("not an ONNX model"), "{err}");
    assert!(err.contains("is not fixed"), "{err}");
    assert!(err.contains("more than the 2 MiB limit"), "{err}");
    assert_eq!(
        (s["state"].as_str(), s["traps"].as_u64()),
        (Some("running"), Some(0)),
        "{s}"
    );
    let u = status(&host, "a", "ungranted").await;
    assert!(
        u["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("inference capability is not granted"),
        "{u}"
    );
    eprintln!("bad models: {err}");
    host.stop().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// More detection than the pool can run: runs are refused (counted, the frame
/// skipped) at once, and ingest's frame cadence does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_inference_pool_drops_frames_and_never_blocks_ingest() {
    let sim = start_camsim(5, false).await;
    let dir = scratch_dir("detect-saturation");
    let mut cfg = format!(
        "{TEST_INGEST}[inference]\nmodels_dir = \"{}\"\nthreads = 1\nqueue = 1\n\
         [[plugin]]\nid = \"detect\"\npath = \"{}\"\ngrants = [\"inference\"]\n",
        models_dir().display(),
        wasm("vigil_plugin_detect"),
    );
    cfg.push_str(&format!(
        "[[camera]]\nid = \"victim\"\nurl = \"{}\"\n",
        sim.url(0)
    ));
    for i in 1..5 {
        cfg.push_str(&format!(
            "[[camera]]\nid = \"c{i}\"\nurl = \"{}\"\n\
             [[camera.plugin]]\nid = \"detect\"\nconfig = {{ fps = 5, motion_gate = false }}\n",
            sim.url(i)
        ));
    }
    let host = start_host_in(&dir.join("data"), &cfg).await;
    wait_state(&host, "victim", "streaming", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The victim has no plugin: its cadence is measured while the others load
    // the pool, then compared with the pool idle (plugins disabled).
    let busy = frame_gaps(&host, "victim", 8).await;
    let (_, _, m) = get(&format!("http://{}/metrics", host.addr)).await;
    let m = String::from_utf8_lossy(&m).into_owned();
    for i in 1..5 {
        let (st, _, _) = request(
            "DELETE",
            &format!("http://{}/api/cameras/c{i}/plugins/detect", host.addr),
            None,
            "",
        )
        .await;
        assert_eq!(st, 204);
    }
    let idle = frame_gaps(&host, "victim", 8).await;
    let (saturated, runs) = (
        metric(&m, "vigil_inference_saturated_total"),
        metric(&m, "vigil_inference_runs_total"),
    );
    let (b99, i99) = (p99(&busy), p99(&idle));
    eprintln!(
        "saturation: {runs} runs, {saturated} refused; victim inter-frame p99 {b99:.1} ms busy, {i99:.1} ms idle"
    );
    assert!(saturated >= 5.0, "the pool was never saturated: {m}");
    assert!(runs >= 5.0);
    assert!(
        (b99 - i99).abs() <= 5.0,
        "ingest cadence changed: {i99:.1} → {b99:.1} ms"
    );
    host.stop().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host's tract output matches onnxruntime (Python, from PyPI) on the very
/// same input tensor, which the host built from a real frame (letterboxed).
#[test]
fn tract_matches_onnxruntime_on_the_same_input() {
    let dir = scratch_dir("detect-ort");
    let frame = dir.join("frame.yuv");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-ss", "2", "-i"])
        .arg("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p"])
        .arg(&frame)
        .status()
        .unwrap();
    assert!(st.success());
    let infer = vigil_bin().parent().unwrap().join("examples/infer");
    let python = models_dir().parent().unwrap().join("py/bin/python");
    for name in ["yolov3-tiny-416x416", "yolov3-tiny-768x576"] {
        let model = models_dir().join(format!("{name}.onnx"));
        let out = dir.join(name);
        let run = Command::new(&infer)
            .arg(&model)
            .args(["--runs", "1", "--width", "768", "--height", "576", "--i420"])
            .arg(&frame)
            .arg("--dump")
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        let cmp = Command::new(&python)
            .arg(repo_root().join("tools/compare_onnxruntime.py"))
            .arg(&model)
            .arg(&out)
            .output()
            .unwrap();
        assert!(cmp.status.success(), "{cmp:?}");
        let v: serde_json::Value = serde_json::from_slice(&cmp.stdout).unwrap();
        eprintln!("{name}: tract vs onnxruntime {v}");
        // Scores (probabilities) within 1e-4, boxes within 0.01 px (measured:
        // 7e-6 and 0.0008 px).
        assert!(v["score_max_abs"].as_f64().unwrap() < 1e-4, "{name}: {v}");
        assert!(v["box_max_abs_px"].as_f64().unwrap() < 0.01, "{name}: {v}");
        assert!(
            v["boxes_over_0.25"].as_u64().unwrap() >= 3,
            "{name}: a frame with people: {v}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
