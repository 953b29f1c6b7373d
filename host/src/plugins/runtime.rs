//! The Wasmtime side: one Engine (component model, pooling allocator, epoch
//! interruption driven by a ticker thread), one Linker with WASI 0.2, `wasi:http`
//! and the `vigil:plugin` interfaces, loading (compiling once, then
//! `InstancePre` for fast instantiation) and stores with limits and deadlines.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, PoolingAllocationConfig, Store, StoreLimitsBuilder, UpdateDeadline};

use super::bindings::{analytics, output, rule};
use super::host_impl::{HttpHooks, InstanceCtx, Limiter, PluginState};
use crate::error::{Error, ErrorKind, Result};

/// The epoch ticks every this long; deadlines are checked at each tick.
pub const TICK: Duration = Duration::from_millis(5);

/// Which world a component targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Analytics,
    Rule,
    Output,
}

/// The plugin's self-description (from its `manifest` export), in host types.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub description: String,
    pub frames: Option<FrameRequest>,
    pub tick_interval_ms: Option<u32>,
    /// Output plugins: the encoded media they want.
    pub packets: Option<PacketRequest>,
    pub config_schema: serde_json::Value,
    pub capabilities: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PacketRequest {
    pub video: bool,
    pub audio: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct FrameRequest {
    pub max_fps: f32,
    pub key_frames_only: bool,
}

/// Pre-linked instantiation handle of a loaded component, per world.
#[derive(Clone)]
pub enum Pre {
    Analytics(analytics::AnalyticsPre<PluginState>),
    Rule(rule::RulePre<PluginState>),
    Output(output::OutputPre<PluginState>),
}

/// A running component instance, per world.
pub enum Bound {
    Analytics(analytics::Analytics),
    Rule(rule::Rule),
    Output(output::Output),
}

/// The Wasmtime runtime shared by all plugins.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<PluginState>,
    /// Compiled components by SHA-256 of their bytes: a second `[[plugin]]` with
    /// the same binary, or a reload that did not change it, does not recompile.
    /// (Restarts never compile: they instantiate from the plugin's `InstancePre`.)
    compiled: std::sync::Mutex<std::collections::HashMap<[u8; 32], Component>>,
    /// Compilations done (for tests and status).
    pub compilations: std::sync::atomic::AtomicU64,
    /// Ends the ticker thread when dropped.
    _ticker: std::thread::JoinHandle<()>,
}

/// Distinct binaries kept compiled; beyond that the cache starts over.
const COMPILED_CACHE: usize = 64;

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

fn wasm_err(what: &str) -> impl Fn(wasmtime::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::InvalidArgument, format!("{what}: {e:#}"))
}

impl Runtime {
    /// `max_instances`: instances that may exist at once; `max_memory`: per instance.
    pub fn new(max_instances: usize, max_memory: usize) -> Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        // A Rust component has a few core instances, memories and tables each.
        let n = max_instances.max(1) as u32;
        pool.total_component_instances(n + 16)
            .total_core_instances(n * 8 + 64)
            .total_memories(n * 2 + 32)
            .total_tables(n * 4 + 64)
            .total_stacks(n + 16)
            .max_memory_size(max_memory)
            .max_memories_per_module(2)
            .max_tables_per_module(4);
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(pool);
        // Keep the virtual reservation per memory near the limit, so thousands of
        // instances fit in the address space.
        cfg.memory_reservation((max_memory as u64).max(16 << 20));
        let engine = Engine::new(&cfg)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("wasmtime engine: {e:#}")))?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("WASI linker: {e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("wasi:http linker: {e:#}")))?;
        analytics::Analytics::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("vigil:plugin linker: {e:#}")))?;
        let weak = engine.weak();
        let ticker = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(e) = weak.upgrade() {
                    e.increment_epoch();
                    drop(e);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| Error::new(ErrorKind::Internal, format!("epoch ticker: {e}")))?;
        Ok(Runtime {
            engine,
            linker,
            compiled: Default::default(),
            compilations: Default::default(),
            _ticker: ticker,
        })
    }

    /// Compiles a component (CPU-heavy: run on a blocking thread) and links it
    /// for the world it exports.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, Kind, Pre)> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        let cached = self.compiled.lock().unwrap().get(&digest).cloned();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes)
                    .map_err(wasm_err("not a valid WebAssembly component"))?;
                self.compilations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut cache = self.compiled.lock().unwrap();
                if cache.len() >= COMPILED_CACHE {
                    cache.clear();
                }
                cache.insert(digest, c.clone());
                c
            }
        };
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let has = |i: &str| {
            exports
                .iter()
                .any(|e| e == &format!("vigil:plugin/{i}@0.1.0"))
        };
        let pre = self.linker.instantiate_pre(&component).map_err(wasm_err(
            "the component imports something the host does not provide",
        ))?;
        let (kind, pre) = if has("analytics-plugin") {
            (
                Kind::Analytics,
                Pre::Analytics(
                    analytics::AnalyticsPre::new(pre).map_err(wasm_err("analytics world"))?,
                ),
            )
        } else if has("rule-plugin") {
            (
                Kind::Rule,
                Pre::Rule(rule::RulePre::new(pre).map_err(wasm_err("rule world"))?),
            )
        } else if has("output-plugin") {
            (
                Kind::Output,
                Pre::Output(output::OutputPre::new(pre).map_err(wasm_err("output world"))?),
            )
        } else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the component exports none of vigil:plugin/analytics-plugin, rule-plugin or output-plugin @0.1.0 (exports: {})",
                    if exports.is_empty() {
                        "none".into()
                    } else {
                        exports.join(", ")
                    }
                ),
            ));
        };
        Ok((component, kind, pre))
    }

    /// A store for one instance: WASI with nothing granted but what the grants
    /// say, the memory limit, the epoch deadline callback.
    pub fn store(&self, ctx: Arc<InstanceCtx>, limits: &StoreSpec) -> Result<Store<PluginState>> {
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        let log = super::logpipe::LogPipe::new(ctx.plugin.clone(), ctx.camera.clone());
        wasi.stdout(log.clone()).stderr(log);
        if let Some(dir) = &limits.files_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
            wasi.preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("preopen {}: {e:#}", dir.display()),
                    )
                })?;
        }
        let state = PluginState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            hooks: HttpHooks {
                allowed: limits.http_allow.clone(),
                granted: ctx.grants.iter().any(|g| g == "http"),
                denied: limits.http_denied.clone(),
            },
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory)
                    .trap_on_grow_failure(true)
                    .build(),
                ctx: ctx.clone(),
            },
            ctx,
            deadline: Instant::now() + Duration::from_secs(3600),
            current_frame: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }
}

