//! The `vigil` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vigil", version, about = "Vigil video management system")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the cameras of a config file.
    Run {
        #[arg(long, short, default_value = "vigil.toml")]
        config: PathBuf,
    },
    /// Validate a config file and exit.
    CheckConfig {
        #[arg(long, short, default_value = "vigil.toml")]
        config: PathBuf,
    },
    /// Self-contained demo: simulated cameras served by the host on the embedded defaults.
    Demo(vigil::app::demo::DemoArgs),
    /// RTSP camera simulator.
    Camsim(vigil::camsim::CamsimArgs),
    /// Plugin tools: inspect a `.wasm`, run it offline on a video file.
    Plugin {
        #[command(subcommand)]
        what: PluginCmd,
    },
    /// Play a stream as a viewer and report what arrived (JSON on stdout).
    Probe {
        #[command(subcommand)]
        what: Probe,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCmd {
    /// Print a plugin's manifest (JSON).
    Inspect { wasm: PathBuf },
    /// Run a plugin on a video file or an RTSP camera (analytics) or on a
    /// JSON-lines events file (rules, outputs) and print its events as JSON lines.
    Run {
        wasm: PathBuf,
        /// An H.264 file (.mp4, .mkv, .h264, …), an rtsp:// URL, or a JSON-lines
        /// events file.
        #[arg(long)]
        input: PathBuf,
        /// How long to run on an rtsp:// input (Ctrl-C stops earlier).
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// The configuration: JSON text, or @file.json.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Camera id to report.
        #[arg(long, default_value = "offline")]
        camera: String,
        /// Frame rate of a raw .h264 input.
        #[arg(long, default_value_t = 15.0)]
        fps: f64,
        /// Capabilities to grant (http, state, files, inference).
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
        /// Directory of installed models (`<name>.onnx`) for the inference
        /// capability.
        #[arg(long, env = "VIGIL_MODELS_DIR")]
        models_dir: Option<PathBuf>,
        /// Hosts the http capability may reach.
        #[arg(long, value_delimiter = ',')]
        http_allow: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum Probe {
    /// A WHEP endpoint, e.g. http://127.0.0.1:8080/cameras/lobby/whep
    Whep {
        url: String,
        /// Seconds to play after the first frame.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Do not decode (cheaper; for load tests).
        #[arg(long)]
        no_decode: bool,
        /// Concurrent viewers (one JSON line each).
        #[arg(long, default_value_t = 1)]
        viewers: usize,
    },
}

/// One malloc arena instead of glibc's default of eight per core. With several
/// runtime threads freeing what others allocated, extra arenas only fragment: 1000
/// WHEP sessions opened and closed grew RSS by 14 % with the default and by under
/// 1 % with one arena, at the same CPU and RSS for 300 ingested cameras (both
/// measured; see docs/benchmarks.md).
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called first thing in main,
    // before any thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,retina=warn,rtc=error,rtc_ice=error,webrtc=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = std::env::var("VIGIL_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        builder.worker_threads(n);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Run { config } => {
                let cfg = vigil::config::load(&config)?;
                vigil::app::run(cfg).await
            }
            Cmd::CheckConfig { config } => {
                let cfg = vigil::config::load(&config)?;
                println!("{}: ok, {} cameras", config.display(), cfg.cameras.len());
                Ok(())
            }
            Cmd::Demo(args) => vigil::app::demo::run(args).await,
            Cmd::Camsim(args) => vigil::camsim::run(args).await,
            Cmd::Plugin {
                what: PluginCmd::Inspect { wasm },
            } => {
                let m = vigil::plugins::offline::inspect(&wasm).await?;
                println!("{}", serde_json::to_string_pretty(&m)?);
                Ok(())
            }
            Cmd::Plugin {
                what:
                    PluginCmd::Run {
                        wasm,
                        input,
                        config,
                        camera,
                        fps,
                        grant,
                        http_allow,
                        duration_s,
                        models_dir,
                    },
            } => {
                let text = match config.strip_prefix('@') {
                    Some(f) => std::fs::read_to_string(f)
                        .map_err(|e| anyhow::anyhow!("--config {f}: {e}"))?,
                    None => config,
                };
                let config: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("--config is not JSON: {e}"))?;
                let opts = vigil::plugins::offline::RunOptions {
                    wasm,
                    input,
                    config,
                    camera,
                    fps,
                    grants: grant,
                    http_allow: http_allow.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    duration: std::time::Duration::from_secs_f64(duration_s.clamp(0.0, 86_400.0)),
                    models_dir,
                };
                let mut out = std::io::stdout();
                let n = vigil::plugins::offline::run(opts, &mut out).await?;
                eprintln!("vigil plugin run: {n} events");
                Ok(())
            }
            Cmd::Probe {
                what:
                    Probe::Whep {
                        url,
                        seconds,
                        no_decode,
                        viewers,
                    },
            } => {
                let opts = vigil::whep_client::ProbeOptions {
                    duration: std::time::Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0)),
                    decode: !no_decode,
                    ..Default::default()
                };
                let runs = (0..viewers.clamp(1, 10_000)).map(|_| {
                    let (url, opts) = (url.clone(), opts.clone());
                    tokio::spawn(async move { vigil::whep_client::probe(&url, &opts).await })
                });
                let mut failed = None;
                for r in futures::future::join_all(runs).await {
                    match r {
                        Ok(Ok(report)) => println!("{}", serde_json::to_string(&report)?),
                        Ok(Err(e)) => failed = Some(e),
                        Err(e) => failed = Some(anyhow::anyhow!("viewer task: {e}")),
                    }
                }
                failed.map_or(Ok(()), Err)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(2)
        }
    }
}
