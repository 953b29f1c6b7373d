//! `cargo xtask bench detect`: object-detection benchmark of docs/benchmarks.md.
//!
//! 1. Latency per frame of YOLOv3-tiny at 416×416 and 768×576, one and two
//!    threads: the host's inference path (tract with Vigil's kernels, release
//!    build of `host/examples/infer.rs`, input building included and not),
//!    tract alone (`--tract-only`) and onnxruntime (`tools/check_yolo.py
//!    --bench`, same model, same machine), medians of `--runs` runs, taking
//!    turns for `--rounds` rounds (the median round is reported, with each
//!    round's ratio).
//! 2. End to end: `--cameras` cameras of the camera simulator looping vtest.avi
//!    (people walking), the `detect` plugin on each at `--fps`, in the release
//!    host with `[inference] threads = 2`; over `--seconds`: model runs and
//!    detection events per second, runs refused because the pool was full, the
//!    plugin's mean call time against the mean model run (the plugin path's
//!    overhead), and the host's CPU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::*;

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub rounds: usize,
    pub cameras: usize,
    pub fps: f64,
    pub seconds: u64,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            runs: 20,
            rounds: 3,
            cameras: 10,
            fps: 2.0,
            seconds: 30,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--runs" => o.runs = val()?.parse().context("--runs")?,
                "--rounds" => o.rounds = val()?.parse().context("--rounds")?,
                "--cameras" => o.cameras = val()?.parse().context("--cameras")?,
                "--fps" => o.fps = val()?.parse().context("--fps")?,
                "--seconds" => o.seconds = val()?.parse().context("--seconds")?,
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }
}

fn cache() -> PathBuf {
    std::env::var_os("VIGIL_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vigil"),
        PathBuf::from,
    )
}

fn json(cmd: &mut Command) -> anyhow::Result<serde_json::Value> {
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{cmd:?}: {text}"))
}

fn people_clip() -> anyhow::Result<PathBuf> {
    let p = target_dir().join("bench-vtest.mp4");
    if !p.exists() {
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
            .arg(&p)
            .status()?;
        if !st.success() {
            bail!("transcoding vtest.avi failed (is opencv-doc installed? scripts/setup.sh)");
        }
    }
    Ok(p)
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    let st = Command::new(repo_root().join("scripts/setup.sh")).status()?;
    if !st.success() {
        bail!("scripts/setup.sh failed");
    }
    build_plugins()?;
    eprintln!("building vigil (release) with the infer example…");
    let st = cargo()
        .args([
            "build",
            "--release",
            "-p",
            "vigil",
            "--bin",
            "vigil",
            "--example",
            "infer",
        ])
        .current_dir(repo_root())
        .status()?;
    if !st.success() {
        bail!("release build failed");
    }
    let release = target_dir().join("release");
    let models = cache().join("models");
    let python = cache().join("py/bin/python");
    println!(
        "\n### Latency per frame, YOLOv3-tiny (medians of {} runs, {} rounds taking turns; median round)\n",
        o.runs, o.rounds
    );
    println!(
        "| input | threads | host path: tract + Vigil's kernels, model only | with input building | tract alone (`vigil_kernels = false`) | onnxruntime | host / onnxruntime (median; rounds) | tract alone / onnxruntime |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for size in ["416x416", "768x576"] {
        let model = models.join(format!("yolov3-tiny-{size}.onnx"));
        for threads in [1, 2] {
            let tract = |m: &Path, extra: &[&str]| {
                json(
                    Command::new(release.join("examples/infer"))
                        .arg(m)
                        .args([
                            "--runs",
                            &o.runs.to_string(),
                            "--threads",
                            &threads.to_string(),
                        ])
                        .args(extra),
                )
            };
            let ort = |m: &Path| -> anyhow::Result<f64> {
                let r = json(
                    Command::new(&python)
                        .arg(repo_root().join("tools/check_yolo.py"))
                        .args(["--model"])
                        .arg(m)
                        .args(["--input", "lavfi:color=c=gray:s=768x576"])
                        .args([
                            "--bench",
                            &o.runs.to_string(),
                            "--threads",
                            &threads.to_string(),
                        ])
                        .arg("--compact"),
                )?;
                Ok(r["timing"]["median_ms"].as_f64().unwrap_or(f64::NAN))
            };
            // The machine is shared: the runtimes take turns, round after
            // round, and each round's ratio compares runs minutes apart at
            // most.
            let (mut tms, mut tbs, mut alones, mut oms, mut ratios, mut alone_ratios) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..o.rounds.max(1) {
                let t = tract(&model, &[])?;
                let om = ort(&model)?;
                let alone = tract(&model, &["--tract-only"])?["run_median_ms"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                let tm = t["run_median_ms"].as_f64().unwrap_or(f64::NAN);
                tms.push(tm);
                tbs.push(t["median_ms"].as_f64().unwrap_or(f64::NAN));
                alones.push(alone);
                oms.push(om);
                ratios.push(tm / om);
                alone_ratios.push(alone / om);
            }
            let rounds = ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {size} | {threads} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× ({rounds}) | {:.2}× |",
                median(&mut tms),
                median(&mut tbs),
                median(&mut alones),
                median(&mut oms),
                median(&mut ratios),
                median(&mut alone_ratios)
            );
        }
    }
    plugin_path(o, &models)?;
    end_to_end(o, &release, &models)
}

