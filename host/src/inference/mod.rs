//! Neural-network inference on the host with tract-onnx: the only module of
//! the host that imports tract (the `vigil-kernels` crate, `host/kernels/`,
//! provides the operators it swaps in). Plugins reach it through the `vigil:plugin/inference` WIT
//! interface (see `plugins::host_impl`).
//!
//! - A model is loaded from ONNX bytes once: the optimized plan is shared by
//!   every instance that loads the same bytes (cache by SHA-256, kept while
//!   anyone holds it).
//! - The input tensor is built on the host from a decoded picture: scaled
//!   (stretched or letterboxed) to the model's input size, RGB or BGR, NCHW or
//!   NHWC, `value = (pixel × scale − mean[c]) / std[c]` — the plugin never copies
//!   pixels in.
//! - Runs go to a bounded pool of worker threads, off ingest and off the plugin
//!   runtime; a full queue is refused at once (the caller drops that frame).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tract_onnx::prelude::*;

use crate::codec::{self, Picture};
use crate::error::{Error, ErrorKind, Result};

pub use vigil_kernels::{Replaced, accelerate};

/// `[inference]` settings.
#[derive(Clone, Debug)]
pub struct InferenceConfig {
    /// Worker threads running models (runs in parallel).
    pub threads: usize,
    /// Threads one run may use (tract's multithreaded executor): lower latency
    /// per frame, same total CPU.
    pub threads_per_run: usize,
    /// Runs waiting for a worker beyond which new ones are refused.
    pub queue: usize,
    /// Largest model accepted, in bytes.
    pub max_model_bytes: usize,
    /// Where operator-installed models live (`<name>.onnx`).
    pub models_dir: std::path::PathBuf,
    /// Run max-pools and stride-1 convolutions on Vigil's own kernels
    /// (`vigil_kernels::accelerate`) instead of tract's; false leaves every
    /// operator to tract.
    pub vigil_kernels: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            threads_per_run: 1,
            queue: 4,
            max_model_bytes: 256 << 20,
            models_dir: "data/models".into(),
            vigil_kernels: true,
        }
    }
}

/// Memory layout of an image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// How the picture is fitted into the model's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Scaled to the input size, aspect ratio not kept.
    Stretch,
    /// Scaled to fit, aspect kept, centred, the rest filled with `pad`.
    Letterbox,
}

/// How to build an image input from a picture.
#[derive(Clone, Debug)]
pub struct InputSpec {
    pub layout: Layout,
    pub bgr: bool,
    pub fit: Fit,
    /// Multiplies each 0–255 pixel value first.
    pub scale: f32,
    /// Per channel (in the model's channel order), subtracted after scaling.
    pub mean: [f32; 3],
    /// Per channel, divides last.
    pub std: [f32; 3],
    /// Letterbox fill, 0–255 before scaling.
    pub pad: u8,
}

impl InputSpec {
    /// NCHW, RGB, letterboxed with grey (128), values in 0–1: what Darknet/YOLO
    /// models expect (the SDK's `InputSpec::letterbox_unit`).
    pub fn letterbox_unit() -> Self {
        InputSpec {
            layout: Layout::Nchw,
            bgr: false,
            fit: Fit::Letterbox,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad: 128,
        }
    }
}

/// Where the picture landed in the input, in input pixels: a point `(x, y)` of
/// the input is at `((x − left) / width, (y − top) / height)` of the picture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    pub left: f32,
    pub top: f32,
    pub width: f32,
    pub height: f32,
}

/// A tensor's name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// An output of a run.
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded, optimized model.
pub struct Model {
    pub digest: [u8; 32],
    plan: Arc<Plan>,
    pub input: TensorInfo,
    pub outputs: Vec<TensorInfo>,
    pub bytes: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("input", &self.input)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// Counters for status and `/metrics`.
#[derive(Debug, Default)]
pub struct InferenceStats {
    pub runs: AtomicU64,
    pub run_ns_total: AtomicU64,
    /// Runs refused because the queue was full.
    pub saturated: AtomicU64,
    pub failures: AtomicU64,
    pub models_loaded: AtomicU64,
}

type Job = Box<dyn FnOnce() + Send>;

/// The models and the worker pool.
pub struct Inference {
    pub cfg: InferenceConfig,
    cache: Mutex<HashMap<[u8; 32], Weak<Model>>>,
    jobs: Mutex<Option<std::sync::mpsc::SyncSender<Job>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub stats: Arc<InferenceStats>,
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inference")
    }
}

