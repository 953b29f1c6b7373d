//! Sandboxed WebAssembly plugins: the only module that imports Wasmtime.
//!
//! - [`runtime`]: Engine (pooling allocator, epoch interruption), Linker, stores.
//! - [`bindings`]: the one `bindgen!` site for the `wit/` worlds.
//! - [`host_impl`]: the host side of `vigil:plugin` (host, state, frames) and the
//!   WASI / `wasi:http` views with capability checks.
//! - [`instance`]: one actor per (plugin, camera): inbox, deadlines, restarts,
//!   quarantine.
//! - [`feeder`]: the per-camera analytics frame path (decode only when needed).
//! - [`kv`]: the `state` capability's storage.
//! - [`packets`]: encoded packets for output plugins that ask for them.
//! - [`logpipe`]: a plugin's stdout/stderr into the host's log, rate-limited.
//! - [`offline`]: `vigil plugin inspect` / `vigil plugin run`.
//! - [`bench`]: measurement hooks for `cargo xtask bench plugins`.
//!
//! [`Plugins`] ties them together: it loads the `[[plugin]]`s, enables them on
//! cameras (config file or API), routes events from the store's bus to rule and
//! output instances, and reports status. Plugin code runs on its own Tokio runtime
//! (`[plugins] threads`), apart from ingest and HTTP.

pub mod bench;
pub mod bindings;
pub mod feeder;
pub mod host_impl;
pub mod instance;
pub mod kv;
pub mod logpipe;
pub mod offline;
pub mod packets;
pub mod runtime;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::{PluginConfig, PluginsConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::events::Events;
use crate::ingest::Camera;
use feeder::Feeder;
use host_impl::{InstanceCtx, TokenBucket};
use instance::{Actor, Control, Inbox, Input, State, Stats};
use runtime::{Kind, Manifest, Pre, Runtime, StoreSpec};

/// A compiled, linked plugin version.
pub struct Loaded {
    pub id: String,
    pub digest: String,
    pub size: usize,
    pub kind: Kind,
    pub manifest: Manifest,
    pub pre: Pre,
    pub loaded_at: std::time::SystemTime,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("id", &self.id)
            .field("digest", &self.digest)
            .finish()
    }
}

/// An installed plugin: its config and the loaded version (or why loading failed).
struct Installed {
    cfg: PluginConfig,
    loaded: Mutex<Option<Arc<Loaded>>>,
    error: Mutex<Option<String>>,
    http_allow: Arc<HashSet<String>>,
    http_denied: Arc<AtomicU64>,
}

/// A running (or quarantined) instance.
struct Instance {
    id: u64,
    plugin: String,
    camera: Arc<Camera>,
    kind: Kind,
    config: Mutex<serde_json::Value>,
    control: mpsc::Sender<Control>,
    inbox: Arc<Inbox>,
    stats: Arc<Stats>,
    ctx: Arc<InstanceCtx>,
    http_denied: Arc<AtomicU64>,
    /// The packet pump of an output plugin that asked for packets.
    pump: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(p) = self.pump.lock().unwrap().take() {
            p.abort();
        }
    }
}

impl Instance {
    /// (Re)starts the packet pump for `loaded`'s request, if it has one.
    fn start_pump(&self, handle: &tokio::runtime::Handle, loaded: &Loaded) {
        let new = loaded.manifest.packets.map(|req| {
            handle
                .spawn(packets::pump(self.camera.clone(), req, self.inbox.clone()))
                .abort_handle()
        });
        if let Some(old) = std::mem::replace(&mut *self.pump.lock().unwrap(), new) {
            old.abort();
        }
    }
}

/// What the API shows of an installed plugin.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginInfo {
    pub id: String,
    pub path: String,
    pub grants: Vec<String>,
    pub http_allow: Vec<String>,
    pub digest: Option<String>,
    pub size: Option<usize>,
    pub manifest: Option<Manifest>,
    pub error: Option<String>,
    pub instances: usize,
}

/// What the API shows of an instance.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InstanceStatus {
    pub plugin: String,
    pub camera: String,
    pub kind: Kind,
    pub version: Option<String>,
    pub state: State,
    pub config: serde_json::Value,
    pub restarts: u64,
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub mean_call_ms: Option<f64>,
    pub max_call_ms: f64,
    pub inputs: u64,
    pub dropped: u64,
    pub events_emitted: u64,
    pub events_rejected: u64,
    pub http_denied: u64,
    pub memory_peak_bytes: u64,
    /// Model runs completed for this instance, and runs refused (pool full,
    /// deadline) or failed.
    pub inference_runs: u64,
    pub inference_failed: u64,
    pub last_error: Option<String>,
    pub uptime_s: Option<f64>,
}

