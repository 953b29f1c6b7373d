//! Plugin runtime benchmark (run by `cargo xtask bench plugins`, which builds the
//! plugins and a clip first; see docs/benchmarks.md):
//!
//! - per-frame cost of the motion kernel as a plugin (through the instance actor,
//!   the frame resource, the host's conversion and the copy into guest memory)
//!   against the same kernel compiled natively with the same host conversion,
//!   on 640×360 gray8 and rgb8 pictures; plus an empty call (dispatch alone);
//! - instantiation from the pooling allocator (store + instance, then the
//!   `configure` call), with every instance kept alive, and the resident memory
//!   those instances add.
//!
//! `plugins --wasm-dir DIR --clip clip.mp4 [--frames 150] [--instances 1000]`
//! prints one JSON object.
//!
//! With `--detect-models DIR` (run by `cargo xtask bench detect`) it measures only
//! the plugin path of object detection instead: the `detect` plugin's call per
//! analysed frame (WIT call, input built on the host, the model run, the output
//! copied into the plugin, decoding and NMS there, the event) against the same
//! model run on the host's pool directly, on the clip's frames.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil::codec::{Decoder, Picture};
use vigil::plugins::bench::Bench;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(v: &[Duration]) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { 0.0 } else { s[s.len() / 2] }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        0.0
    } else {
        s[((s.len() - 1) as f64 * p).round() as usize]
    }
}

