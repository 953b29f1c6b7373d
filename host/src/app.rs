//! Wiring: builds cameras from a [`Config`], starts their supervisors and serves HTTP
//! until shutdown, then tears RTSP sessions down cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use retina::client::SessionGroup;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::hls::Hls;
use crate::ingest::{self, Camera};

/// A running host.
pub struct Host {
    pub addr: std::net::SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
    group: Arc<SessionGroup>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("addr", &self.addr).finish()
    }
}

impl Host {
    /// Binds the listener and starts every camera's supervisor.
    pub async fn start(cfg: Config) -> anyhow::Result<Host> {
        let listener = tokio::net::TcpListener::bind(cfg.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        let cameras: Vec<Arc<Camera>> = cfg.cameras.iter().cloned().map(Camera::new).collect();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let group = Arc::new(SessionGroup::default());
        let supervisors = cameras
            .iter()
            .enumerate()
            .map(|(i, cam)| {
                let delay = cfg.ingest.stagger * i as u32;
                tokio::spawn(ingest::supervise(
                    cam.clone(),
                    cfg.ingest.clone(),
                    delay,
                    group.clone(),
                    shutdown_rx.clone(),
                ))
            })
            .collect();
        let events = crate::events::Events::open(
            &cfg.server.data_dir,
            crate::events::StoreConfig {
                max_age: cfg.events.max_age,
                max_events: cfg.events.max_events,
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("event store in {}: {e}", cfg.server.data_dir.display()))?;
        let plugins = crate::plugins::Plugins::start(
            cfg.plugins.clone(),
            &cfg.plugin,
            events.clone(),
            cfg.server.data_dir.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("plugin runtime: {e}"))?;
        // Plugins enabled by the config file; a failure is reported, never fatal.
        for cam in &cameras {
            for p in &cam.config.plugins {
                if let Err(e) = plugins.enable(cam, &p.plugin, p.config.clone()).await {
                    tracing::warn!(camera = %cam.config.id, plugin = %p.plugin, error = %e, "plugin not enabled");
                }
            }
        }
        let state = AppState {
            cameras: Arc::new(cameras),
            hls: Hls::new(cfg.hls.clone()),
            snapshots: crate::snapshot::Snapshots::new(cfg.snapshot),
            mjpeg: crate::mjpeg::Mjpeg::new(cfg.mjpeg),
            whep: crate::whep::Whep::new(cfg.webrtc.clone()),
            events,
            plugins,
            started: Instant::now(),
        };
        let router = api::router(state.clone());
        let mut rx = shutdown_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
        });
        Ok(Host {
            addr,
            state,
            shutdown,
            server,
            supervisors,
            group,
        })
    }

