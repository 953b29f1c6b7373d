//! Project automation: `cargo xtask <task>`.
//!
//! - `bench ingest [--counts 100,500,1000] [--ffmpeg-counts 25,100] [--seconds 30]`:
//!   (`--no-hls`: ingest only) the ingest + LL-HLS benchmark of docs/benchmarks.md. Builds `vigil` in release,
//!   runs `vigil camsim` and `vigil run` as separate processes, reads CPU time and
//!   RSS from /proc, and runs one `ffmpeg -c copy -f hls` per camera as the peer.
//!
//! - `bench live`: JPEG encoders, snapshots, WHEP time to first frame, glass-to-glass
//!   latency in Chromium, WebRTC egress per viewer (see `live.rs`).
//!
//! - `bench plugins`: the motion kernel as a plugin vs natively, instantiation time
//!   and memory, 2 000 idle instances in the real host (see `plugins.rs`).
//! - `bench detect`: YOLOv3-tiny latency, tract (the host's path) against
//!   onnxruntime; detections per second across cameras (see `detect.rs`).
//!
//! Deliberately dependency-light (std + serde_json): HTTP here is a few blocking
//! GETs on loopback.

mod bench;
mod detect;
mod live;
mod plugins;
mod util;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("ingest") => bench::ingest(&bench::Options::parse(&args[2..])?),
            Some("live") => live::run(&live::Options::parse(&args[2..])?),
            Some("plugins") => plugins::run(&plugins::Options::parse(&args[2..])?),
            Some("detect") => detect::run(&detect::Options::parse(&args[2..])?),
            other => bail!("unknown benchmark {other:?}; available: ingest, live, plugins, detect"),
        },
        Some("help") | None => {
            println!("cargo xtask bench ingest [--counts 100,500,1000] [--ffmpeg-counts 25,100] [--seconds 30] [--no-hls]");
            println!("cargo xtask bench live [--only jpeg,snapshot,ttff,g2g,egress] [--viewers 50,100]");
            println!("cargo xtask bench plugins [--runs 3] [--instances 1000] [--cameras 1000] [--seconds 20]");
            println!("cargo xtask bench detect [--runs 20] [--rounds 3] [--cameras 10] [--fps 2] [--seconds 30]");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}; try `cargo xtask help`"),
    }
    .context("xtask failed")
}
