//! Helpers shared by the benchmarks: processes, /proc readings, loopback HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn build_release() -> anyhow::Result<PathBuf> {
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
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// User and system CPU ticks of a process.
pub(crate) fn cpu_ticks(pid: u32) -> (u64, u64) {
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
pub(crate) struct Cpu {
    pub(crate) total: f64,
    /// The kernel's share (TCP receive, wake-ups): what any RTSP client pays.
    pub(crate) system: f64,
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A blocking `GET`; returns status and body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
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

pub(crate) fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = http_get(addr, path)?;
    if status != 200 {
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

pub(crate) fn start_camsim(vigil: &Path, n: usize) -> anyhow::Result<(Proc, u16)> {
    start_camsim_with(
        vigil,
        n,
        &[
            "--width",
            "640",
            "--height",
            "360",
            "--fps",
            "15",
            "--bitrate-kbps",
            "500",
        ],
    )
}

/// `vigil camsim` with `n` streams and extra options.
pub(crate) fn start_camsim_with(
    vigil: &Path,
    n: usize,
    extra: &[&str],
) -> anyhow::Result<(Proc, u16)> {
    let port = free_port();
    let child = Command::new(vigil)
        .args([
            "camsim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--streams",
            &n.to_string(),
        ])
        .args(extra)
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
pub(crate) fn measure(pids: &[u32], seconds: u64) -> (Cpu, u64) {
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

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// Builds every plugin (`scripts/build-plugins.sh`); returns where the `.wasm` are.
pub(crate) fn build_plugins() -> anyhow::Result<PathBuf> {
    let st = Command::new(repo_root().join("scripts/build-plugins.sh")).status()?;
    if !st.success() {
        anyhow::bail!("scripts/build-plugins.sh failed");
    }
    Ok(target_dir().join("wasm32-wasip2/release"))
}

/// The cargo that runs this xtask.
pub(crate) fn cargo() -> std::process::Command {
    std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}