/// What a store is allowed.
#[derive(Clone, Debug)]
pub struct StoreSpec {
    pub memory: usize,
    pub http_allow: Arc<HashSet<String>>,
    pub http_denied: Arc<AtomicU64>,
    pub files_dir: Option<PathBuf>,
}

/// Instantiates a component in a store (with a deadline).
pub async fn instantiate(
    pre: &Pre,
    store: &mut Store<PluginState>,
    deadline: Duration,
) -> Result<Bound> {
    store.data_mut().deadline = Instant::now() + deadline;
    let r = match pre {
        Pre::Analytics(p) => p.instantiate_async(&mut *store).await.map(Bound::Analytics),
        Pre::Rule(p) => p.instantiate_async(&mut *store).await.map(Bound::Rule),
        Pre::Output(p) => p.instantiate_async(&mut *store).await.map(Bound::Output),
    };
    r.map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("instantiate: {}", describe_trap(&e)),
        )
    })
}

/// A readable reason for a failed call: timeouts and memory limits by name.
pub fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        return match t {
            wasmtime::Trap::Interrupt => "call deadline exceeded (interrupted)".into(),
            wasmtime::Trap::OutOfFuel => "out of fuel".into(),
            other => format!("trap: {other}"),
        };
    }
    let s = format!("{e:#}");
    if s.contains("memory") && (s.contains("limit") || s.contains("grow")) {
        format!("memory limit reached: {s}")
    } else {
        s
    }
}

/// Reads the manifest of a freshly instantiated component and checks it.
pub async fn read_manifest(
    bound: &Bound,
    store: &mut Store<PluginState>,
    kind: Kind,
    deadline: Duration,
) -> Result<Manifest> {
    store.data_mut().deadline = Instant::now() + deadline;
    let m = match bound {
        Bound::Analytics(b) => {
            b.vigil_plugin_analytics_plugin()
                .call_describe(&mut *store)
                .await
        }
        Bound::Rule(b) => {
            b.vigil_plugin_rule_plugin()
                .call_describe(&mut *store)
                .await
        }
        Bound::Output(b) => {
            b.vigil_plugin_output_plugin()
                .call_describe(&mut *store)
                .await
        }
    }
    .map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("manifest(): {}", describe_trap(&e)),
        )
    })?;
    use super::bindings::analytics::vigil::plugin::types::PluginKind;
    let declared = match m.kind {
        PluginKind::Analytics => Kind::Analytics,
        PluginKind::Rule => Kind::Rule,
        PluginKind::Output => Kind::Output,
    };
    if declared != kind {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the manifest says {declared:?} but the component exports the {kind:?} interface"
            ),
        ));
    }
    let schema: serde_json::Value = serde_json::from_str(&m.config_schema).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("the manifest's config-schema is not JSON: {e}"),
        )
    })?;
    jsonschema::validator_for(&schema).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("the manifest's config-schema is not a valid JSON Schema: {e}"),
        )
    })?;
    for c in &m.capabilities {
        if !matches!(c.as_str(), "http" | "state" | "files" | "inference") {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "the manifest asks for an unknown capability {c:?} (known: http, state, files, inference)"
                ),
            ));
        }
    }
    let limit = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    Ok(Manifest {
        name: limit(&m.name, 128),
        version: limit(&m.version, 64),
        kind,
        description: limit(&m.description, 2048),
        frames: m.frames.map(|f| FrameRequest {
            max_fps: if f.max_fps.is_finite() {
                f.max_fps.clamp(0.0, 120.0)
            } else {
                0.0
            },
            key_frames_only: f.key_frames_only,
        }),
        tick_interval_ms: m.tick_interval_ms.map(|t| t.max(10)),
        packets: m
            .packets
            .filter(|p| kind == Kind::Output && (p.video || p.audio))
            .map(|p| PacketRequest {
                video: p.video,
                audio: p.audio,
            }),
        config_schema: schema,
        capabilities: m.capabilities,
    })
}

/// Reads a `.wasm` file (bounded size).
pub fn read_wasm(path: &Path) -> Result<Vec<u8>> {
    const MAX: u64 = 256 << 20;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::new(ErrorKind::NotFound, format!("{}: {e}", path.display())))?;
    if meta.len() > MAX {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{}: {} bytes is larger than {MAX}",
                path.display(),
                meta.len()
            ),
        ));
    }
    std::fs::read(path)
        .map_err(|e| Error::new(ErrorKind::NotFound, format!("{}: {e}", path.display())))
}

impl std::fmt::Debug for Pre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pre")
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bound")
    }
}
