//! What a plugin instance's store holds, and the host side of the `vigil:plugin`
//! interfaces (`host`, `state`, `frames`) plus the WASI and `wasi:http` views.
//! Each function checks the instance's grants; a denied capability is a
//! `result` error with a reason, never a trap.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::analytics::vigil::plugin::{frames, host, inference, state, types};
use super::kv::Kv;
use crate::codec::Picture;
use crate::events::{self, Event, Events};

/// A frame as the `frames.frame` resource sees it.
#[derive(Debug)]
pub struct FrameData {
    pub camera: Arc<str>,
    pub picture: Arc<Picture>,
    pub media_time_ns: i64,
    pub wall_ms: u64,
    pub key: bool,
}

/// Per-instance facts and counters shared by the store data and the actor.
#[derive(Debug)]
pub struct InstanceCtx {
    pub plugin: String,
    pub camera: String,
    pub grants: Vec<String>,
    pub events: Arc<Events>,
    pub kv: Arc<Kv>,
    pub events_per_second: u32,
    pub emitted: AtomicU64,
    pub emit_rejected: AtomicU64,
    /// Largest linear memory the instance reached, bytes.
    pub memory_peak: AtomicU64,
    /// Model runs this instance completed, and runs refused or failed.
    pub inference_runs: AtomicU64,
    pub inference_failed: AtomicU64,
    pub bucket: Mutex<TokenBucket>,
    /// The host's models and inference pool.
    pub inference: Arc<crate::inference::Inference>,
    /// The camera's media clock (events get the wall time of their frame).
    pub clock: Arc<crate::ingest::MediaClock>,
}

impl InstanceCtx {
    fn granted(&self, cap: &str) -> bool {
        self.grants.iter().any(|g| g == cap)
    }
}

/// Event budget: `rate` per second, bursts of twice that.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32) -> Self {
        Self {
            tokens: f64::from(rate) * 2.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let cap = f64::from(rate) * 2.0;
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * f64::from(rate)).min(cap);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Memory limit that also records the peak.
pub struct Limiter {
    pub inner: StoreLimits,
    pub ctx: Arc<InstanceCtx>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if ok {
            self.ctx
                .memory_peak
                .fetch_max(desired as u64, Ordering::Relaxed);
        }
        Ok(ok)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

/// `wasi:http` hooks: requests only to the allow-listed hosts, with bounded
/// timeouts (a plugin waiting on the network must not hold its call forever).
pub struct HttpHooks {
    pub allowed: Arc<HashSet<String>>,
    pub granted: bool,
    pub denied: Arc<AtomicU64>,
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the allow-list admits `uri`: an entry `host` admits any port of that
/// host, an entry `host:port` only that port (the scheme's default when the URL
/// has none).
fn allows(allowed: &HashSet<String>, uri: &http::Uri) -> bool {
    let Some(host) = uri.host().map(|h| h.to_ascii_lowercase()) else {
        return false;
    };
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    allowed.contains(&host) || port.is_some_and(|p| allowed.contains(&format!("{host}:{p}")))
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let allowed = self.granted && allows(&self.allowed, request.uri());
        if !allowed {
            self.denied.fetch_add(1, Ordering::Relaxed);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let o = options.unwrap_or_default();
        let clamp = |t: Option<Duration>| Some(t.map_or(HTTP_TIMEOUT, |t| t.min(HTTP_TIMEOUT)));
        let options = Some(wasmtime_wasi_http::RequestOptions {
            connect_timeout: clamp(o.connect_timeout),
            first_byte_timeout: clamp(o.first_byte_timeout),
            between_bytes_timeout: clamp(o.between_bytes_timeout),
        });
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            ))
        })
    }
}

/// The data of one plugin instance's store.
pub struct PluginState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: HttpHooks,
    pub limiter: Limiter,
    pub ctx: Arc<InstanceCtx>,
    /// The current call must end by then (checked on every epoch tick).
    pub deadline: Instant,
    /// The frame being processed (for event snapshots and media times).
    pub current_frame: Option<(Arc<Picture>, i64)>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