    /// Stops cameras and the server; waits (bounded) for RTSP TEARDOWNs.
    pub async fn stop(self) {
        self.shutdown.send_replace(true);
        self.state.whep.close_all().await;
        self.state.plugins.stop().await;
        for s in self.supervisors {
            let _ = s.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.group.await_teardown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
    }
}

/// `vigil run`: serve until Ctrl-C or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let n = cfg.cameras.len();
    let host = Host::start(cfg).await?;
    tracing::info!(cameras = n, "vigil listening on http://{}", host.addr);
    println!("vigil: {n} cameras, open http://{}/", host.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    host.stop().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// `vigil demo`: camsim plus the host, on embedded defaults.
pub mod demo {
    use crate::camsim::{Camsim, CamsimArgs};
    use crate::config::{self, Config};

    /// Options of `vigil demo`.
    #[derive(Debug, Clone, clap::Args)]
    pub struct DemoArgs {
        /// HTTP address of the host.
        #[arg(long, default_value = "127.0.0.1:8080")]
        pub listen: std::net::SocketAddr,
        /// Simulated cameras.
        #[arg(long, default_value_t = 4)]
        pub cameras: usize,
        /// Exit after this many seconds (for smoke tests); runs until Ctrl-C otherwise.
        #[arg(long)]
        pub duration_s: Option<u64>,
        /// Directory with the example plugins (`vigil_plugin_*.wasm`); when given,
        /// motion runs on the always-on cameras and zones on the first one.
        #[arg(long)]
        pub plugins: Option<std::path::PathBuf>,
        /// Where the demo keeps its events and plugin state.
        #[arg(long, default_value = "./data")]
        pub data_dir: std::path::PathBuf,
        /// An H.264 clip with people (scripts/demo.sh uses vtest.avi); with
        /// `--models-dir` and the plugins, one more camera loops it and runs
        /// `detect` (and `zones` on its detections).
        #[arg(long)]
        pub people_clip: Option<std::path::PathBuf>,
        /// Installed models for `detect` (`yolov3-tiny-416x416.onnx`).
        #[arg(long)]
        pub models_dir: Option<std::path::PathBuf>,
    }

    /// The optional camera with people and object detection.
    #[derive(Debug)]
    pub struct People<'a> {
        pub camsim: &'a Camsim,
        pub models_dir: &'a std::path::Path,
    }

    /// The demo's config: every simulated camera, the last one on demand.
    pub fn demo_config(
        listen: std::net::SocketAddr,
        camsim: &Camsim,
        n: usize,
        plugins: Option<&std::path::Path>,
        data_dir: &std::path::Path,
        people: Option<People<'_>>,
    ) -> anyhow::Result<Config> {
        let toml_str = |p: &std::path::Path| {
            p.display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        };
        let mut text = format!(
            "[server]\nlisten = \"{listen}\"\ndata_dir = \"{}\"\n",
            toml_str(data_dir)
        );
        let plugin = |name: &str| {
            plugins
                .map(|d| d.join(format!("vigil_plugin_{name}.wasm")))
                .filter(|p| p.exists())
        };
        let (motion, zones, detect) = (plugin("motion"), plugin("zones"), plugin("detect"));
        let people = people
            .filter(|p| detect.is_some() && p.models_dir.join("yolov3-tiny-416x416.onnx").exists());
        if let (Some(p), Some(d)) = (&people, &detect) {
            text.push_str(&format!(
                "\n[inference]\nmodels_dir = \"{}\"\nthreads = 1\n\n[[plugin]]\nid = \"detect\"\npath = \"{}\"\ngrants = [\"inference\"]\n",
                toml_str(p.models_dir),
                toml_str(d)
            ));
        }
        if let Some(p) = &motion {
            text.push_str(&format!(
                "\n[[plugin]]\nid = \"motion\"\npath = \"{}\"\n",
                toml_str(p)
            ));
        }
        if let Some(p) = &zones {
            text.push_str(&format!(
                "\n[[plugin]]\nid = \"zones\"\npath = \"{}\"\n",
                toml_str(p)
            ));
        }
        for i in 0..n {
            let on_demand = i + 1 == n && n > 1;
            let mode = if on_demand { "on-demand" } else { "always" };
            text.push_str(&format!(
                "\n[[camera]]\nid = \"sim{i}\"\nname = \"Simulated camera {i}\"\nurl = \"{}\"\nmode = \"{mode}\"\n",
                camsim.url(i)
            ));
            if motion.is_some() && !on_demand {
                text.push_str(
                    "[[camera.plugin]]\nid = \"motion\"\nconfig = { min_area = 0.002 }\n",
                );
            }
            if zones.is_some() && i == 0 {
                text.push_str(
                    "[[camera.plugin]]\nid = \"zones\"\nconfig = { loiter_seconds = 3, zones = [{ name = \"bottom\", polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]] }] }\n",
                );
            }
        }
        if let Some(p) = &people {
            text.push_str(&format!(
                "\n[[camera]]\nid = \"people\"\nname = \"People (object detection)\"\nurl = \"{}\"\n\
                 [[camera.plugin]]\nid = \"detect\"\nconfig = {{ fps = 2 }}\n",
                p.camsim.url(0)
            ));
            if zones.is_some() {
                text.push_str(
                    "[[camera.plugin]]\nid = \"zones\"\nconfig = { loiter_seconds = 5, zones = [{ name = \"walkway\", polygon = [[0.3, 0.3], [0.7, 0.3], [0.7, 0.8], [0.3, 0.8]] }] }\n",
                );
            }
        }
        Ok(config::parse("<demo defaults>", &text)?)
    }

    pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
        let sim = Camsim::start(&CamsimArgs {
            listen: "127.0.0.1:0".parse()?,
            streams: args.cameras,
            width: 640,
            height: 360,
            fps: 15,
            gop: None,
            bitrate_kbps: 500,
            input: None,
            stamp: false,
        })
        .await?;
        let people_sim = match (&args.people_clip, &args.models_dir) {
            (Some(clip), Some(_)) => Some(
                Camsim::start(&CamsimArgs {
                    listen: "127.0.0.1:0".parse()?,
                    streams: 1,
                    input: Some(clip.clone()),
                    ..CamsimArgs::default()
                })
                .await?,
            ),
            _ => None,
        };
        let cfg = demo_config(
            args.listen,
            &sim,
            args.cameras,
            args.plugins.as_deref(),
            &args.data_dir,
            people_sim
                .as_ref()
                .zip(args.models_dir.as_deref())
                .map(|(camsim, models_dir)| People { camsim, models_dir }),
        )?;
        let host = super::Host::start(cfg).await?;
        println!(
            "vigil demo: {} simulated cameras from {}",
            args.cameras,
            sim.url(0)
        );
        println!(
            "vigil demo: open http://{}/  (API: http://{}/api/cameras)",
            host.addr, host.addr
        );
        match args.duration_s {
            Some(s) => {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(s)) => {}
                    _ = super::shutdown_signal() => {}
                }
            }
            None => super::shutdown_signal().await,
        }
        host.stop().await;
        sim.shutdown().await;
        if let Some(s) = people_sim {
            s.shutdown().await;
        }
        Ok(())
    }
}