fn err(kind: ErrorKind, m: impl Into<String>) -> Error {
    Error::new(kind, m.into())
}

impl Inference {
    pub fn new(cfg: InferenceConfig) -> Result<Arc<Inference>> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(cfg.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let rx = rx.clone();
            let h = std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap().recv();
                        match job {
                            // A panic in a run (a bug in tract on odd input)
                            // loses that run, not the worker.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| err(ErrorKind::Internal, format!("inference worker: {e}")))?;
            workers.push(h);
        }
        Ok(Arc::new(Inference {
            cfg,
            cache: Mutex::default(),
            jobs: Mutex::new(Some(tx)),
            workers: Mutex::new(workers),
            stats: Arc::default(),
        }))
    }

    /// Stops the workers after the queued runs.
    pub fn shutdown(&self) {
        self.jobs.lock().unwrap().take();
        for h in self.workers.lock().unwrap().drain(..) {
            let _ = h.join();
        }
    }

    /// The bytes of an operator-installed model: `<models_dir>/<name>.onnx`.
    pub fn installed(&self, name: &str) -> Result<Vec<u8>> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.');
        if !ok {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!("bad model name {name:?}: use letters, digits, '-', '_' and '.'"),
            ));
        }
        let path = self.cfg.models_dir.join(format!("{name}.onnx"));
        let meta = std::fs::metadata(&path).map_err(|_| {
            err(
                ErrorKind::NotFound,
                format!(
                    "no model {name:?} installed (looked for {})",
                    path.display()
                ),
            )
        })?;
        self.check_size(meta.len() as usize)?;
        std::fs::read(&path)
            .map_err(|e| err(ErrorKind::Unavailable, format!("{}: {e}", path.display())))
    }

    fn check_size(&self, n: usize) -> Result<()> {
        if n > self.cfg.max_model_bytes {
            return Err(err(
                ErrorKind::InvalidArgument,
                format!(
                    "the model is {:.1} MiB, more than the {} MiB limit ([inference] max_model_mib)",
                    n as f64 / 1048576.0,
                    self.cfg.max_model_bytes >> 20
                ),
            ));
        }
        Ok(())
    }

    /// Loads ONNX bytes (CPU-heavy the first time: call from a blocking
    /// thread); the same bytes give the same shared model.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Model>> {
        use sha2::Digest;
        self.check_size(bytes.len())?;
        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if let Some(m) = self
            .cache
            .lock()
            .unwrap()
            .get(&digest)
            .and_then(Weak::upgrade)
        {
            return Ok(m);
        }
        let model = Arc::new(build(bytes, digest, &self.cfg)?);
        self.stats.models_loaded.fetch_add(1, Ordering::Relaxed);
        let mut cache = self.cache.lock().unwrap();
        cache.retain(|_, w| w.strong_count() > 0);
        // Another caller may have built it meanwhile: keep one.
        if let Some(m) = cache.get(&digest).and_then(Weak::upgrade) {
            return Ok(m);
        }
        cache.insert(digest, Arc::downgrade(&model));
        Ok(model)
    }

    /// Runs `model` on `picture` (input built per `spec`) on the pool; waits at
    /// most `timeout`. Refused at once when the pool's queue is full.
    pub async fn run_picture(
        &self,
        model: Arc<Model>,
        picture: Arc<Picture>,
        spec: InputSpec,
        timeout: Duration,
    ) -> Result<(Vec<Output>, Placement)> {
        let (tx, rx) = oneshot::channel();
        let stats = self.stats.clone();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return; // the caller gave up (its deadline passed): skip the work
            }
            let t0 = Instant::now();
            let r = input_tensor(&model, &picture, &spec)
                .and_then(|(t, placement)| Ok((model.run(t)?, placement)));
            stats
                .run_ns_total
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            stats.runs.fetch_add(1, Ordering::Relaxed);
            if r.is_err() {
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.send(r);
        });
        self.submit(job)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(err(
                ErrorKind::Internal,
                "the inference run was lost (it failed on the worker, or the pool stopped)",
            )),
            Err(_) => Err(err(
                ErrorKind::DeadlineExceeded,
                format!(
                    "inference did not finish within {} ms (the rest of the call's deadline)",
                    timeout.as_millis()
                ),
            )),
        }
    }

    fn submit(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().unwrap();
        let Some(tx) = jobs.as_ref() else {
            return Err(err(ErrorKind::Unavailable, "the inference pool stopped"));
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.stats.saturated.fetch_add(1, Ordering::Relaxed);
                Err(err(
                    ErrorKind::Unavailable,
                    format!(
                        "inference pool saturated ({} runs queued for {} threads): frame skipped",
                        self.cfg.queue, self.cfg.threads
                    ),
                ))
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                Err(err(ErrorKind::Unavailable, "the inference pool stopped"))
            }
        }
    }
}