/// The plugin path against calling the host's pool directly, per analysed
/// frame (`host/benches/plugins.rs --detect-models`), medians over runs.
fn plugin_path(o: &Options, models: &Path) -> anyhow::Result<()> {
    let wasm = build_plugins()?;
    let clip = people_clip()?;
    println!(
        "\n### Plugin path vs the host's pool directly (768×576 frames of vtest.avi, one thread, medians)\n"
    );
    println!("| model | detect plugin call | pool directly | overhead | ratio |");
    println!("|---|---|---|---|---|");
    for model in ["yolov3-tiny-416x416", "yolov3-tiny-768x576"] {
        let mut runs = Vec::new();
        for _ in 0..o.runs.clamp(1, 5) {
            let out = cargo()
                .args([
                    "bench", "--quiet", "-p", "vigil", "--bench", "plugins", "--",
                ])
                .arg("--wasm-dir")
                .arg(&wasm)
                .arg("--clip")
                .arg(&clip)
                .args(["--frames", "40", "--model", model])
                .arg("--detect-models")
                .arg(models)
                .current_dir(repo_root())
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                bail!("the plugin-path bench failed");
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .rfind(|l| l.starts_with('{'))
                .context("no report")?;
            runs.push(serde_json::from_str::<serde_json::Value>(line)?);
        }
        let med = |k: &str| {
            median(
                &mut runs
                    .iter()
                    .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "| {model} | {:.1} ms | {:.1} ms | {:.2} ms | {:.3}× |",
            med("plugin_call_us") / 1e3,
            med("direct_us") / 1e3,
            med("overhead_us") / 1e3,
            med("ratio"),
        );
    }
    Ok(())
}

fn end_to_end(o: &Options, release: &Path, models: &Path) -> anyhow::Result<()> {
    let clip = people_clip()?;
    let port = free_port();
    let clip_arg = clip.display().to_string();
    let (sim, rtsp) =
        start_camsim_with(&release.join("vigil"), o.cameras, &["--input", &clip_arg])?;
    let dir = std::env::temp_dir().join(format!("vigil-bench-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wasm = target_dir().join("wasm32-wasip2/release/vigil_plugin_detect.wasm");
    let mut cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
         [inference]\nmodels_dir = \"{}\"\nthreads = 2\nqueue = 4\n\
         [[plugin]]\nid = \"detect\"\npath = \"{}\"\ngrants = [\"inference\"]\n",
        dir.join("data").display(),
        models.display(),
        wasm.display()
    );
    for i in 0..o.cameras {
        cfg.push_str(&format!(
            "[[camera]]\nid = \"c{i}\"\nurl = \"rtsp://127.0.0.1:{rtsp}/cam{i}\"\n\
             [[camera.plugin]]\nid = \"detect\"\nconfig = {{ fps = {}, motion_gate = false }}\n",
            o.fps
        ));
    }
    let cfg_path = dir.join("vigil.toml");
    std::fs::write(&cfg_path, cfg)?;
    let mut host = Command::new(release.join("vigil"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let get = |path: &str| -> anyhow::Result<String> {
        let (st, body) = http_get(addr, path)?;
        if st != 200 {
            bail!("GET {path}: {st}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    let result = (|| -> anyhow::Result<()> {
        // Warm up: every camera streaming and detecting.
        let t0 = Instant::now();
        loop {
            if let Ok(m) = get("/metrics")
                && metric(&m, "vigil_inference_runs_total") >= o.cameras as f64
            {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the host did not start detecting");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(3));
        let m0 = get("/metrics")?;
        let c0 = cpu_ticks(host.id());
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(o.seconds));
        let m1 = get("/metrics")?;
        let c1 = cpu_ticks(host.id());
        let secs = t.elapsed().as_secs_f64();
        let d = |k: &str| metric(&m1, k) - metric(&m0, k);
        let runs = d("vigil_inference_runs_total");
        let run_ms = d("vigil_inference_run_seconds_total") * 1e3 / runs.max(1.0);
        let calls: Vec<f64> = (0..o.cameras)
            .filter_map(|i| {
                let s = get(&format!("/api/cameras/c{i}/plugins/detect")).ok()?;
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                v["mean_call_ms"].as_f64()
            })
            .collect();
        println!(
            "\n### End to end: {} cameras (vtest.avi looped by camsim), detect at {} fps each, [inference] threads = 2, {} s\n",
            o.cameras, o.fps, o.seconds
        );
        println!(
            "| model runs/s | detection events/s | runs refused (pool full)/s | mean model run | host CPU (% of one core) |"
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {:.2} | {:.2} | {:.2} | {:.1} ms | {:.0} % |",
            runs / secs,
            d("vigil_events_stored_total") / secs,
            d("vigil_inference_saturated_total") / secs,
            run_ms,
            ((c1.0 + c1.1) - (c0.0 + c0.1)) as f64 / clk_tck() / secs * 100.0
        );
        if !calls.is_empty() {
            let mean_call = calls.iter().sum::<f64>() / calls.len() as f64;
            println!(
                "\nPlugin calls (incl. frames it skips for its rate): mean {mean_call:.1} ms; model run incl. input building {run_ms:.1} ms."
            );
        }
        Ok(())
    })();
    let _ = host.kill();
    let _ = host.wait();
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