/// The plugin subsystem.
pub struct Plugins {
    runtime: Arc<Runtime>,
    handle: tokio::runtime::Handle,
    _rt_thread: Option<std::thread::JoinHandle<()>>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    installed: RwLock<HashMap<String, Arc<Installed>>>,
    instances: Mutex<HashMap<(String, String), Arc<Instance>>>,
    feeders: Mutex<HashMap<String, Arc<Feeder>>>,
    events: Arc<Events>,
    kv: Arc<kv::Kv>,
    cfg: PluginsConfig,
    data_dir: PathBuf,
    next_id: AtomicU64,
    pub dispatch_lagged: AtomicU64,
    /// Models and the inference pool (the `inference` capability).
    pub inference: Arc<crate::inference::Inference>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").finish()
    }
}

/// SHA-256 of a plugin binary, hex: identifies the version that runs.
fn hex_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Plugins {
    /// Builds the runtime, loads every `[[plugin]]` (a plugin that fails to load is
    /// reported, never fatal) and starts the event dispatcher.
    pub async fn start(
        cfg: PluginsConfig,
        plugins: &[PluginConfig],
        events: Arc<Events>,
        data_dir: PathBuf,
    ) -> Result<Arc<Plugins>> {
        // The pool's slots must fit the largest limit any plugin was given.
        let max_memory = plugins
            .iter()
            .filter_map(|p| p.memory_limit)
            .fold(cfg.memory_limit, usize::max);
        let runtime = Arc::new(Runtime::new(cfg.max_instances, max_memory)?);
        let kv = Arc::new(kv::Kv::open(&data_dir)?);
        let mut icfg = cfg.inference.clone();
        if icfg.models_dir.is_relative() && !cfg.inference_models_dir_set {
            icfg.models_dir = data_dir.join("models");
        }
        let inference = crate::inference::Inference::new(icfg)?;
        // Plugin code runs on its own runtime, on its own threads.
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stx, srx) = oneshot::channel::<()>();
        let threads = cfg.threads;
        let rt_thread = std::thread::Builder::new()
            .name("plugins".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("plugin-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = htx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = htx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = srx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| Error::new(ErrorKind::Internal, format!("plugin runtime thread: {e}")))?;
        let handle = hrx
            .recv()
            .map_err(|_| Error::new(ErrorKind::Internal, "plugin runtime did not start"))?
            .map_err(|e| Error::new(ErrorKind::Internal, format!("plugin runtime: {e}")))?;
        let this = Arc::new(Plugins {
            runtime,
            handle,
            _rt_thread: Some(rt_thread),
            shutdown: Mutex::new(Some(stx)),
            installed: RwLock::new(HashMap::new()),
            instances: Mutex::new(HashMap::new()),
            feeders: Mutex::new(HashMap::new()),
            events: events.clone(),
            kv,
            cfg,
            data_dir,
            next_id: AtomicU64::new(1),
            dispatch_lagged: AtomicU64::new(0),
            inference,
        });
        for p in plugins {
            let inst = Arc::new(Installed {
                cfg: p.clone(),
                loaded: Mutex::new(None),
                error: Mutex::new(None),
                http_allow: Arc::new(p.http_allow.iter().cloned().collect()),
                http_denied: Arc::new(AtomicU64::new(0)),
            });
            this.installed
                .write()
                .unwrap()
                .insert(p.id.clone(), inst.clone());
            match this.load(&inst).await {
                Ok(l) => {
                    tracing::info!(plugin = %p.id, name = %l.manifest.name, version = %l.manifest.version, kind = ?l.kind, "plugin loaded");
                    *inst.loaded.lock().unwrap() = Some(l);
                }
                Err(e) => {
                    tracing::warn!(plugin = %p.id, error = %e, "plugin not loaded");
                    *inst.error.lock().unwrap() = Some(e.to_string());
                }
            }
        }
        let weak = Arc::downgrade(&this);
        let mut bus = events.subscribe();
        tokio::spawn(async move {
            loop {
                let ev = match bus.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        if let Some(p) = weak.upgrade() {
                            p.dispatch_lagged.fetch_add(n, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Err(_) => break,
                };
                let Some(p) = weak.upgrade() else { break };
                p.dispatch(&ev);
            }
        });
        Ok(this)
    }

    /// Routes a stored event to the rule and output instances of its camera (not
    /// back to the instance that emitted it).
    fn dispatch(&self, ev: &Arc<crate::events::Event>) {
        let instances = self.instances.lock().unwrap();
        for ((camera, plugin), inst) in instances.iter() {
            if camera != &ev.camera || inst.kind == Kind::Analytics || plugin == &ev.plugin {
                continue;
            }
            inst.inbox.push_event(Input::Event(ev.clone()));
        }
    }

    /// Reads, compiles, links and probes a plugin's manifest.
    async fn load(&self, inst: &Installed) -> Result<Arc<Loaded>> {
        let path = inst.cfg.path.clone();
        let rt = self.runtime.clone();
        let (bytes, (component, kind, pre)) = tokio::task::spawn_blocking(move || -> Result<_> {
            let bytes = runtime::read_wasm(&path)?;
            let compiled = rt.compile(&bytes)?;
            Ok((bytes, compiled))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("compile task: {e}")))??;
        let _ = component;
        // Probe instance: reads the manifest under the same limits as any instance.
        let ctx = self.ctx(&inst.cfg, "(probe)", Default::default());
        let spec = self.spec(inst, "(probe)", false);
        let timeout = inst.cfg.call_timeout.unwrap_or(self.cfg.call_timeout);
        let rt = self.runtime.clone();
        let pre2 = pre.clone();
        let manifest = self
            .handle
            .spawn(async move {
                let mut store = rt.store(ctx, &spec)?;
                let bound = runtime::instantiate(&pre2, &mut store, timeout).await?;
                runtime::read_manifest(&bound, &mut store, kind, timeout).await
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("manifest task: {e}")))??;
        for cap in &manifest.capabilities {
            if !inst.cfg.grants.contains(cap) {
                tracing::info!(plugin = %inst.cfg.id, "plugin asks for the {cap:?} capability, which is not granted");
            }
        }
        Ok(Arc::new(Loaded {
            id: inst.cfg.id.clone(),
            digest: hex_digest(&bytes),
            size: bytes.len(),
            kind,
            manifest,
            pre,
            loaded_at: std::time::SystemTime::now(),
        }))
    }

    fn ctx(
        &self,
        cfg: &PluginConfig,
        camera: &str,
        clock: Arc<crate::ingest::MediaClock>,
    ) -> Arc<InstanceCtx> {
        Arc::new(InstanceCtx {
            plugin: cfg.id.clone(),
            camera: camera.to_string(),
            grants: cfg.grants.clone(),
            events: self.events.clone(),
            kv: self.kv.clone(),
            events_per_second: self.cfg.events_per_second,
            emitted: AtomicU64::new(0),
            emit_rejected: AtomicU64::new(0),
            memory_peak: AtomicU64::new(0),
            inference_runs: AtomicU64::new(0),
            inference_failed: AtomicU64::new(0),
            bucket: Mutex::new(TokenBucket::new(self.cfg.events_per_second)),
            inference: self.inference.clone(),
            clock,
        })
    }

    fn spec(&self, inst: &Installed, camera: &str, files: bool) -> StoreSpec {
        StoreSpec {
            memory: inst.cfg.memory_limit.unwrap_or(self.cfg.memory_limit),
            http_allow: inst.http_allow.clone(),
            http_denied: inst.http_denied.clone(),
            files_dir: (files && inst.cfg.grants.iter().any(|g| g == "files")).then(|| {
                self.data_dir
                    .join("plugin-files")
                    .join(&inst.cfg.id)
                    .join(camera)
            }),
        }
    }

    fn installed(&self, plugin: &str) -> Result<Arc<Installed>> {
        self.installed
            .read()
            .unwrap()
            .get(plugin)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no plugin with id {plugin:?}")))
    }

    fn loaded(&self, plugin: &str) -> Result<Arc<Loaded>> {
        let inst = self.installed(plugin)?;
        let loaded = inst.loaded.lock().unwrap().clone();
        loaded.ok_or_else(|| {
            Error::new(
                ErrorKind::FailedPrecondition,
                format!(
                    "plugin {plugin:?} is not loaded: {}",
                    inst.error
                        .lock()
                        .unwrap()
                        .clone()
                        .unwrap_or_else(|| "unknown reason".into())
                ),
            )
        })
    }

    /// Checks a configuration against the plugin's JSON Schema; the error names the
    /// field (JSON pointer) and the reason.
    pub fn validate_config(&self, plugin: &str, config: &serde_json::Value) -> Result<()> {
        check_config(&*self.loaded(plugin)?, plugin, config)
    }

    /// The schema's complaints about `config`, field by field (JSON pointer,
    /// reason): what a form shows next to each field. Empty when it is valid.
    pub fn config_problems(
        &self,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<Vec<(String, String)>> {
        config_problems(&*self.loaded(plugin)?, config)
    }

    /// Enables `plugin` on `camera` with `config`, or reconfigures it if enabled.
    pub async fn enable(
        self: &Arc<Self>,
        camera: &Arc<Camera>,
        plugin: &str,
        config: serde_json::Value,
    ) -> Result<InstanceStatus> {
        let loaded = self.loaded(plugin)?;
        self.validate_config(plugin, &config)?;
        let key = (camera.config.id.clone(), plugin.to_string());
        let existing = self.instances.lock().unwrap().get(&key).cloned();
        if let Some(inst) = existing {
            let (ack, done) = oneshot::channel();
            inst.control
                .send(Control::Configure(config.clone(), ack))
                .await
                .map_err(|_| Error::new(ErrorKind::Unavailable, "the instance stopped"))?;
            done.await
                .map_err(|_| Error::new(ErrorKind::Unavailable, "the instance stopped"))??;
            *inst.config.lock().unwrap() = config;
            return Ok(self.instance_status(&inst));
        }
        if self.instances.lock().unwrap().len() >= self.cfg.max_instances {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "plugin instance limit reached ({} on this host)",
                    self.cfg.max_instances
                ),
            ));
        }
        let installed = self.installed(plugin)?;
        let ctx = self.ctx(&installed.cfg, &camera.config.id, camera.clock.clone());
        let spec = self.spec(&installed, &camera.config.id, true);
        let inbox = Arc::new(Inbox::new(installed.cfg.queue));
        let stats = Arc::new(Stats::default());
        let (ctl_tx, ctl_rx) = mpsc::channel(8);
        let (first_tx, first_rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inst = Arc::new(Instance {
            id,
            plugin: plugin.to_string(),
            camera: camera.clone(),
            kind: loaded.kind,
            config: Mutex::new(config.clone()),
            control: ctl_tx,
            inbox: inbox.clone(),
            stats: stats.clone(),
            ctx: ctx.clone(),
            http_denied: installed.http_denied.clone(),
            pump: Mutex::new(None),
        });
        let actor = Actor {
            runtime: self.runtime.clone(),
            plugin: loaded.clone(),
            config,
            ctx,
            spec,
            inbox: inbox.clone(),
            stats,
            control: ctl_rx,
            call_timeout: installed.cfg.call_timeout.unwrap_or(self.cfg.call_timeout),
            clock_ticks: !self.cfg.replay_ticks,
            first_start: Some(first_tx),
        };
        let call_timeout = actor.call_timeout;
        self.instances.lock().unwrap().insert(key, inst.clone());
        self.handle.spawn(actor.run());
        inst.start_pump(&self.handle, &loaded);
        if loaded.kind == Kind::Analytics {
            let request = loaded.manifest.frames.unwrap_or(runtime::FrameRequest {
                max_fps: 1.0,
                key_frames_only: true,
            });
            let feeder = self
                .feeders
                .lock()
                .unwrap()
                .entry(camera.config.id.clone())
                .or_insert_with(|| Feeder::start(camera.clone()))
                .clone();
            feeder.add(id, request, inbox);
        }
        // Wait for its first start: a plugin that refuses the configuration is
        // not enabled (422 with its reason), like one whose schema refuses it.
        // (A trap is different: the instance is enabled and restarts.)
        let first = tokio::time::timeout(call_timeout + Duration::from_secs(5), first_rx).await;
        if let Ok(Ok(Err(e))) = first {
            let _ = self.disable(&camera.config.id, plugin).await;
            return Err(e);
        }
        Ok(self.instance_status(&inst))
    }

    /// Plugin binaries compiled since start (the cache by digest avoids repeats).
    pub fn compilations(&self) -> u64 {
        self.runtime
            .compilations
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Disables `plugin` on `camera`.
    pub async fn disable(&self, camera: &str, plugin: &str) -> Result<()> {
        let inst = self
            .instances
            .lock()
            .unwrap()
            .remove(&(camera.to_string(), plugin.to_string()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("plugin {plugin:?} is not enabled on camera {camera}"),
                )
            })?;
        let _ = inst.control.send(Control::Stop).await;
        if let Some(p) = inst.pump.lock().unwrap().take() {
            p.abort();
        }
        if inst.kind == Kind::Analytics {
            let mut feeders = self.feeders.lock().unwrap();
            if let Some(f) = feeders.get(camera)
                && f.remove(inst.id) == 0
            {
                f.stop();
                feeders.remove(camera);
            }
        }
        Ok(())
    }

    /// Loads a new version of a plugin's `.wasm` (same path) and moves every
    /// instance to it, without touching ingest or other plugins.
    ///
    /// A new version that is another kind of plugin, or whose schema refuses the
    /// configuration of an enabled instance, is refused (422) and the running
    /// version stays.
    pub async fn reload(&self, plugin: &str) -> Result<PluginInfo> {
        let inst = self.installed(plugin)?;
        let loaded = self.load(&inst).await?;
        let targets: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .unwrap()
            .values()
            .filter(|i| i.plugin == plugin)
            .cloned()
            .collect();
        for i in &targets {
            if i.kind != loaded.kind {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the new {} is a {} plugin, but plugin {plugin:?} is enabled as {} on camera {:?}; disable it first",
                        inst.cfg.path.display(),
                        format!("{:?}", loaded.kind).to_lowercase(),
                        format!("{:?}", i.kind).to_lowercase(),
                        i.camera.config.id
                    ),
                ));
            }
            let config = i.config.lock().unwrap().clone();
            check_config(&loaded, plugin, &config).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the new version refuses camera {:?}'s configuration: {}",
                        i.camera.config.id,
                        e.message()
                    ),
                )
            })?;
        }
        *inst.loaded.lock().unwrap() = Some(loaded.clone());
        *inst.error.lock().unwrap() = None;
        for i in targets {
            let _ = i.control.send(Control::Upgrade(loaded.clone())).await;
            i.start_pump(&self.handle, &loaded);
        }
        tracing::info!(plugin, digest = %loaded.digest, version = %loaded.manifest.version, "plugin reloaded");
        Ok(self.info(plugin, &inst))
    }

    fn info(&self, id: &str, inst: &Installed) -> PluginInfo {
        let loaded = inst.loaded.lock().unwrap().clone();
        PluginInfo {
            id: id.to_string(),
            path: inst.cfg.path.display().to_string(),
            grants: inst.cfg.grants.clone(),
            http_allow: inst.cfg.http_allow.clone(),
            digest: loaded.as_ref().map(|l| l.digest.clone()),
            size: loaded.as_ref().map(|l| l.size),
            manifest: loaded.as_ref().map(|l| l.manifest.clone()),
            error: inst.error.lock().unwrap().clone(),
            instances: self
                .instances
                .lock()
                .unwrap()
                .values()
                .filter(|i| i.plugin == id)
                .count(),
        }
    }

    /// Installed plugins.
    pub fn list(&self) -> Vec<PluginInfo> {
        let installed: Vec<(String, Arc<Installed>)> = self
            .installed
            .read()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut v: Vec<PluginInfo> = installed.iter().map(|(k, i)| self.info(k, i)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn plugin(&self, id: &str) -> Result<PluginInfo> {
        let inst = self.installed(id)?;
        Ok(self.info(id, &inst))
    }

    fn instance_status(&self, i: &Instance) -> InstanceStatus {
        let s = &i.stats;
        let calls = s.calls.load(Ordering::Relaxed);
        let total = s.call_ns_total.load(Ordering::Relaxed);
        let version = self.installed.read().unwrap().get(&i.plugin).and_then(|p| {
            p.loaded
                .lock()
                .unwrap()
                .as_ref()
                .map(|l| l.manifest.version.clone())
        });
        InstanceStatus {
            plugin: i.plugin.clone(),
            camera: i.camera.config.id.clone(),
            kind: i.kind,
            version,
            state: s.state.lock().unwrap().clone(),
            config: i.config.lock().unwrap().clone(),
            restarts: s.restarts.load(Ordering::Relaxed),
            calls,
            errors: s.errors.load(Ordering::Relaxed),
            traps: s.traps.load(Ordering::Relaxed),
            mean_call_ms: (calls > 0).then(|| total as f64 / calls as f64 / 1e6),
            max_call_ms: s.call_ns_max.load(Ordering::Relaxed) as f64 / 1e6,
            inputs: i.inbox.received.load(Ordering::Relaxed),
            dropped: i.inbox.dropped.load(Ordering::Relaxed)
                + i.inbox.events_dropped.load(Ordering::Relaxed),
            events_emitted: i.ctx.emitted.load(Ordering::Relaxed),
            events_rejected: i.ctx.emit_rejected.load(Ordering::Relaxed),
            http_denied: i.http_denied.load(Ordering::Relaxed),
            memory_peak_bytes: i.ctx.memory_peak.load(Ordering::Relaxed),
            inference_runs: i.ctx.inference_runs.load(Ordering::Relaxed),
            inference_failed: i.ctx.inference_failed.load(Ordering::Relaxed),
            last_error: s.last_error.lock().unwrap().clone(),
            uptime_s: s.started.lock().unwrap().map(|t| t.elapsed().as_secs_f64()),
        }
    }

    /// The status of `plugin` on `camera`.
    pub fn status(&self, camera: &str, plugin: &str) -> Result<InstanceStatus> {
        let inst = self
            .instances
            .lock()
            .unwrap()
            .get(&(camera.to_string(), plugin.to_string()))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("plugin {plugin:?} is not enabled on camera {camera}"),
                )
            })?;
        Ok(self.instance_status(&inst))
    }

    /// The frame path of a camera, when an analytics plugin runs on it.
    pub fn frame_path(&self, camera: &str) -> Option<feeder::FramePathStatus> {
        self.feeders.lock().unwrap().get(camera).map(|f| f.status())
    }

    /// Every frame path, by camera.
    pub fn frame_paths(&self) -> Vec<(String, feeder::FramePathStatus)> {
        let mut v: Vec<_> = self
            .feeders
            .lock()
            .unwrap()
            .iter()
            .map(|(k, f)| (k.clone(), f.status()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every instance (optionally of one camera).
    pub fn instances(&self, camera: Option<&str>) -> Vec<InstanceStatus> {
        let all: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .unwrap()
            .values()
            .filter(|i| camera.is_none_or(|c| i.camera.config.id == c))
            .cloned()
            .collect();
        let mut v: Vec<InstanceStatus> = all.iter().map(|i| self.instance_status(i)).collect();
        v.sort_by(|a, b| (&a.camera, &a.plugin).cmp(&(&b.camera, &b.plugin)));
        v
    }

    /// Stops every instance and the plugin runtime.
    pub async fn stop(&self) {
        let all: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .unwrap()
            .drain()
            .map(|(_, v)| v)
            .collect();
        for i in all {
            let _ = i.control.send(Control::Stop).await;
        }
        for (_, f) in self.feeders.lock().unwrap().drain() {
            f.stop();
        }
        if let Some(tx) = self.shutdown.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let inference = self.inference.clone();
        let _ = tokio::task::spawn_blocking(move || inference.shutdown()).await;
    }
}

/// What is wrong with `config` by the plugin's JSON Schema: (JSON pointer of
/// the field, `/` for the whole, reason), at most 20.
fn config_problems(loaded: &Loaded, config: &serde_json::Value) -> Result<Vec<(String, String)>> {
    let validator = jsonschema::validator_for(&loaded.manifest.config_schema)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("plugin schema: {e}")))?;
    Ok(validator
        .iter_errors(config)
        .take(20)
        .map(|e| {
            let at = e.instance_path.to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            (at, e.to_string())
        })
        .collect())
}

/// Checks `config` against a loaded plugin's JSON Schema; the error names the
/// field (JSON pointer) and the reason.
fn check_config(loaded: &Loaded, plugin: &str, config: &serde_json::Value) -> Result<()> {
    let problems = config_problems(loaded, config)?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidConfig,
            invalid_config_message(plugin, &problems),
        ))
    }
}

/// "configuration of plugin "x" is invalid: /field: reason; …" (the first 5).
pub fn invalid_config_message(plugin: &str, problems: &[(String, String)]) -> String {
    let list: Vec<String> = problems
        .iter()
        .take(5)
        .map(|(at, e)| format!("{at}: {e}"))
        .collect();
    format!(
        "configuration of plugin {plugin:?} is invalid: {}",
        list.join("; ")
    )
}
