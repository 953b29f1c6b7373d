//! `cargo xtask bench ingest`: camsim → vigil (ingest + one LL-HLS muxer per camera),
//! and the same cameras through one `ffmpeg -c copy -f hls` process each.
//!
//! CPU is the process's user+system time from /proc over the measuring window, as a
//! percentage of one core; RSS is the median of one sample per second. Part latency
//! comes from the host's own API (oldest frame's arrival → part fetchable, over the
//! last 1000 parts of each camera).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::*;

/// Command-line options of `bench ingest`.
#[derive(Debug, Clone)]
pub struct Options {
    pub counts: Vec<usize>,
    pub ffmpeg_counts: Vec<usize>,
    pub seconds: u64,
    /// Ingest only: start no LL-HLS muxers (to compare with ingest-only peers).
    pub no_hls: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            counts: vec![100, 500, 1000],
            ffmpeg_counts: vec![25, 100],
            seconds: 30,
            no_hls: false,
        };
        let list = |v: &str| -> anyhow::Result<Vec<usize>> {
            if v.is_empty() {
                return Ok(Vec::new());
            }
            v.split(',')
                .map(|x| x.trim().parse().with_context(|| format!("bad count {x:?}")))
                .collect()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--counts" => o.counts = list(val()?)?,
                "--ffmpeg-counts" => o.ffmpeg_counts = list(val()?)?,
                "--seconds" => o.seconds = val()?.parse().context("--seconds")?,
                "--no-hls" => o.no_hls = true,
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }
}

#[derive(Debug)]
struct VigilRow {
    n: usize,
    cpu: Cpu,
    rss_kib: u64,
    sim_cpu: Cpu,
    lat_p50: f64,
    lat_p99: f64,
    lat_p99_max: f64,
    streaming: usize,
    gop_kib: f64,
}

fn run_vigil(vigil: &Path, n: usize, seconds: u64, hls: bool) -> anyhow::Result<VigilRow> {
    let (sim, sim_port) = start_camsim(vigil, n)?;
    let dir = std::env::temp_dir().join(format!("vigil-bench-{n}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut cfg = format!(
        "[server]\nlisten = \"{addr}\"\ndata_dir = \"{}\"\n[ingest]\nstagger_ms = 2\n[hls]\nidle_timeout_s = 3600\n",
        dir.join("data").display()
    );
    for i in 0..n {
        cfg.push_str(&format!(
            "[[camera]]\nid = \"c{i}\"\nurl = \"rtsp://127.0.0.1:{sim_port}/cam{i}\"\n"
        ));
    }
    let cfg_path = dir.join("vigil.toml");
    std::fs::write(&cfg_path, cfg)?;
    let host = Proc(
        Command::new(vigil)
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting vigil run")?,
    );
    let streaming = || -> usize {
        get_json(addr, "/api/health")
            .ok()
            .and_then(|h| h["camera_states"]["streaming"].as_u64())
            .unwrap_or(0) as usize
    };
    wait_until(
        &format!("{n} cameras streaming"),
        Duration::from_secs(180),
        || streaming() == n,
    )?;
    // One LL-HLS muxer per camera, started by a playlist request (a few threads).
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..if hls { 64 } else { 0 } {
            s.spawn(move || {
                for i in (k..n).step_by(64) {
                    let _ = http_get(addr, &format!("/cameras/c{i}/hls/index.m3u8"));
                }
            });
        }
    });
    eprintln!("bench: {n} muxers started in {:?}", t.elapsed());
    std::thread::sleep(Duration::from_secs(5));
    let (cpu, rss_kib) = measure(&[host.0.id()], seconds);
    let (sim_cpu, _) = measure(&[sim.0.id()], 3);
    let cams = get_json(addr, "/api/cameras")?;
    let cams = cams.as_array().cloned().unwrap_or_default();
    let mut p50: Vec<f64> = cams
        .iter()
        .filter_map(|c| c["hls"]["part_latency_ms_p50"].as_f64())
        .collect();
    let mut p99: Vec<f64> = cams
        .iter()
        .filter_map(|c| c["hls"]["part_latency_ms_p99"].as_f64())
        .collect();
    let mut gop: Vec<f64> = cams
        .iter()
        .filter_map(|c| c["gop_cache_bytes"].as_f64())
        .collect();
    let lat_p99_max = p99.iter().copied().fold(f64::NAN, f64::max);
    let streaming_now = streaming();
    let muxers = get_json(addr, "/api/health")?["hls_muxers"]
        .as_u64()
        .unwrap_or(0);
    if hls && muxers as usize != n {
        eprintln!("bench: warning: only {muxers} of {n} HLS muxers active");
    }
    drop(host);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(VigilRow {
        n,
        cpu,
        rss_kib,
        sim_cpu,
        lat_p50: median(&mut p50),
        lat_p99: median(&mut p99),
        lat_p99_max,
        streaming: streaming_now,
        gop_kib: median(&mut gop) / 1024.0,
    })
}

