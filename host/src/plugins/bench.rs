//! Measurement hooks for `cargo xtask bench plugins` (`host/benches/plugins.rs`):
//! per-frame call times through the real instance actor, and instantiation times
//! from the pooling allocator. Not used by the host itself.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::instance::{FrameInput, Input, State};
use super::{Plugins, runtime};
use crate::codec::Picture;
use crate::config::{CameraConfig, Mode, PluginConfig, PluginsConfig, Transport};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Events;
use crate::ingest::Camera;

/// A plugin manager over a scratch directory, with one plugin installed.
#[derive(Debug)]
pub struct Bench {
    pub plugins: Arc<Plugins>,
    pub events: Arc<Events>,
    id: String,
    dir: std::path::PathBuf,
}

/// What instantiating many instances cost.
#[derive(Debug, Default, Clone)]
pub struct Instantiation {
    /// Store + instance, each.
    pub start: Vec<Duration>,
    /// The `configure` call after it, each.
    pub configure: Vec<Duration>,
    /// Resident memory (KiB) before the first and with all of them alive.
    pub rss_before_kib: u64,
    pub rss_alive_kib: u64,
}

/// This process's resident memory, KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Per-frame timings of one plugin instance.
#[derive(Debug, Default, Clone)]
pub struct FrameTimes {
    /// Inside the call, as the host times it (guest code, host calls it makes
    /// such as fetching pixels, copying them into guest memory).
    pub call: Vec<Duration>,
    /// From queueing the frame to the call's end (adds the actor's wake-up).
    pub end_to_end: Vec<Duration>,
}

fn camera(id: &str) -> Result<Arc<Camera>> {
    let (url, _, _) = crate::config::parse_camera_url("rtsp://bench.invalid/x")
        .map_err(|e| Error::new(ErrorKind::Internal, e))?;
    Ok(Camera::new(CameraConfig {
        id: id.to_string(),
        name: id.to_string(),
        url,
        username: None,
        password: None,
        transport: Transport::Tcp,
        mode: Mode::Always,
        plugins: Vec::new(),
    }))
}

impl Bench {
    /// Installs `wasm` in a fresh manager sized for `max_instances`.
    pub async fn start(wasm: &Path, max_instances: usize) -> Result<Bench> {
        Self::start_with(wasm, max_instances, &[], None).await
    }

    /// As [`Bench::start`], granting `grants`, with models in `models_dir`.
    pub async fn start_with(
        wasm: &Path,
        max_instances: usize,
        grants: &[&str],
        models_dir: Option<&Path>,
    ) -> Result<Bench> {
        let dir = std::env::temp_dir().join(format!("vigil-bench-{}", rand::random::<u64>()));
        let events = Events::open(&dir, Default::default())?;
        let pc = PluginConfig {
            id: "bench".into(),
            path: wasm.to_path_buf(),
            grants: grants.iter().map(|g| g.to_string()).collect(),
            http_allow: Vec::new(),
            call_timeout: Some(Duration::from_secs(10)),
            memory_limit: None,
            queue: 4,
        };
        let plugins = Plugins::start(
            PluginsConfig {
                max_instances,
                events_per_second: 1_000_000,
                inference: crate::inference::InferenceConfig {
                    models_dir: models_dir.map_or_else(Default::default, Path::to_path_buf),
                    ..Default::default()
                },
                inference_models_dir_set: models_dir.is_some(),
                ..PluginsConfig::default()
            },
            std::slice::from_ref(&pc),
            events.clone(),
            dir.clone(),
        )
        .await?;
        if let Some(e) = plugins.plugin("bench")?.error {
            return Err(Error::new(ErrorKind::InvalidArgument, e));
        }
        Ok(Bench {
            plugins,
            events,
            id: pc.id,
            dir,
        })
    }

    /// Runs every picture through one instance configured with `config`, one at
    /// a time (each waits for the previous call), 15 fps apart in media time.
    pub async fn frames(
        &self,
        config: serde_json::Value,
        pictures: &[Arc<Picture>],
    ) -> Result<FrameTimes> {
        self.frames_every(config, pictures, Duration::from_nanos(66_666_667))
            .await
    }