/// A model's optimized plan, and the thread pool its runs split their
/// operators over (`threads_per_run` > 1).
#[derive(Debug)]
pub struct Plan {
    pub plan: Arc<TypedSimplePlan>,
    executor: Option<tract_linalg::multithread::Executor>,
    /// Whether a run is inside the pool (see [`Plan::enter`]).
    entered: std::sync::atomic::AtomicBool,
}

impl Plan {
    /// Runs `f` (runs of the plan) on a thread of the plan's pool, when it
    /// has one. A run's parallel operators then split their work from a pool
    /// thread, waking the other, instead of each handing its work from the
    /// calling thread to the pool and waiting (docs/benchmarks.md).
    ///
    /// One run at a time enters: a pool thread waiting inside one run's
    /// operator may pick up another queued job, and a whole second run
    /// nested there would hold the first one up until it ends. Other runs
    /// meanwhile go on from their own threads, as without `enter`.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
        let Some(tract_linalg::multithread::Executor::MultiThread(pool)) = &self.executor else {
            return f();
        };
        if self
            .entered
            .compare_exchange(false, true, AcqRel, Acquire)
            .is_err()
        {
            return f();
        }
        struct Leave<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.store(false, Release);
            }
        }
        let _leave = Leave(&self.entered);
        pool.install(f)
    }
}

/// tract's plan for a typed model as the host runs it: simplified, with
/// Vigil's kernels swapped in (unless `vigil_kernels` is off; a model the
/// rewrite trips on keeps tract's operators), optimized, and planned for
/// `threads_per_run` threads. `examples/profile_model.rs` times this plan.
pub fn plan(typed: TypedModel, cfg: &InferenceConfig) -> Result<Plan> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        err(ErrorKind::InvalidArgument, format!("{what}: {e:#}"))
    };
    // Vigil's kernels go in before tract declutters the model: decluttering
    // turns 1×1 convolutions into matrix products, which they run faster.
    let mut typed = typed;
    if cfg.vigil_kernels {
        match accelerate(typed.clone()) {
            Ok((model, replaced)) => {
                tracing::debug!(?replaced, "inference: operators on Vigil's kernels");
                typed = model;
            }
            Err(e) => tracing::warn!("inference: Vigil's kernels left out for this model: {e:#}"),
        }
    }
    let optimized = typed
        .into_decluttered()
        .map_err(|e| bad("cannot simplify the model", &e))?
        .into_optimized()
        .map_err(|e| bad("cannot optimize the model", &e))?;
    let options = tract_onnx::tract_core::runtime::RunOptions {
        executor: (cfg.threads_per_run > 1).then(|| {
            tract_linalg::multithread::Executor::multithread_with_name(
                cfg.threads_per_run,
                "inference-mt",
            )
        }),
        ..Default::default()
    };
    let plan = optimized
        .into_runnable_with_options(&options)
        .map_err(|e| bad("cannot plan the model", &e))?;
    Ok(Plan {
        plan,
        executor: options.executor,
        entered: false.into(),
    })
}

/// Largest side of an image input accepted (the input tensor is built per run).
const MAX_SIDE: usize = 4096;