/// The native side: the host's conversion plus the kernel, per frame.
fn native(pictures: &[Arc<Picture>], rgb: bool) -> Vec<Duration> {
    let mut prev: Option<Vec<u8>> = None;
    let mut times = Vec::new();
    for p in pictures {
        let t0 = Instant::now();
        let (w, h, px) = if rgb {
            vigil::codec::rgb8(p, 640).unwrap()
        } else {
            vigil::codec::gray8(p, 640).unwrap()
        };
        if let Some(prev) = &prev {
            let found = vigil_plugin_motion::difference(
                prev,
                &px,
                w as usize,
                h as usize,
                if rgb { 3 } else { 1 },
                25,
                0.05,
            );
            std::hint::black_box(found);
        }
        prev = Some(px);
        times.push(t0.elapsed());
    }
    times
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--wasm-dir").is_none() {
        // `cargo bench` without arguments: nothing to do without the plugins.
        eprintln!("run through `cargo xtask bench plugins`");
        return;
    }
    let dir = PathBuf::from(arg(&args, "--wasm-dir").expect("--wasm-dir"));
    let clip = PathBuf::from(arg(&args, "--clip").expect("--clip"));
    let n_frames: usize = arg(&args, "--frames").map_or(150, |v| v.parse().unwrap());
    let n_inst: usize = arg(&args, "--instances").map_or(1000, |v| v.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let frames = vigil::plugins::offline::read_clip(&clip, 15.0).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut pictures = Vec::new();
        for f in &frames {
            if let Some(p) = dec.decode(f).unwrap() {
                pictures.push(Arc::new(p));
            }
            if pictures.len() >= n_frames {
                break;
            }
        }
        if let Some(models) = arg(&args, "--detect-models") {
            let model = arg(&args, "--model").unwrap_or_else(|| "yolov3-tiny-416x416".into());
            let detect = dir.join("vigil_plugin_detect.wasm");
            let b = Bench::start_with(&detect, 4, &["inference"], Some(std::path::Path::new(&models)))
                .await
                .unwrap();
            // Frames 250 ms apart in media time at fps = 4: every frame is analysed.
            let cfg = serde_json::json!({"model": model, "fps": 4, "motion_gate": false});
            let every = Duration::from_millis(250);
            let _ = b.frames_every(cfg.clone(), &pictures[..3], every).await.unwrap();
            let _ = b.infer_direct(&model, &pictures[..3]).await.unwrap();
            // Interleaved halves, so drift on a shared machine hits both sides.
            let (mut plugin, mut direct) = (Vec::new(), Vec::new());
            for chunk in pictures.chunks(pictures.len().div_ceil(2).max(1)) {
                plugin.extend(b.frames_every(cfg.clone(), chunk, every).await.unwrap().call);
                direct.extend(b.infer_direct(&model, chunk).await.unwrap());
            }
            let (pm, dm) = (median(&plugin), median(&direct));
            println!(
                "{}",
                serde_json::json!({
                    "frames": pictures.len(), "width": pictures[0].width, "height": pictures[0].height,
                    "model": model,
                    "plugin_call_us": pm, "plugin_call_p90_us": pct(&plugin, 0.9),
                    "direct_us": dm, "direct_p90_us": pct(&direct, 0.9),
                    "overhead_us": pm - dm, "ratio": pm / dm,
                })
            );
            b.stop().await;
            return;
        }
        assert_eq!((pictures[0].width, pictures[0].height), (640, 360), "the clip must be 640×360");
        let motion = dir.join("vigil_plugin_motion.wasm");
        let misbehave = dir.join("vigil_test_plugin_misbehave.wasm");
        let zones = dir.join("vigil_plugin_zones.wasm");

        let mut report = serde_json::Map::new();
        report.insert("frames".into(), pictures.len().into());
        let b = Bench::start(&motion, 16).await.unwrap();
        for (name, rgb) in [("gray8", false), ("rgb8", true)] {
            // Warm up both sides once, then measure.
            let cfg = serde_json::json!({"width": 640, "min_area": 1.0, "pixel_format": name});
            let _ = b.frames(cfg.clone(), &pictures[..10]).await.unwrap();
            let _ = native(&pictures[..10], rgb);
            let plugin = b.frames(cfg, &pictures).await.unwrap();
            let native = native(&pictures, rgb);
            // The first frame has nothing to compare with: skip it on both sides.
            let (pc, pe, nt) = (median(&plugin.call[1..]), median(&plugin.end_to_end[1..]), median(&native[1..]));
            report.insert(
                name.into(),
                serde_json::json!({
                    "plugin_call_us": pc, "plugin_call_p90_us": pct(&plugin.call[1..], 0.9),
                    "plugin_end_to_end_us": pe,
                    "native_us": nt, "native_p90_us": pct(&native[1..], 0.9),
                    "ratio_call": pc / nt, "ratio_end_to_end": pe / nt,
                }),
            );
        }
        b.stop().await;
        // Dispatch alone: a call that does nothing with its frame.
        let b = Bench::start(&misbehave, 16).await.unwrap();
        let cfg = serde_json::json!({"mode": "slow", "ms": 0});
        let _ = b.frames(cfg.clone(), &pictures[..10]).await.unwrap();
        let empty = b.frames(cfg, &pictures).await.unwrap();
        report.insert(
            "empty_call".into(),
            serde_json::json!({"call_us": median(&empty.call), "end_to_end_us": median(&empty.end_to_end)}),
        );
        // The pixels alone: host conversion and the copy into the plugin.
        for (name, mode) in [("pixels_gray8", "pixels"), ("pixels_rgb8", "pixels-rgb")] {
            let cfg = serde_json::json!({ "mode": mode });
            let _ = b.frames(cfg.clone(), &pictures[..10]).await.unwrap();
            let t = b.frames(cfg, &pictures).await.unwrap();
            report.insert(name.into(), serde_json::json!({"call_us": median(&t.call)}));
        }
        b.stop().await;
        // Instantiation, every instance kept: time and memory.
        for (name, wasm, cfg) in [
            ("motion", &motion, serde_json::json!({})),
            ("zones", &zones, serde_json::json!({"zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}]})),
        ] {
            let b = Bench::start(wasm, n_inst + 16).await.unwrap();
            let t0 = Instant::now();
            let i = b.instantiate(n_inst, &cfg).await.unwrap();
            let total = t0.elapsed();
            report.insert(
                format!("instantiate_{name}"),
                serde_json::json!({
                    "instances": n_inst,
                    "start_median_us": median(&i.start), "start_p99_us": pct(&i.start, 0.99),
                    "configure_median_us": median(&i.configure),
                    "total_s": total.as_secs_f64(),
                    "rss_per_instance_kib": (i.rss_alive_kib.saturating_sub(i.rss_before_kib)) as f64 / n_inst as f64,
                }),
            );
            b.stop().await;
        }
        println!("{}", serde_json::Value::Object(report));
    });
}