fn run_ffmpeg(vigil: &Path, n: usize, seconds: u64) -> anyhow::Result<(Cpu, u64)> {
    let (sim, sim_port) = start_camsim(vigil, n)?;
    let dir = std::env::temp_dir().join(format!("vigil-bench-ffmpeg-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut procs = Vec::new();
    for i in 0..n {
        let out = dir.join(format!("c{i}"));
        std::fs::create_dir_all(&out)?;
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rtsp_transport", "tcp"])
            .args(["-i", &format!("rtsp://127.0.0.1:{sim_port}/cam{i}")])
            .args([
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "1",
                "-hls_list_size",
                "6",
            ])
            .args(["-hls_segment_type", "fmp4", "-hls_flags", "delete_segments"])
            .arg(out.join("index.m3u8"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ffmpeg")?;
        procs.push(Proc(child));
    }
    wait_until(
        "every ffmpeg to write a playlist",
        Duration::from_secs(120),
        || (0..n).all(|i| dir.join(format!("c{i}/index.m3u8")).exists()),
    )?;
    std::thread::sleep(Duration::from_secs(5));
    let pids: Vec<u32> = procs.iter().map(|p| p.0.id()).collect();
    let r = measure(&pids, seconds);
    drop(procs);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

/// The ingest benchmark; prints markdown tables for docs/benchmarks.md.
pub fn ingest(o: &Options) -> anyhow::Result<()> {
    let vigil = build_release()?;
    let mut rows = Vec::new();
    let mut all: Vec<usize> = o.counts.iter().chain(&o.ffmpeg_counts).copied().collect();
    all.sort_unstable();
    all.dedup();
    for &n in &all {
        eprintln!("bench: vigil with {n} cameras");
        rows.push(run_vigil(&vigil, n, o.seconds, !o.no_hls)?);
    }
    println!(
        "\n| cameras | vigil CPU (% of 1 core) | of which kernel | per camera | RSS (MiB) | per camera (KiB) | GOP cache/cam (KiB) | part latency p50 / p99 (median cam) | worst cam p99 | camsim CPU | streaming |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} % | {:.1} % | {:.3} % | {:.1} | {:.0} | {:.0} | {:.0} / {:.0} ms | {:.0} ms | {:.1} % | {} |",
            r.n,
            r.cpu.total,
            r.cpu.system,
            r.cpu.total / r.n as f64,
            r.rss_kib as f64 / 1024.0,
            r.rss_kib as f64 / r.n as f64,
            r.gop_kib,
            r.lat_p50,
            r.lat_p99,
            r.lat_p99_max,
            r.sim_cpu.total,
            r.streaming
        );
    }
    if !o.ffmpeg_counts.is_empty() {
        println!(
            "\n| cameras | ffmpeg CPU (% of 1 core) | of which kernel | ffmpeg RSS (MiB) | vigil CPU | of which kernel | vigil RSS (MiB) | CPU ratio | user-space CPU ratio | RSS ratio |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for &n in &o.ffmpeg_counts {
            eprintln!("bench: ffmpeg with {n} cameras");
            let (cpu, rss) = run_ffmpeg(&vigil, n, o.seconds)?;
            let v = rows.iter().find(|r| r.n == n).context("vigil row")?;
            println!(
                "| {n} | {:.1} % | {:.1} % | {:.1} | {:.1} % | {:.1} % | {:.1} | {:.1}× | {:.1}× | {:.0}× |",
                cpu.total,
                cpu.system,
                rss as f64 / 1024.0,
                v.cpu.total,
                v.cpu.system,
                v.rss_kib as f64 / 1024.0,
                cpu.total / v.cpu.total.max(0.01),
                (cpu.total - cpu.system) / (v.cpu.total - v.cpu.system).max(0.01),
                rss as f64 / v.rss_kib.max(1) as f64
            );
        }
    }
    Ok(())
}
