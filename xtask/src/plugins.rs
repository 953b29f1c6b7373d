//! `cargo xtask bench plugins`: the plugin runtime benchmark of docs/benchmarks.md.
//!
//! 1. In-process (`host/benches/plugins.rs`, release build): the motion kernel as a
//!    plugin against the same kernel compiled natively, per 640×360 frame, gray8
//!    and rgb8; an empty call; instantiation time and memory from the pool. Run
//!    `--runs` times; medians of the runs are reported.
//! 2. The real host (`vigil run`, release): `--cameras` cameras (never reachable,
//!    so the instances stay idle) without plugins, then with `motion` and `zones`
//!    on each; RSS (median of 1 s samples) and CPU over `--seconds`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::*;

#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub instances: usize,
    pub cameras: usize,
    pub seconds: u64,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            runs: 3,
            instances: 1000,
            cameras: 1000,
            seconds: 20,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a.as_str() {
                "--runs" => o.runs = val()?.parse().context("--runs")?,
                "--instances" => o.instances = val()?.parse().context("--instances")?,
                "--cameras" => o.cameras = val()?.parse().context("--cameras")?,
                "--seconds" => o.seconds = val()?.parse().context("--seconds")?,
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }
}

/// A 640×360, 15 fps H.264 clip with motion everywhere (ffmpeg's testsrc2).
fn clip() -> anyhow::Result<PathBuf> {
    let p = target_dir().join("bench-640x360.mp4");
    if !p.exists() {
        let st = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=15",
            ])
            .args([
                "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "15", "-bf", "0",
            ])
            .args(["-pix_fmt", "yuv420p"])
            .arg(&p)
            .status()
            .context("ffmpeg")?;
        if !st.success() {
            bail!("ffmpeg could not make the clip");
        }
    }
    Ok(p)
}

fn f(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_f64().unwrap_or(f64::NAN)
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    let wasm = build_plugins()?;
    let clip = clip()?;
    // 1. In-process measurements.
    let mut runs = Vec::new();
    for i in 0..o.runs {
        eprintln!("in-process run {}/{}", i + 1, o.runs);
        let out = cargo()
            .args([
                "bench", "--quiet", "-p", "vigil", "--bench", "plugins", "--",
            ])
            .arg("--wasm-dir")
            .arg(&wasm)
            .arg("--clip")
            .arg(&clip)
            .args(["--instances", &o.instances.to_string()])
            .current_dir(repo_root())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("the plugins bench failed");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rfind(|l| l.starts_with('{'))
            .context("no report")?;
        runs.push(serde_json::from_str::<serde_json::Value>(line)?);
    }
    let med = |path: &[&str]| median(&mut runs.iter().map(|r| f(r, path)).collect::<Vec<_>>());
    println!(
        "\n### Per-frame cost, 640×360 (medians of {} runs of {} frames)\n",
        o.runs,
        f(&runs[0], &["frames"])
    );
    println!(
        "| pixels | native kernel + conversion | plugin call | ratio | plugin, queue → done | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for fmt in ["gray8", "rgb8"] {
        println!(
            "| {fmt} | {:.0} µs | {:.0} µs | {:.2}× | {:.0} µs | {:.2}× |",
            med(&[fmt, "native_us"]),
            med(&[fmt, "plugin_call_us"]),
            med(&[fmt, "ratio_call"]),
            med(&[fmt, "plugin_end_to_end_us"]),
            med(&[fmt, "ratio_end_to_end"]),
        );
    }
    println!(
        "\nEmpty call (dispatch alone): {:.1} µs inside the call, {:.1} µs queue → done.",
        med(&["empty_call", "call_us"]),
        med(&["empty_call", "end_to_end_us"])
    );
    println!(
        "\n### Instantiation from the pool ({} instances kept alive)\n",
        o.instances
    );
    println!(
        "| plugin | start median | start p99 | configure median | resident memory per instance |"
    );
    println!("|---|---|---|---|---|");
    for p in ["motion", "zones"] {
        let k = format!("instantiate_{p}");
        println!(
            "| {p} | {:.1} µs | {:.1} µs | {:.1} µs | {:.0} KiB |",
            med(&[&k, "start_median_us"]),
            med(&[&k, "start_p99_us"]),
            med(&[&k, "configure_median_us"]),
            med(&[&k, "rss_per_instance_kib"]),
        );
    }
    // 2. The real host.
    let vigil = build_release()?;
    let without = host_run(&vigil, &wasm, o, false)?;
    let with = host_run(&vigil, &wasm, o, true)?;
    let n = (o.cameras * 2) as f64;
    println!(
        "\n### The host with {} idle cameras ({} seconds)\n",
        o.cameras, o.seconds
    );
    println!("| plugins | instances running | RSS (MiB) | CPU (% of one core) | start-up |");
    println!("|---|---|---|---|---|");
    for (name, r) in [("none", &without), ("motion + zones on each", &with)] {
        println!(
            "| {name} | {} | {:.1} | {:.1} % | {:.1} s |",
            r.running,
            r.rss_kib as f64 / 1024.0,
            r.cpu.total,
            r.startup.as_secs_f64()
        );
    }
    println!(
        "\n{} instances add {:.1} MiB: {:.0} KiB per instance.",
        with.running,
        (with.rss_kib as f64 - without.rss_kib as f64) / 1024.0,
        (with.rss_kib as f64 - without.rss_kib as f64) / n
    );
    Ok(())
}

