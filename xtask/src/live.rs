//! `cargo xtask bench live`: the live-viewing benchmarks of docs/benchmarks.md.
//!
//! - JPEG encoders side by side: libjpeg-turbo (`turbojpeg`, fed I420 planes) and
//!   `jpeg-encoder` (SIMD, fed interleaved YCbCr converted from I420), on frames
//!   rendered by ffmpeg's `testsrc2`.
//! - Snapshot latency: uncached (first request per camera: decode + encode) and
//!   1000 back-to-back requests to one camera.
//! - Time to first frame for a new WHEP viewer (the Rust client; Chromium too).
//! - Glass-to-glass latency in Chromium, WHEP and LL-HLS (hls.js): `vigil camsim
//!   --stamp` renders the wall clock into each frame; the player page reads it
//!   back from the displayed frame.
//! - WebRTC egress: host CPU per viewer with 50 and 100 Rust WHEP viewers of a
//!   2 Mbit/s 720p stream (viewers run in another process, so the host's own CPU
//!   time excludes them).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::*;

/// Options of `bench live`.
#[derive(Debug, Clone)]
pub struct Options {
    pub only: Option<String>,
    pub viewers: Vec<usize>,
    /// LL-HLS part targets to measure glass-to-glass with (ms).
    pub part_targets: Vec<u64>,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            only: None,
            viewers: vec![50, 100],
            part_targets: vec![200],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--only" => o.only = Some(val()?.clone()),
                "--part-target-ms" => {
                    o.part_targets = val()?
                        .split(',')
                        .map(|v| v.trim().parse().context("--part-target-ms"))
                        .collect::<anyhow::Result<_>>()?
                }
                "--viewers" => {
                    o.viewers = val()?
                        .split(',')
                        .map(|v| v.trim().parse().context("--viewers"))
                        .collect::<anyhow::Result<_>>()?
                }
                other => {
                    bail!("unknown option {other:?}; try --only jpeg|snapshot|ttff|g2g|egress")
                }
            }
        }
        Ok(o)
    }

    fn wants(&self, part: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == part))
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A host process with `cameras` (TOML) and extra config.
fn start_host(vigil: &Path, toml: &str) -> anyhow::Result<(Proc, SocketAddr)> {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let dir = std::env::temp_dir().join(format!("vigil-bench-live-{port}"));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("vigil.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{addr}\"\ndata_dir = \"{}\"\n{toml}",
            dir.join("data").display()
        ),
    )?;
    let p = Proc(
        Command::new(vigil)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    Ok((p, addr))
}

fn wait_streaming(addr: SocketAddr, n: usize) -> anyhow::Result<()> {
    wait_until(
        &format!("{n} cameras streaming"),
        Duration::from_secs(120),
        || {
            get_json(addr, "/api/health")
                .ok()
                .and_then(|h| h["camera_states"]["streaming"].as_u64())
                == Some(n as u64)
        },
    )
}

fn cameras_toml(port: u16, n: usize) -> String {
    (0..n)
        .map(|i| format!("[[camera]]\nid = \"c{i}\"\nurl = \"rtsp://127.0.0.1:{port}/cam{i}\"\n"))
        .collect()
}

