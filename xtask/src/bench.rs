//! `cargo xtask bench ingest`: camsim → vigil (ingest + one LL-HLS muxer per camera),
//! and the same cameras through one `ffmpeg -c copy -f hls` process each.
//!
//! CPU is the process's user+system time from /proc over the measuring window, as a
//! percentage of one core; RSS is the median of one sample per second. Part latency
//! comes from the host's own API (oldest frame's arrival → part fetchable, over the
//! last 1000 parts of each camera).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn build_release() -> anyhow::Result<PathBuf> {
    let root = repo_root();
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "vigil"])
        .current_dir(&root)
        .status()?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release/vigil"))
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// User and system CPU ticks of a process.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0, 0);
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0, 0);
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field(11), field(12))
}

/// CPU use over a window, in % of one core.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    total: f64,
    /// The kernel's share (TCP receive, wake-ups): what any RTSP client pays.
    system: f64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A blocking `GET`; returns status and body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header end")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("bad status line")?;
    Ok((status, buf[end + 4..].to_vec()))
}

fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn start_camsim(vigil: &Path, n: usize) -> anyhow::Result<(Proc, u16)> {
    let port = free_port();
    let child = Command::new(vigil)
        .args([
            "camsim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--streams",
            &n.to_string(),
        ])
        .args([
            "--width",
            "640",
            "--height",
            "360",
            "--fps",
            "15",
            "--bitrate-kbps",
            "500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting vigil camsim")?;
    let p = Proc(child);
    wait_until("camsim to listen", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok((p, port))
}

/// CPU and median RSS (KiB) of a set of processes over `seconds`.
fn measure(pids: &[u32], seconds: u64) -> (Cpu, u64) {
    let tck = clk_tck();
    let sum = || {
        pids.iter()
            .map(|&p| cpu_ticks(p))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let t0 = Instant::now();
    let c0 = sum();
    let mut rss = Vec::new();
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(pids.iter().map(|&p| rss_kib(p)).sum::<u64>());
    }
    let c1 = sum();
    let pct = |ticks: u64| ticks as f64 / tck / t0.elapsed().as_secs_f64() * 100.0;
    let cpu = Cpu {
        total: pct(c1.0 + c1.1 - c0.0 - c0.1),
        system: pct(c1.1 - c0.1),
    };
    rss.sort_unstable();
    (cpu, rss.get(rss.len() / 2).copied().unwrap_or(0))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
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
        for k in 0..if hls { 4 } else { 0 } {
            s.spawn(move || {
                for i in (k..n).step_by(4) {
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