    /// As [`Bench::frames`], with `interval` between the frames' media times.
    pub async fn frames_every(
        &self,
        config: serde_json::Value,
        pictures: &[Arc<Picture>],
        interval: Duration,
    ) -> Result<FrameTimes> {
        let cam = camera("bench-frames")?;
        // Frames are pushed by hand: no feeder (the fake camera never streams).
        self.plugins.enable(&cam, &self.id, config).await?;
        if let Some(f) = self.plugins.feeders.lock().unwrap().remove("bench-frames") {
            f.stop();
        }
        let inst = self
            .plugins
            .instances
            .lock()
            .unwrap()
            .get(&("bench-frames".to_string(), self.id.clone()))
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "instance missing"))?;
        let mut t = FrameTimes::default();
        for (i, p) in pictures.iter().enumerate() {
            let (calls, ns) = (
                inst.stats.calls.load(Ordering::Acquire),
                inst.stats.call_ns_total.load(Ordering::Acquire),
            );
            let t0 = Instant::now();
            inst.inbox.push(Input::Frame(FrameInput {
                picture: p.clone(),
                media_ns: i as i64 * interval.as_nanos() as i64,
                wall_ms: crate::events::now_ms(),
                key: i == 0,
            }));
            while inst.stats.calls.load(Ordering::Acquire) == calls {
                if *inst.stats.state.lock().unwrap() != State::Running {
                    return Err(Error::new(
                        ErrorKind::Internal,
                        format!(
                            "the plugin stopped: {}",
                            inst.stats
                                .last_error
                                .lock()
                                .unwrap()
                                .clone()
                                .unwrap_or_default()
                        ),
                    ));
                }
                std::hint::spin_loop();
                tokio::task::yield_now().await;
            }
            t.end_to_end.push(t0.elapsed());
            t.call.push(Duration::from_nanos(
                inst.stats.call_ns_total.load(Ordering::Acquire) - ns,
            ));
        }
        self.plugins.disable("bench-frames", &self.id).await?;
        Ok(t)
    }

    /// Instantiates the component `n` times from its pre-linked handle, keeping
    /// every instance alive (as a host with `n` instances would): the time of
    /// each store + instantiation, then of its `configure` call.
    pub async fn instantiate(&self, n: usize, config: &serde_json::Value) -> Result<Instantiation> {
        let inst = self.plugins.installed(&self.id)?;
        let loaded = self.plugins.loaded(&self.id)?;
        let cfg = serde_json::to_string(config).unwrap_or_default();
        let mut keep = Vec::with_capacity(n);
        let (mut start, mut configure) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let rss_before_kib = rss_kib();
        for i in 0..n {
            let ctx = self
                .plugins
                .ctx(&inst.cfg, &format!("bench{i}"), Default::default());
            let spec = self.plugins.spec(&inst, "bench", false);
            let t0 = Instant::now();
            let mut store = self.plugins.runtime.store(ctx, &spec)?;
            let bound =
                runtime::instantiate(&loaded.pre, &mut store, Duration::from_secs(10)).await?;
            start.push(t0.elapsed());
            let t1 = Instant::now();
            store.data_mut().deadline = Instant::now() + Duration::from_secs(10);
            let r = match &bound {
                runtime::Bound::Analytics(b) => {
                    b.vigil_plugin_analytics_plugin()
                        .call_configure(&mut store, &cfg)
                        .await
                }
                runtime::Bound::Rule(b) => {
                    b.vigil_plugin_rule_plugin()
                        .call_configure(&mut store, &cfg)
                        .await
                }
                runtime::Bound::Output(b) => {
                    b.vigil_plugin_output_plugin()
                        .call_configure(&mut store, &cfg)
                        .await
                }
            };
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!("configure: {e:?}"),
                    ));
                }
                Err(e) => return Err(Error::new(ErrorKind::Internal, format!("configure: {e:#}"))),
            }
            configure.push(t1.elapsed());
            keep.push((store, bound));
        }
        let rss_alive_kib = rss_kib();
        drop(keep);
        Ok(Instantiation {
            start,
            configure,
            rss_before_kib,
            rss_alive_kib,
        })
    }

    /// Pictures run through `model` (installed name) on the host's inference
    /// pool directly, as a plugin's `run-frame` would build them (letterbox,
    /// RGB, NCHW, /255), without the plugin: one at a time, each timed.
    pub async fn infer_direct(
        &self,
        model: &str,
        pictures: &[Arc<Picture>],
    ) -> Result<Vec<Duration>> {
        let inf = self.plugins.inference.clone();
        let m = {
            let inf = inf.clone();
            let name = model.to_string();
            tokio::task::spawn_blocking(move || inf.load(&inf.installed(&name)?))
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))??
        };
        let mut times = Vec::with_capacity(pictures.len());
        for p in pictures {
            let spec = crate::inference::InputSpec::letterbox_unit();
            let t0 = Instant::now();
            let out = inf
                .run_picture(m.clone(), p.clone(), spec, Duration::from_secs(10))
                .await?;
            times.push(t0.elapsed());
            std::hint::black_box(out);
        }
        Ok(times)
    }

    pub async fn stop(self) {
        self.plugins.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