fn severity(s: types::Severity) -> events::Severity {
    match s {
        types::Severity::Info => events::Severity::Info,
        types::Severity::Warning => events::Severity::Warning,
        types::Severity::Critical => events::Severity::Critical,
    }
}

/// Converts a stored event for rule and output plugins.
pub fn to_wit_event(e: &Event) -> types::Event {
    types::Event {
        id: e.id.clone(),
        camera: e.camera.clone(),
        plugin: e.plugin.clone(),
        kind: e.kind.clone(),
        severity: match e.severity {
            events::Severity::Info => types::Severity::Info,
            events::Severity::Warning => types::Severity::Warning,
            events::Severity::Critical => types::Severity::Critical,
        },
        media_start_ns: e.media_start_ns,
        media_end_ns: e.media_end_ns,
        wall_ms: e.wall_ms,
        detections: e
            .detections
            .iter()
            .map(|d| types::Detection {
                label: d.label.clone(),
                score: d.score,
                bbox: types::Bbox {
                    x: d.bbox.x,
                    y: d.bbox.y,
                    width: d.bbox.width,
                    height: d.bbox.height,
                },
                track_id: d.track_id,
            })
            .collect(),
        attributes: e
            .attributes
            .iter()
            .map(|(k, v)| types::Attribute {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        has_snapshot: e.has_snapshot,
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    async fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        let msg: String = message.chars().take(4096).collect();
        let (p, c) = (&self.ctx.plugin, &self.ctx.camera);
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin = %p, camera = %c, "{msg}"),
            host::LogLevel::Debug => tracing::debug!(plugin = %p, camera = %c, "{msg}"),
            host::LogLevel::Info => tracing::info!(plugin = %p, camera = %c, "{msg}"),
            host::LogLevel::Warn => tracing::warn!(plugin = %p, camera = %c, "{msg}"),
            host::LogLevel::Error => tracing::error!(plugin = %p, camera = %c, "{msg}"),
        }
        Ok(())
    }

    async fn emit(&mut self, ev: types::NewEvent) -> wasmtime::Result<Result<(), String>> {
        let ctx = self.ctx.clone();
        if !ctx.bucket.lock().unwrap().take(ctx.events_per_second) {
            ctx.emit_rejected.fetch_add(1, Ordering::Relaxed);
            return Ok(Err(format!(
                "event budget exceeded: at most {} events per second per instance",
                ctx.events_per_second
            )));
        }
        let wall_ms = events::now_ms();
        let frame_time = self.current_frame.as_ref().map(|(_, t)| *t);
        let media_start_ns = ev.media_start_ns.or(frame_time);
        let event = Event {
            id: events::new_id(wall_ms),
            camera: ctx.camera.clone(),
            plugin: ctx.plugin.clone(),
            kind: ev.kind,
            severity: severity(ev.severity),
            media_start_ns,
            media_end_ns: ev.media_end_ns,
            media_wall_ms: media_start_ns.and_then(|m| ctx.clock.wall_of(m)),
            wall_ms,
            detections: ev
                .detections
                .into_iter()
                .map(|d| events::Detection {
                    label: d.label,
                    score: d.score,
                    bbox: events::BBox {
                        x: d.bbox.x,
                        y: d.bbox.y,
                        width: d.bbox.width,
                        height: d.bbox.height,
                    },
                    track_id: d.track_id,
                })
                .collect(),
            attributes: ev
                .attributes
                .into_iter()
                .map(|a| (a.key, a.value))
                .collect(),
            has_snapshot: false,
        };
        let snapshot = if ev.snapshot {
            self.current_frame
                .as_ref()
                .and_then(|(p, _)| snapshot_jpeg(p))
        } else {
            None
        };
        // `Ok` to the plugin means committed: a crash loses nothing it was told
        // was stored.
        match ctx.events.store_or_refuse(event, snapshot).await {
            Ok(()) => {
                ctx.emitted.fetch_add(1, Ordering::Relaxed);
                Ok(Ok(()))
            }
            Err(e) => {
                ctx.emit_rejected.fetch_add(1, Ordering::Relaxed);
                Ok(Err(e.message().to_string()))
            }
        }
    }

    async fn camera(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.camera.clone())
    }
}