struct HostRun {
    running: usize,
    rss_kib: u64,
    cpu: Cpu,
    startup: Duration,
}

fn host_run(vigil: &Path, wasm: &Path, o: &Options, plugins: bool) -> anyhow::Result<HostRun> {
    let dir = std::env::temp_dir().join(format!("vigil-bench-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = free_port();
    // Nothing listens on `dead`: the cameras retry (slowly), the instances idle.
    let dead = free_port();
    let mut cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
         [ingest]\nretry_initial_ms = 5000\nretry_max_ms = 60000\n\
         [plugins]\nmax_instances = {}\n",
        dir.join("data").display(),
        o.cameras * 2 + 16
    );
    if plugins {
        cfg.push_str(&format!(
            "[[plugin]]\nid = \"motion\"\npath = \"{}\"\n[[plugin]]\nid = \"zones\"\npath = \"{}\"\n",
            wasm.join("vigil_plugin_motion.wasm").display(),
            wasm.join("vigil_plugin_zones.wasm").display()
        ));
    }
    for i in 0..o.cameras {
        cfg.push_str(&format!(
            "[[camera]]\nid = \"c{i}\"\nurl = \"rtsp://127.0.0.1:{dead}/c{i}\"\n"
        ));
        if plugins {
            cfg.push_str(
                "[[camera.plugin]]\nid = \"motion\"\n[[camera.plugin]]\nid = \"zones\"\n\
                 config = { zones = [{ name = \"door\", polygon = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]] }] }\n",
            );
        }
    }
    let path = dir.join("vigil.toml");
    std::fs::write(&path, cfg)?;
    let t0 = Instant::now();
    let child = Command::new(vigil)
        .args(["run", "--config"])
        .arg(&path)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let p = Proc(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let want = if plugins { o.cameras * 2 } else { 0 };
    let mut running = 0;
    wait_until(
        "the host and its plugin instances",
        Duration::from_secs(300),
        || {
            let Ok((200, body)) = http_get(addr, "/metrics") else {
                return false;
            };
            running = String::from_utf8_lossy(&body)
                .lines()
                .filter(|l| l.starts_with("vigil_plugin_state{") && l.contains("state=\"running\""))
                .count();
            running >= want
        },
    )?;
    let startup = t0.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let (cpu, rss_kib) = measure(&[p.0.id()], o.seconds);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(HostRun {
        running,
        rss_kib,
        cpu,
        startup,
    })
}