/// Parses, checks and optimizes a model.
fn build(bytes: &[u8], digest: [u8; 32], cfg: &InferenceConfig) -> Result<Model> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        err(ErrorKind::InvalidArgument, format!("{what}: {e}"))
    };
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| bad("not an ONNX model", &format!("{e:#}")))?;
    let inference_model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(|e| bad("unsupported ONNX model", &format!("{e:#}")))?;
    if inference_model.inputs.len() != 1 {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "the model has {} inputs; one image input is supported",
                inference_model.inputs.len()
            ),
        ));
    }
    let typed = inference_model
        .into_typed()
        .map_err(|e| bad("cannot type the model", &format!("{e:#}")))?;
    let fact = typed
        .input_fact(0)
        .map_err(|e| bad("model input", &format!("{e:#}")))?;
    let Some(shape) = fact.shape.as_concrete().map(|s| s.to_vec()) else {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "the model's input shape {:?} is not fixed: export it with a fixed size",
                fact.shape
            ),
        ));
    };
    if fact.datum_type != f32::datum_type() {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "the model's input is {:?}; f32 is supported",
                fact.datum_type
            ),
        ));
    }
    if shape.len() == 4 && shape.iter().any(|&d| d == 0 || d > MAX_SIDE) {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("the model's input shape {shape:?} has a side of 0 or over {MAX_SIDE}"),
        ));
    }
    if shape.len() != 4 || shape[0] != 1 || !(shape[1] == 3 || shape[3] == 3) {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("the model's input shape {shape:?} is not an image (1×3×H×W or 1×H×W×3)"),
        ));
    }
    let input = TensorInfo {
        name: typed.node(typed.inputs[0].node).name.clone(),
        shape,
    };
    let plan = Arc::new(plan(typed, cfg)?);
    let optimized = plan.plan.model();
    let outputs = optimized
        .outputs
        .iter()
        .map(|o| {
            let f = optimized.outlet_fact(*o).map_err(|e| bad("output", &e))?;
            Ok(TensorInfo {
                name: optimized.node(o.node).name.clone(),
                shape: f
                    .shape
                    .as_concrete()
                    .map(|s| s.to_vec())
                    .unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Model {
        digest,
        plan,
        input,
        outputs,
        bytes: bytes.len(),
    })
}

impl Model {
    /// Input (height, width) and whether it is NCHW.
    pub fn image_size(&self) -> (usize, usize, Layout) {
        let s = &self.input.shape;
        if s[1] == 3 {
            (s[2], s[3], Layout::Nchw)
        } else {
            (s[1], s[2], Layout::Nhwc)
        }
    }

    /// Runs on a ready input tensor (on the calling thread).
    pub fn run(&self, input: Tensor) -> Result<Vec<Output>> {
        let out = self
            .plan
            .enter(|| self.plan.plan.run(tvec!(input.into())))
            .map_err(|e| err(ErrorKind::Internal, format!("inference failed: {e:#}")))?;
        out.iter()
            .zip(&self.outputs)
            .map(|(t, info)| {
                let view = t.to_plain_array_view::<f32>().map_err(|e| {
                    err(
                        ErrorKind::InvalidArgument,
                        format!("output {}: {e} (f32 outputs are supported)", info.name),
                    )
                })?;
                Ok(Output {
                    name: info.name.clone(),
                    shape: view.shape().to_vec(),
                    data: view.iter().copied().collect(),
                })
            })
            .collect()
    }
}

/// Builds the model's input from a picture: scaled (on the host, SIMD), in the
/// model's layout, channel order and normalization.
pub fn input_tensor(model: &Model, p: &Picture, spec: &InputSpec) -> Result<(Tensor, Placement)> {
    let (h, w, layout) = model.image_size();
    if layout != spec.layout {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!(
                "the model's input {:?} is {:?}, the request says {:?}",
                model.input.shape, layout, spec.layout
            ),
        ));
    }
    let (cw, ch) = match spec.fit {
        Fit::Stretch => (w, h),
        Fit::Letterbox => {
            let s = (w as f64 / f64::from(p.width)).min(h as f64 / f64::from(p.height));
            (
                ((f64::from(p.width) * s).round() as usize).clamp(1, w),
                ((f64::from(p.height) * s).round() as usize).clamp(1, h),
            )
        }
    };
    let (left, top) = ((w - cw) / 2, (h - ch) / 2);
    let scaled = codec::scale_to(p, cw as u32, ch as u32)?;
    let rgb = codec::to_rgb(&scaled);
    let norm = |c: usize, v: u8| (f32::from(v) * spec.scale - spec.mean[c]) / spec.std[c];
    let order = if spec.bgr { [2, 1, 0] } else { [0, 1, 2] };
    let mut data = vec![0f32; 3 * w * h];
    // Padding first, then the picture over it.
    for c in 0..3 {
        let v = norm(c, spec.pad);
        match layout {
            Layout::Nchw => data[c * w * h..(c + 1) * w * h].fill(v),
            Layout::Nhwc => data.iter_mut().skip(c).step_by(3).for_each(|x| *x = v),
        }
    }
    for y in 0..ch {
        let src = &rgb[y * cw * 3..(y + 1) * cw * 3];
        for x in 0..cw {
            let px = &src[x * 3..x * 3 + 3];
            let (ty, tx) = (top + y, left + x);
            for (c, &from) in order.iter().enumerate() {
                let v = norm(c, px[from]);
                match layout {
                    Layout::Nchw => data[c * w * h + ty * w + tx] = v,
                    Layout::Nhwc => data[(ty * w + tx) * 3 + c] = v,
                }
            }
        }
    }
    let shape = &model.input.shape;
    let tensor = Tensor::from_shape(shape, &data)
        .map_err(|e| err(ErrorKind::Internal, format!("input tensor: {e}")))?;
    Ok((
        tensor,
        Placement {
            left: left as f32,
            top: top as f32,
            width: cw as f32,
            height: ch as f32,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A flat picture of one colour (I420).
    fn flat(w: u32, h: u32, y: u8, u: u8, v: u8) -> Picture {
        let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
        Picture {
            width: w,
            height: h,
            y: vec![y; (w * h) as usize],
            u: vec![u; cw * ch],
            v: vec![v; cw * ch],
        }
    }

    fn spec(fit: Fit) -> InputSpec {
        InputSpec {
            fit,
            pad: 0,
            ..InputSpec::letterbox_unit()
        }
    }

    fn inference() -> Arc<Inference> {
        Inference::new(InferenceConfig {
            threads: 1,
            threads_per_run: 1,
            queue: 1,
            max_model_bytes: 1 << 20,
            models_dir: std::env::temp_dir(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn runs_of_a_multithreaded_plan_enter_its_pool_one_at_a_time() {
        use std::sync::atomic::Ordering::Relaxed;
        let cfg = InferenceConfig {
            threads_per_run: 2,
            ..Default::default()
        };
        let typed = tract_onnx::onnx()
            .model_for_read(&mut &fixture("mean-rgb-32.onnx")[..])
            .unwrap()
            .into_typed()
            .unwrap();
        let plan = plan(typed, &cfg).unwrap();
        // The first run enters; one started inside it runs where it is.
        let (outer, inner) = plan.enter(|| {
            let here = std::thread::current().id();
            (
                plan.entered.load(Relaxed),
                plan.enter(|| std::thread::current().id() == here),
            )
        });
        assert!(outer && inner);
        assert!(!plan.entered.load(Relaxed), "left after the run");
        // Runs from several threads at once all finish, with the right result.
        let input = || {
            Tensor::from(tract_ndarray::Array4::<f32>::from_elem(
                (1, 3, 32, 32),
                0.25,
            ))
        };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        let out = plan.enter(|| plan.plan.run(tvec!(input().into()))).unwrap();
                        let v = out[0].to_plain_array_view::<f32>().unwrap();
                        assert!(v.iter().all(|m| (m - 0.25).abs() < 1e-6), "{v:?}");
                    }
                });
            }
        });
        assert!(!plan.entered.load(Relaxed));
    }

    #[test]
    fn same_bytes_share_one_plan_and_the_input_is_built_on_the_host() {
        let inf = inference();
        let a = inf.load(&fixture("mean-rgb-32.onnx")).unwrap();
        let b = inf.load(&fixture("mean-rgb-32.onnx")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(inf.stats.models_loaded.load(Ordering::Relaxed), 1);
        assert_eq!(a.input.shape, vec![1, 3, 32, 32]);
        assert_eq!(a.outputs[0].shape, vec![1, 3]);
        // Grey (Y=126, U=V=128 → R=G=B=128): every channel's mean is 128/255.
        let (t, placement) =
            input_tensor(&a, &flat(64, 48, 126, 128, 128), &spec(Fit::Stretch)).unwrap();
        let out = a.run(t).unwrap();
        for m in &out[0].data {
            assert!((m - 128.0 / 255.0).abs() < 2.0 / 255.0, "{:?}", out[0].data);
        }
        assert_eq!(
            placement,
            Placement {
                left: 0.0,
                top: 0.0,
                width: 32.0,
                height: 32.0
            }
        );
        // Letterboxed 2:1 → a 32×16 band in the middle, black (pad 0) around:
        // the mean halves; BGR swaps the channels of a red picture.
        let red = flat(64, 32, 82, 90, 240);
        let (t, placement) = input_tensor(&a, &red, &spec(Fit::Letterbox)).unwrap();
        assert_eq!(
            placement,
            Placement {
                left: 0.0,
                top: 8.0,
                width: 32.0,
                height: 16.0
            }
        );
        let rgb = a.run(t).unwrap()[0].data.clone();
        assert!(rgb[0] > 0.4 && rgb[0] < 0.55 && rgb[2] < 0.05, "{rgb:?}");
        let mut s = spec(Fit::Letterbox);
        s.bgr = true;
        let (t, _) = input_tensor(&a, &red, &s).unwrap();
        let bgr = a.run(t).unwrap()[0].data.clone();
        assert!((bgr[2] - rgb[0]).abs() < 1e-6 && (bgr[0] - rgb[2]).abs() < 1e-6);
        inf.shutdown();
    }

    #[test]
    fn bad_models_are_refused_with_the_reason() {
        let inf = inference();
        let e = inf.load(b"this is not a model").unwrap_err().to_string();
        assert!(e.contains("not an ONNX model"), "{e}");
        let e = inf.load(&fixture("dynamic.onnx")).unwrap_err().to_string();
        assert!(e.contains("not fixed"), "{e}");
        let e = inf.load(&vec![0u8; 2 << 20]).unwrap_err().to_string();
        assert!(e.contains("more than the 1 MiB limit"), "{e}");
        let e = inf.installed("../etc/passwd").unwrap_err().to_string();
        assert!(e.contains("bad model name"), "{e}");
        let e = inf.installed("nope").unwrap_err().to_string();
        assert!(e.contains("no model \"nope\" installed"), "{e}");
        inf.shutdown();
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once() {
        let inf = inference();
        let model = inf.load(&fixture("mean-rgb-32.onnx")).unwrap();
        // Hold the only worker, then fill the one queue slot.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        inf.submit(Box::new(move || {
            let _ = started.send(());
            let _ = wait.recv();
        }))
        .unwrap();
        running.recv().unwrap();
        inf.submit(Box::new(|| {})).unwrap();
        let pic = Arc::new(flat(32, 32, 100, 128, 128));
        let t0 = Instant::now();
        let e = inf
            .run_picture(
                model.clone(),
                pic.clone(),
                spec(Fit::Stretch),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("saturated"), "{e}");
        assert!(t0.elapsed() < Duration::from_millis(100), "refusal waited");
        assert_eq!(inf.stats.saturated.load(Ordering::Relaxed), 1);
        release.send(()).unwrap();
        // Once the worker is free (and the queued job drained), runs go through.
        let deadline = Instant::now() + Duration::from_secs(5);
        let out = loop {
            match inf
                .run_picture(
                    model.clone(),
                    pic.clone(),
                    spec(Fit::Stretch),
                    Duration::from_secs(5),
                )
                .await
            {
                Ok((out, _)) => break out,
                Err(e) if Instant::now() < deadline => {
                    assert!(e.to_string().contains("saturated"), "{e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(out[0].shape, vec![1, 3]);
        inf.shutdown();
    }
}