/// A JPEG of the current frame for an event (640 wide at most).
fn snapshot_jpeg(p: &Picture) -> Option<Bytes> {
    let scaled;
    let pic = if p.width > 640 {
        scaled = crate::codec::scale(p, 640).ok()?;
        &scaled
    } else {
        p
    };
    crate::codec::JpegEncoder::new(75)
        .ok()?
        .encode(pic)
        .ok()
        .map(Bytes::from)
}

const NO_STATE: &str = "the state capability is not granted to this plugin";

impl state::Host for PluginState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        if !self.ctx.granted("state") {
            return Ok(Err(NO_STATE.into()));
        }
        Ok(self
            .ctx
            .kv
            .get(&self.ctx.plugin, &self.ctx.camera, &key)
            .map_err(|e| e.message().to_string()))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if !self.ctx.granted("state") {
            return Ok(Err(NO_STATE.into()));
        }
        Ok(self
            .ctx
            .kv
            .set(&self.ctx.plugin, &self.ctx.camera, &key, &value)
            .map_err(|e| e.message().to_string()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        if !self.ctx.granted("state") {
            return Ok(Err(NO_STATE.into()));
        }
        Ok(self
            .ctx
            .kv
            .delete(&self.ctx.plugin, &self.ctx.camera, &key)
            .map_err(|e| e.message().to_string()))
    }
}

impl frames::Host for PluginState {}

impl frames::HostFrame for PluginState {
    async fn camera(&mut self, f: Resource<FrameData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&f)?.camera.to_string())
    }
    async fn width(&mut self, f: Resource<FrameData>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&f)?.picture.width)
    }
    async fn height(&mut self, f: Resource<FrameData>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&f)?.picture.height)
    }
    async fn media_time_ns(&mut self, f: Resource<FrameData>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&f)?.media_time_ns)
    }
    async fn wall_time_ms(&mut self, f: Resource<FrameData>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&f)?.wall_ms)
    }
    async fn is_key(&mut self, f: Resource<FrameData>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&f)?.key)
    }
    async fn pixels(
        &mut self,
        f: Resource<FrameData>,
        format: types::PixelFormat,
        max_width: u32,
    ) -> wasmtime::Result<Result<frames::Image, String>> {
        let picture = self.table.get(&f)?.picture.clone();
        let converted = match format {
            types::PixelFormat::Gray8 => crate::codec::gray8(&picture, max_width),
            types::PixelFormat::Rgb8 => crate::codec::rgb8(&picture, max_width),
        };
        Ok(converted
            .map(|(width, height, data)| frames::Image {
                width,
                height,
                format,
                data,
            })
            .map_err(|e| e.message().to_string()))
    }
    async fn drop(&mut self, f: Resource<FrameData>) -> wasmtime::Result<()> {
        // The guest only ever borrows frames; the host deletes them after the call.
        let _ = self.table.delete(f);
        Ok(())
    }
}

/// A model a plugin loaded (the shared plan).
#[derive(Debug)]
pub struct ModelHandle(pub Arc<crate::inference::Model>);

fn dims(shape: &[usize]) -> Vec<u32> {
    shape.iter().map(|&d| d as u32).collect()
}

impl inference::Host for PluginState {
    async fn load(
        &mut self,
        source: inference::ModelSource,
    ) -> wasmtime::Result<Result<Resource<ModelHandle>, String>> {
        if !self.ctx.granted("inference") {
            return Ok(Err(
                "the inference capability is not granted to this plugin".into(),
            ));
        }
        let inf = self.ctx.inference.clone();
        let t0 = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || {
            let bytes = match source {
                inference::ModelSource::Bytes(b) => b,
                inference::ModelSource::Installed(name) => inf.installed(&name)?,
            };
            inf.load(&bytes)
        })
        .await;
        // Building a plan is the host's work, not the plugin's: it does not
        // count against the call's deadline.
        self.deadline += t0.elapsed();
        match loaded {
            Ok(Ok(m)) => Ok(Ok(self.table.push(ModelHandle(m))?)),
            Ok(Err(e)) => Ok(Err(e.message().to_string())),
            Err(e) => Ok(Err(format!("model loading failed: {e}"))),
        }
    }
}