/// One I420 frame of ffmpeg's testsrc2 at `w`×`h`.
fn test_frame(w: u32, h: u32) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={w}x{h}:rate=1"),
        ])
        .args([
            "-frames:v",
            "1",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .context("running ffmpeg")?;
    if !out.status.success() || out.stdout.len() != (w * h * 3 / 2) as usize {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn jpeg(o: &Options) -> anyhow::Result<()> {
    if !o.wants("jpeg") {
        return Ok(());
    }
    println!("\n### JPEG encoders (quality 80, 4:2:0, median of 200 encodes)\n");
    println!(
        "| picture | libjpeg-turbo (turbojpeg), from I420 | jpeg-encoder (SIMD), I420→YCbCr + encode | of which conversion | bytes (turbo / jpeg-encoder) |"
    );
    println!("|---|---|---|---|---|");
    for (w, h) in [(640u32, 360u32), (1280, 720), (1920, 1080)] {
        let frame = test_frame(w, h)?;
        let (ys, cs) = ((w * h) as usize, (w / 2 * h / 2) as usize);
        let (y, u, v) = (&frame[..ys], &frame[ys..ys + cs], &frame[ys + cs..]);
        let mut turbo = turbojpeg::Compressor::new()?;
        turbo.set_quality(80)?;
        turbo.set_subsamp(turbojpeg::Subsamp::Sub2x2)?;
        let image = turbojpeg::YuvPlanesImage {
            y_plane: y,
            u_plane: u,
            v_plane: v,
            width: w as usize,
            height: h as usize,
            y_stride: w as usize,
            u_stride: (w / 2) as usize,
            v_stride: (w / 2) as usize,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        let mut t_turbo = Vec::new();
        let mut turbo_len = 0;
        for _ in 0..200 {
            let t = Instant::now();
            turbo_len = turbo.compress_yuv_planes_to_vec(&image)?.len();
            t_turbo.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let mut t_conv = Vec::new();
        let mut t_rust = Vec::new();
        let mut rust_len = 0;
        let mut ycbcr = vec![0u8; (w * h * 3) as usize];
        for _ in 0..200 {
            let t = Instant::now();
            for row in 0..h as usize {
                for col in 0..w as usize {
                    let c = (row / 2) * (w as usize / 2) + col / 2;
                    let p = (row * w as usize + col) * 3;
                    ycbcr[p] = y[row * w as usize + col];
                    ycbcr[p + 1] = u[c];
                    ycbcr[p + 2] = v[c];
                }
            }
            let conv = t.elapsed();
            let mut out = Vec::with_capacity(256 * 1024);
            let mut enc = jpeg_encoder::Encoder::new(&mut out, 80);
            enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
            enc.encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)?;
            rust_len = out.len();
            t_rust.push(t.elapsed().as_secs_f64() * 1000.0);
            t_conv.push(conv.as_secs_f64() * 1000.0);
        }
        println!(
            "| {w}×{h} | {:.2} ms | {:.2} ms | {:.2} ms | {turbo_len} / {rust_len} |",
            pct(&mut t_turbo, 0.5),
            pct(&mut t_rust, 0.5),
            pct(&mut t_conv, 0.5)
        );
    }
    Ok(())
}

fn snapshot(vigil: &Path, o: &Options) -> anyhow::Result<()> {
    if !o.wants("snapshot") {
        return Ok(());
    }
    println!("\n### Snapshots (`GET /cameras/{{id}}/snapshot.jpg`)\n");
    println!("| source | requests | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (w, h, kbps) in [(640u32, 360u32, 500u32), (1920, 1080, 4000)] {
        let (sim, sim_port) = start_camsim_with(
            vigil,
            50,
            &[
                "--width",
                &w.to_string(),
                "--height",
                &h.to_string(),
                "--bitrate-kbps",
                &kbps.to_string(),
            ],
        )?;
        let (host, addr) = start_host(vigil, &cameras_toml(sim_port, 50))?;
        wait_streaming(addr, 50)?;
        std::thread::sleep(Duration::from_secs(2));
        // Uncached: the first snapshot of each camera decodes its key frame.
        let mut first = Vec::new();
        for i in 0..50 {
            let t = Instant::now();
            let (st, _) = http_get(addr, &format!("/cameras/c{i}/snapshot.jpg"))?;
            first.push(t.elapsed().as_secs_f64() * 1000.0);
            if st != 200 {
                bail!("snapshot c{i}: {st}");
            }
        }
        println!(
            "| {w}×{h}, first request per camera (decode + encode) | 50 | {:.1} ms | {:.1} ms | {:.1} ms |",
            pct(&mut first, 0.5),
            pct(&mut first, 0.99),
            pct(&mut first, 1.0)
        );
        // 1000 requests, one every 5 ms, to one camera: spans several GOPs, so the
        // first request after each new key frame decodes again.
        let mut all = Vec::new();
        for _ in 0..1000 {
            let t = Instant::now();
            let (st, _) = http_get(addr, "/cameras/c0/snapshot.jpg")?;
            all.push(t.elapsed().as_secs_f64() * 1000.0);
            if st != 200 {
                bail!("snapshot: {st}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        println!(
            "| {w}×{h}, 1000 requests to one camera over {:.0} s | 1000 | {:.2} ms | {:.1} ms | {:.1} ms |",
            all.len() as f64 * 0.006,
            pct(&mut all, 0.5),
            pct(&mut all, 0.99),
            pct(&mut all, 1.0)
        );
        drop(host);
        drop(sim);
    }
    Ok(())
}

fn node_drive(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let dir = repo_root().join("tests/browser");
    let out = Command::new("node")
        .arg(dir.join("drive.mjs"))
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("browser driver: {stdout}"))
}

fn ttff(vigil: &Path, o: &Options) -> anyhow::Result<()> {
    if !o.wants("ttff") {
        return Ok(());
    }
    let (sim, sim_port) = start_camsim(vigil, 1)?;
    let (host, addr) = start_host(vigil, &cameras_toml(sim_port, 1))?;
    wait_streaming(addr, 1)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut answer = Vec::new();
    let mut first = Vec::new();
    for _ in 0..30 {
        let out = Command::new(vigil)
            .args([
                "probe",
                "whep",
                &format!("http://{addr}/cameras/c0/whep"),
                "--seconds",
                "0.2",
                "--no-decode",
            ])
            .env("VIGIL_LOG", "error")
            .output()?;
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("probe: {}", String::from_utf8_lossy(&out.stderr)))?;
        answer.push(r["answer_ms"].as_f64().unwrap_or(f64::NAN));
        first.push(r["first_frame_ms"].as_f64().unwrap_or(f64::NAN));
    }
    let mut chrome = Vec::new();
    for _ in 0..5 {
        let r = node_drive(&[
            "play",
            &format!("http://{addr}/cameras/c0/player?protocol=whep"),
            "1",
        ])?;
        if let Some(v) = r["firstFrameMs"].as_f64() {
            chrome.push(v);
        }
    }
    println!("\n### Time to first frame, new WHEP viewer of a running camera (640×360, 1 s GOP)\n");
    println!("| client | runs | answer p50 | first frame p50 | first frame p95 |");
    println!("|---|---|---|---|---|");
    println!(
        "| Rust WHEP client (POST → first complete access unit) | 30 | {:.1} ms | {:.0} ms | {:.0} ms |",
        pct(&mut answer, 0.5),
        pct(&mut first, 0.5),
        pct(&mut first, 0.95)
    );
    println!(
        "| Chromium (POST → `playing`) | {} | | {:.0} ms | {:.0} ms |",
        chrome.len(),
        pct(&mut chrome, 0.5),
        pct(&mut chrome, 0.95)
    );
    drop(host);
    drop(sim);
    Ok(())
}

fn g2g(vigil: &Path, o: &Options) -> anyhow::Result<()> {
    if !o.wants("g2g") {
        return Ok(());
    }
    let (sim, sim_port) = start_camsim_with(vigil, 1, &["--stamp"])?;
    println!("\n### Glass-to-glass latency in Chromium (camsim `--stamp`, 640×360 15 fps, 20 s)\n");
    println!("| protocol | frames measured | p50 | p95 | hls.js latency estimate |");
    println!("|---|---|---|---|---|");
    let mut protos = vec![("whep".to_string(), 200)];
    protos.extend(o.part_targets.iter().map(|&p| ("hls".to_string(), p)));
    for (proto, part) in protos {
        let (host, addr) = start_host(
            vigil,
            &format!(
                "[hls]\npart_target_ms = {part}\n{}",
                cameras_toml(sim_port, 1)
            ),
        )?;
        wait_streaming(addr, 1)?;
        std::thread::sleep(Duration::from_secs(2));
        let r = node_drive(&[
            "play",
            &format!("http://{addr}/cameras/c0/player?protocol={proto}&stamp=1"),
            "20",
        ])?;
        if r["ok"] != true {
            bail!("{proto}: {r}");
        }
        // Skip the first 3 s: start-up (the cached GOP, hls.js catching up).
        let mut l: Vec<f64> = r["latencies"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default();
        let skip = l.len().min(45);
        let mut l = l.split_off(skip);
        let label = if proto == "hls" {
            format!("LL-HLS (hls.js), {part} ms parts")
        } else {
            "WHEP".into()
        };
        println!(
            "| {label} | {} | {:.0} ms | {:.0} ms | {} |",
            l.len(),
            pct(&mut l, 0.5),
            pct(&mut l, 0.95),
            r["hlsLatency"].as_f64().map_or("–".into(), |v| format!(
                "{:.2} s (target {:.2} s)",
                v,
                r["hlsTargetLatency"].as_f64().unwrap_or(f64::NAN)
            ))
        );
        drop(host);
    }
    drop(sim);
    Ok(())
}

fn egress(vigil: &Path, o: &Options) -> anyhow::Result<()> {
    if !o.wants("egress") {
        return Ok(());
    }
    let (sim, sim_port) = start_camsim_with(
        vigil,
        1,
        &[
            "--width",
            "1280",
            "--height",
            "720",
            "--bitrate-kbps",
            "2000",
        ],
    )?;
    let (host, addr) = start_host(
        vigil,
        &format!(
            "[webrtc]\nmax_sessions_per_camera = 1000\nmax_sessions = 1000\n{}",
            cameras_toml(sim_port, 1)
        ),
    )?;
    wait_streaming(addr, 1)?;
    std::thread::sleep(Duration::from_secs(3));
    let (idle, idle_rss) = measure(&[host.0.id()], 20);
    println!(
        "\n### WebRTC egress: one 1280×720 stream at ~2 Mbit/s, N Rust WHEP viewers (no decode)\n"
    );
    println!(
        "| viewers | host CPU | of which kernel | per viewer | host RSS | per viewer | viewers' process CPU | kbit/s per viewer |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| 0 | {:.1} % | {:.1} % | | {:.1} MiB | | | |",
        idle.total,
        idle.system,
        idle_rss as f64 / 1024.0
    );
    for &n in &o.viewers {
        let clients = Proc(
            Command::new(vigil)
                .args([
                    "probe",
                    "whep",
                    &format!("http://{addr}/cameras/c0/whep"),
                    "--seconds",
                    "45",
                ])
                .args(["--no-decode", "--viewers", &n.to_string()])
                .env("VIGIL_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_until(
            &format!("{n} WebRTC viewers"),
            Duration::from_secs(60),
            || {
                get_json(addr, "/api/cameras/c0")
                    .ok()
                    .and_then(|c| c["outputs"]["webrtc"]["viewers"].as_i64())
                    == Some(n as i64)
            },
        )?;
        std::thread::sleep(Duration::from_secs(5));
        let b0 = get_json(addr, "/api/cameras/c0")?["outputs"]["webrtc"]["bytes_sent"]
            .as_u64()
            .unwrap_or(0);
        let t0 = Instant::now();
        let pids = [host.0.id(), clients.0.id()];
        let (cpu, rss) = measure(&pids[..1], 20);
        let b1 = get_json(addr, "/api/cameras/c0")?["outputs"]["webrtc"]["bytes_sent"]
            .as_u64()
            .unwrap_or(0);
        let kbps = (b1 - b0) as f64 * 8.0 / 1000.0 / t0.elapsed().as_secs_f64() / n as f64;
        let (client_cpu, _) = measure(&pids[1..], 3);
        println!(
            "| {n} | {:.1} % | {:.1} % | {:.3} % | {:.1} MiB | {:.0} KiB | {:.1} % | {:.0} |",
            cpu.total,
            cpu.system,
            (cpu.total - idle.total) / n as f64,
            rss as f64 / 1024.0,
            (rss.saturating_sub(idle_rss)) as f64 / n as f64,
            client_cpu.total,
            kbps
        );
        drop(clients);
        wait_until("viewers to leave", Duration::from_secs(30), || {
            get_json(addr, "/api/health")
                .ok()
                .and_then(|h| h["webrtc"]["sessions"].as_u64())
                == Some(0)
        })?;
    }
    drop(host);
    drop(sim);
    Ok(())
}

/// Runs the live-viewing benchmarks; prints markdown for docs/benchmarks.md.
pub fn run(o: &Options) -> anyhow::Result<()> {
    let vigil = build_release()?;
    jpeg(o)?;
    snapshot(&vigil, o)?;
    ttff(&vigil, o)?;
    g2g(&vigil, o)?;
    egress(&vigil, o)?;
    Ok(())
}