impl inference::HostModel for PluginState {
    async fn input(&mut self, m: Resource<ModelHandle>) -> wasmtime::Result<inference::TensorInfo> {
        let i = &self.table.get(&m)?.0.input;
        Ok(inference::TensorInfo {
            name: i.name.clone(),
            shape: dims(&i.shape),
        })
    }
    async fn outputs(
        &mut self,
        m: Resource<ModelHandle>,
    ) -> wasmtime::Result<Vec<inference::TensorInfo>> {
        Ok(self
            .table
            .get(&m)?
            .0
            .outputs
            .iter()
            .map(|o| inference::TensorInfo {
                name: o.name.clone(),
                shape: dims(&o.shape),
            })
            .collect())
    }
    async fn run_frame(
        &mut self,
        m: Resource<ModelHandle>,
        f: Resource<FrameData>,
        spec: inference::InputSpec,
    ) -> wasmtime::Result<Result<inference::RunOutput, String>> {
        use crate::inference::{Fit, InputSpec, Layout};
        let model = self.table.get(&m)?.0.clone();
        let picture = self.table.get(&f)?.picture.clone();
        let spec = InputSpec {
            layout: match spec.layout {
                inference::Layout::Nchw => Layout::Nchw,
                inference::Layout::Nhwc => Layout::Nhwc,
            },
            bgr: spec.bgr,
            fit: match spec.fit {
                inference::Fit::Stretch => Fit::Stretch,
                inference::Fit::Letterbox => Fit::Letterbox,
            },
            scale: spec.scale,
            mean: [spec.mean.0, spec.mean.1, spec.mean.2],
            std: [spec.std.0, spec.std.1, spec.std.2],
            pad: spec.pad,
        };
        if spec.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Ok(Err("input-spec: std must be finite and not 0".into()));
        }
        // Waiting counts against the call's deadline.
        let left = self.deadline.saturating_duration_since(Instant::now());
        let inf = self.ctx.inference.clone();
        let ran = inf.run_picture(model, picture, spec, left).await;
        let counter = if ran.is_ok() {
            &self.ctx.inference_runs
        } else {
            &self.ctx.inference_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(match ran {
            Ok((tensors, p)) => Ok(inference::RunOutput {
                tensors: tensors
                    .into_iter()
                    .map(|t| inference::Tensor {
                        name: t.name,
                        shape: dims(&t.shape),
                        data: t.data,
                    })
                    .collect(),
                placement: inference::Placement {
                    left: p.left,
                    top: p.top,
                    width: p.width,
                    height: p.height,
                },
            }),
            Err(e) => Err(e.message().to_string()),
        })
    }
    async fn drop(&mut self, m: Resource<ModelHandle>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

impl std::fmt::Debug for HttpHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpHooks")
    }
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginState")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_hosts_and_host_ports() {
        let list: HashSet<String> = ["hooks.example.com", "127.0.0.1:8080", "[::1]:9000"]
            .into_iter()
            .map(String::from)
            .collect();
        let ok = |u: &str| allows(&list, &u.parse().unwrap());
        assert!(ok("https://hooks.example.com/x"));
        assert!(
            ok("http://HOOKS.example.com:8443/x"),
            "any port of a bare host"
        );
        assert!(ok("http://127.0.0.1:8080/hook"));
        assert!(
            !ok("http://127.0.0.1:8081/hook"),
            "another port of a host:port entry"
        );
        assert!(!ok("http://127.0.0.1/hook"), "default port 80 is not 8080");
        assert!(ok("http://[::1]:9000/"));
        assert!(!ok("http://evil.example.com/"));
        assert!(!ok("http://hooks.example.com.evil.net/"));
    }
}
