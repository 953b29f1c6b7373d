//! Vigil's own CPU kernels for the operators where tract is slow on
//! detector-shaped models, as tract operators. A crate of its own so that it is
//! optimized in the dev profile (tests, demo) like tract itself.
//!
//! Profiling YOLOv3-tiny at 416×416 on one thread (`examples/profile_model.rs`)
//! put 17 % of tract's time in its max-pool, 13 % in its direct convolution of
//! the first two layers and 67 % in im2col matrix products at 64–102 GFLOP/s,
//! against a peak of 117 GFLOP/s per core (docs/benchmarks.md).
//!
//! [`accelerate`] rewrites a typed model before tract declutters it (which
//! turns 1×1 convolutions into matrix products) and optimizes it; the model
//! file is unchanged, so other runtimes can run the very same one:
//! - every f32 NCHW or CHW two-dimensional group-1 `Conv` with stride 1,
//!   dilation 1, constant weights and bias (a cast of a constant counts), and
//!   output channels that fill a block but for at most an eighth becomes
//!   [`DirectConv`] on x86-64 CPUs. The input is padded into planes whose rows
//!   share their padding, and a register-blocked kernel computes a block of
//!   output channels × positions per call (the `Block`s): on AVX-512, 32
//!   channels × up to 13 positions of one row for outputs up to 64 wide, else
//!   8 channels × 32 positions of the input read flattened; on AVX2, 4 × 16.
//!   A last block that is not full computes zero weights and stores only its
//!   channels. A leaky ReLU after it (0 ≤ α ≤ 1) and a 2×2 stride-2 max-pool
//!   after that are computed in the same pass, so the convolution's
//!   full-size output is never written;
//! - every other f32 two-dimensional `MaxPool` (any kernel, stride and
//!   padding; no dilation, no index output) becomes [`MaxPool2d`]: a maximum
//!   down the window's rows, then across its columns, both vectorized.
//!
//! Both split their work over the run's executor (rayon, or
//! `tract_linalg::multithread::par_chunks_mut`), so `threads_per_run` applies.
//! Max-pool results are exact. The convolution sums in another order than
//! tract, so outputs differ in the last bits (the tests compare against
//! tract's own operators); one thread and two give the same bits.
//!
//! The convolution kernel is the crate's one use of SIMD intrinsics, hence of
//! `unsafe`: every pointer it reads and writes is checked by its caller against
//! the padded input's and the output's lengths (see the SAFETY notes).
#![allow(unsafe_code)]

use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// What [`accelerate`] replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Max-pools on [`MaxPool2d`].
    pub max_pools: usize,
    /// Convolutions on [`DirectConv`].
    pub convs: usize,
    /// Leaky ReLUs computed in the convolution before them.
    pub fused_activations: usize,
    /// 2×2/2 max-pools computed in the convolution before them.
    pub fused_pools: usize,
}

/// Replaces the operators Vigil has faster kernels for (see the crate docs).
/// Nodes that do not qualify are left to tract.
pub fn accelerate(model: TypedModel) -> TractResult<(TypedModel, Replaced)> {
    accelerate_with(model, Block::for_cpu)
}

/// Chooses a convolution's block for its output channels and width.
type Chooser = fn(usize, usize) -> Option<Block>;

/// [`accelerate`] with the convolutions' blocks chosen by `blocks` (tests run
/// the AVX2 block on CPUs that have AVX-512 too).
fn accelerate_with(mut model: TypedModel, blocks: Chooser) -> TractResult<(TypedModel, Replaced)> {
    let mut done = Replaced::default();
    for id in model.eval_order()? {
        let node = model.node(id);
        // A node fused into an earlier replacement is left without readers.
        let read = node.outputs.iter().any(|o| !o.successors.is_empty())
            || model.outputs.iter().any(|o| o.node == id);
        if !read {
            continue;
        }
        // The node whose output the new operator replaces: the convolution's
        // own, or that of the activation and pool fused into it.
        let mut last = id;
        let op: Option<Box<dyn TypedOp>> = if let Some(pool) = node.op_as::<MaxPool>() {
            MaxPool2d::for_node(&model, node, pool)?.map(|op| {
                done.max_pools += 1;
                Box::new(op) as _
            })
        } else if let Some(conv) = node.op_as::<Conv>() {
            match DirectConv::for_node(&model, node, conv, blocks)? {
                Some(mut op) => {
                    done.convs += 1;
                    if let Some((next, alpha)) = leaky_after(&model, last)? {
                        (op.alpha, last) = (alpha, next);
                        done.fused_activations += 1;
                    }
                    if let Some(next) = pool_after(&model, last, &op)? {
                        (op.pool, last) = (true, next);
                        done.fused_pools += 1;
                    }
                    Some(Box::new(op))
                }
                None => None,
            }
        } else {
            None
        };
        if let Some(op) = op {
            let node = model.node(id);
            let mut patch = TypedModelPatch::default();
            let x = patch.tap_model(&model, node.inputs[0])?;
            let y = patch.wire_node(&model.node(last).name, op, &[x])?[0];
            patch.shunt_outside(&model, OutletId::new(last, 0), y)?;
            patch.apply(&mut model)?;
        }
    }
    Ok((model, done))
}

/// The constant at `outlet`: a constant, or a cast of one (tract's ONNX
/// import casts a convolution's bias; decluttering folds it later).
fn konst(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Arc<Tensor>>> {
    use tract_onnx::tract_core::ops::cast::Cast;
    if let Some(k) = &model.outlet_fact(outlet)?.konst {
        return Ok(Some(k.clone()));
    }
    let node = model.node(outlet.node);
    if let (Some(cast), [input]) = (node.op_as::<Cast>(), &*node.inputs)
        && let Some(k) = &model.outlet_fact(*input)?.konst
    {
        return Ok(Some(k.cast_to_dt(cast.to)?.into_owned().into_arc_tensor()));
    }
    Ok(None)
}

/// The one node reading `id`'s single output, when nothing else does (not
/// even the model's outputs).
fn only_reader(model: &TypedModel, id: usize) -> Option<&TypedNode> {
    let node = model.node(id);
    let out = OutletId::new(id, 0);
    if node.outputs.len() != 1
        || node.outputs[0].successors.len() != 1
        || model.outputs.contains(&out)
    {
        return None;
    }
    let next = model.node(node.outputs[0].successors[0].node);
    (next.inputs.len() == 1 && next.outputs.len() == 1).then_some(next)
}

/// A leaky ReLU (0 ≤ α ≤ 1, so that it is `max(v, α·v)`) alone after `id`.
fn leaky_after(model: &TypedModel, id: usize) -> TractResult<Option<(usize, f32)>> {
    use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
    use tract_onnx::tract_core::ops::nn::LeakyRelu;
    let Some(next) = only_reader(model, id) else {
        return Ok(None);
    };
    let Some(ew) = next.op_as::<ElementWiseOp>() else {
        return Ok(None);
    };
    let Some(leaky) = ew.0.downcast_ref::<LeakyRelu>() else {
        return Ok(None);
    };
    let f32_out = model.outlet_fact(OutletId::new(next.id, 0))?.datum_type == f32::datum_type();
    Ok(((0.0..=1.0).contains(&leaky.alpha) && f32_out).then_some((next.id, leaky.alpha)))
}

/// A 2×2 max-pool of stride 2 without padding alone after `id`, over the
/// output `conv` makes.
fn pool_after(model: &TypedModel, id: usize, conv: &DirectConv) -> TractResult<Option<usize>> {
    let Some(next) = only_reader(model, id) else {
        return Ok(None);
    };
    let Some(pool) = next.op_as::<MaxPool>() else {
        return Ok(None);
    };
    let Some(op) = MaxPool2d::for_node(model, next, pool)? else {
        return Ok(None);
    };
    let (g, c) = (&op.g, &conv.g);
    let fits = (g.kh, g.kw, g.sh, g.sw, g.pad) == (2, 2, 2, 2, [0; 4])
        && (g.n, g.c, g.h, g.w, g.batch) == (c.n, conv.cout, c.oh, c.ow, c.batch)
        && (g.oh, g.ow) == (c.oh / 2, c.ow / 2);
    Ok(fits.then_some(next.id))
}

/// A two-dimensional window over an NCHW (or CHW) input of fixed shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Geometry {
    /// Whether the tensors have the batch axis (NCHW, else CHW with `n` 1).
    batch: bool,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    /// Padding: top, left, bottom, right.
    pad: [usize; 4],
}

impl Geometry {
    /// The window of `spec` over `input` when both are simple enough: f32,
    /// NCHW or CHW, two spatial axes, no dilation.
    fn of(spec: &PoolSpec, input: &TypedFact) -> Option<Geometry> {
        if input.datum_type != f32::datum_type()
            || spec.rank() != 2
            || spec.dilations().iter().any(|&d| d != 1)
        {
            return None;
        }
        let shape = input.shape.as_concrete()?;
        let (batch, n, c, h, w) = match (spec.data_format, shape) {
            (DataFormat::NCHW, &[n, c, h, w]) => (true, n, c, h, w),
            (DataFormat::CHW, &[c, h, w]) => (false, 1, c, h, w),
            _ => return None,
        };
        let (kernel, strides) = (&spec.kernel_shape, spec.strides());
        let dims = spec.padding.compute(&[h, w], kernel, &[1, 1], &strides);
        let g = Geometry {
            batch,
            n,
            c,
            h,
            w,
            oh: dims[0].convoluted,
            ow: dims[1].convoluted,
            kh: kernel[0],
            kw: kernel[1],
            sh: strides[0],
            sw: strides[1],
            pad: [
                dims[0].pad_before,
                dims[1].pad_before,
                dims[0].pad_after,
                dims[1].pad_after,
            ],
        };
        (n > 0 && c > 0 && g.oh > 0 && g.ow > 0 && g.kh > 0 && g.kw > 0).then_some(g)
    }

    /// The input's shape.
    fn input_shape(&self) -> TVec<usize> {
        self.shape(self.c, self.h, self.w)
    }

    /// A shape in this geometry's layout.
    fn shape(&self, c: usize, h: usize, w: usize) -> TVec<usize> {
        if self.batch {
            tvec![self.n, c, h, w]
        } else {
            tvec![c, h, w]
        }
    }
}

/// Whether `node`'s one output is f32 of `shape`, as the replacement makes.
fn same_output(model: &TypedModel, node: &TypedNode, shape: &[usize]) -> TractResult<bool> {
    let fact = model.outlet_fact(OutletId::new(node.id, 0))?;
    Ok(node.outputs.len() == 1
        && fact.datum_type == f32::datum_type()
        && fact.shape.as_concrete() == Some(shape))
}

// ---------------------------------------------------------------- max-pool

/// Max-pool over an NCHW f32 input (see the module docs). Out-of-range window
/// positions are ignored, as ONNX specifies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MaxPool2d {
    g: Geometry,
}

impl MaxPool2d {
    fn for_node(model: &TypedModel, node: &TypedNode, op: &MaxPool) -> TractResult<Option<Self>> {
        if op.with_index_outputs.is_some() || node.inputs.len() != 1 {
            return Ok(None);
        }
        let Some(g) = Geometry::of(&op.pool_spec, model.outlet_fact(node.inputs[0])?) else {
            return Ok(None);
        };
        let shape = g.shape(g.c, g.oh, g.ow);
        Ok(same_output(model, node, &shape)?.then_some(MaxPool2d { g }))
    }

    fn run(&self, x: &[f32], out: &mut [f32]) -> TractResult<()> {
        let g = &self.g;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        tract_linalg::multithread::par_chunks_mut(out, plane_out, x.len(), |first, chunk| {
            let mut row = vec![0f32; g.w];
            for (i, o) in chunk.chunks_mut(plane_out).enumerate() {
                pool_plane(&x[(first + i) * plane_in..][..plane_in], o, g, &mut row);
            }
            Ok(())
        })
    }
}

/// One channel: per output row, the maximum down the window's input rows
/// (whole rows, vectorized), then across each window's columns.
fn pool_plane(x: &[f32], out: &mut [f32], g: &Geometry, row: &mut [f32]) {
    let span = |o: usize, s: usize, p: usize, k: usize, len: usize| {
        let start = (o * s) as isize - p as isize;
        let lo = start.clamp(0, len as isize) as usize;
        let hi = (start + k as isize).clamp(0, len as isize) as usize;
        (lo, hi.max(lo))
    };
    for (oy, o) in out.chunks_exact_mut(g.ow).enumerate() {
        let (y0, y1) = span(oy, g.sh, g.pad[0], g.kh, g.h);
        if y0 == y1 {
            o.fill(f32::NEG_INFINITY);
            continue;
        }
        row.copy_from_slice(&x[y0 * g.w..][..g.w]);
        for y in y0 + 1..y1 {
            for (r, v) in row.iter_mut().zip(&x[y * g.w..][..g.w]) {
                *r = r.max(*v);
            }
        }
        if g.kw == 2 && g.sw == 2 && g.pad[1] == 0 && 2 * g.ow <= g.w {
            for (o, pair) in o.iter_mut().zip(row.chunks_exact(2)) {
                *o = pair[0].max(pair[1]);
            }
        } else if g.sw == 1 {
            // Stride 1: tap k of every window at once, over the outputs whose
            // tap falls inside the row.
            o.fill(f32::NEG_INFINITY);
            let left = g.pad[1];
            for k in 0..g.kw {
                let lo = left.saturating_sub(k);
                let hi = (g.w + left).saturating_sub(k).min(g.ow);
                if lo < hi {
                    let taps = &row[lo + k - left..][..hi - lo];
                    for (o, v) in o[lo..hi].iter_mut().zip(taps) {
                        *o = o.max(*v);
                    }
                }
            }
        } else {
            for (ox, o) in o.iter_mut().enumerate() {
                let (x0, x1) = span(ox, g.sw, g.pad[1], g.kw, g.w);
                *o = row[x0..x1].iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            }
        }
    }
}

impl Op for MaxPool2d {
    fn name(&self) -> StaticName {
        "VigilMaxPool2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.g)])
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2d {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let g = &self.g;
        ensure!(*input.shape() == *g.input_shape(), "unexpected input shape");
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every
        // output value (each output row of each plane).
        let mut out = unsafe { Tensor::uninitialized::<f32>(&g.shape(g.c, g.oh, g.ow))? };
        let mut view = out.try_as_plain_ram_mut()?;
        self.run(
            input.try_as_plain_ram()?.as_slice::<f32>()?,
            view.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for MaxPool2d {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.g;
        Ok(tvec!(f32::fact(g.shape(g.c, g.oh, g.ow))))
    }

    as_op!();
}

// ------------------------------------------------------------- convolution

/// The register block a [`DirectConv`] kernel computes per call: output
/// channels × positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Block {
    /// AVX-512F and VL: 32 vector registers, so 8 channels × 2 vectors of
    /// 16 positions (16 accumulators), with 8 × 24, 8 × 16 and 8 × 8 tiles
    /// of 8-lane vectors to finish a run.
    C8x32,
    /// AVX-512F, vectors over output channels: 32 channels (2 vectors) × up
    /// to 13 positions of one output row (26 accumulators), each input value
    /// broadcast. Tiles stay inside output rows, so nothing past a row's
    /// end is computed (a 13-wide layer has a padding column in 14).
    R32x13,
    /// AVX2 and FMA: 16 registers, so 4 channels × 2 vectors (8 accumulators).
    C4x16,
}

/// The largest block, for scratch space.
const MAX_BLOCK: usize = 32 * 13;

/// The widest output the row block takes: on YOLOv3-tiny at 416×416 it beat
/// the position blocks by 5–12 % on the 13-, 26- and 52-wide layers (which
/// waste a padding column in 14, 27 and 53 there) and lost 5–16 % at 104 and
/// 208 (docs/benchmarks.md).
const ROW_BLOCK_WIDTH: usize = 64;

/// Input a band of rows may span (see [`DirectConv::band_rows`]): a quarter
/// of a typical 1 MiB L2 cache.
const BAND_BYTES: usize = 256 << 10;

/// Multiply-adds below which a convolution runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 20;

impl Block {
    /// The best block this CPU runs for `cout` output channels `ow` wide,
    /// if any (see [`Block::pick`]).
    fn for_cpu(cout: usize, ow: usize) -> Option<Block> {
        Block::pick(Block::on_cpu(), cout, ow)
    }

    /// The first of `blocks` whose last, partial block adds at most an eighth
    /// of `cout` in channels computed and dropped (255 channels take 8 blocks
    /// of 32, the last one short), the row block only up to
    /// [`ROW_BLOCK_WIDTH`] wide.
    fn pick(blocks: impl IntoIterator<Item = Block>, cout: usize, ow: usize) -> Option<Block> {
        blocks.into_iter().find(|b| {
            cout.next_multiple_of(b.channels()) - cout <= cout / 8
                && (*b != Block::R32x13 || ow <= ROW_BLOCK_WIDTH)
        })
    }

    /// The blocks this CPU runs, best first.
    fn on_cpu() -> Vec<Block> {
        let mut blocks = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            if avx2 && has!("avx512f") && has!("avx512vl") {
                blocks.extend([Block::R32x13, Block::C8x32]);
            }
            if avx2 {
                blocks.push(Block::C4x16);
            }
        }
        blocks
    }

    fn channels(self) -> usize {
        match self {
            Block::R32x13 => 32,
            Block::C8x32 => 8,
            Block::C4x16 => 4,
        }
    }

    /// The tile at flat position `start` (row stride `wp`, `ow` outputs a
    /// row) when positions up to `end` remain: its length, and where the next
    /// starts. Blocks over positions take their own length, or the shortest
    /// in steps of 8 that covers the rest, across row ends; the row block
    /// stops at the row's end and goes on at the next row.
    fn next_tile(self, start: usize, end: usize, wp: usize, ow: usize) -> (usize, usize) {
        match self {
            Block::R32x13 => {
                let x0 = start % wp;
                let len = (ow - x0).min(self.positions());
                let next = if x0 + len == ow {
                    start - x0 + wp
                } else {
                    start + len
                };
                (len, next)
            }
            _ => {
                let len = (end - start).div_ceil(8).clamp(1, self.positions() / 8) * 8;
                (len, start + len)
            }
        }
    }

    fn positions(self) -> usize {
        match self {
            Block::R32x13 => 13,
            Block::C8x32 => 32,
            Block::C4x16 => 16,
        }
    }
}

/// Stride-1 group-1 convolution over an NCHW f32 input with constant weights
/// (see the module docs).
#[derive(Clone)]
pub struct DirectConv {
    g: Geometry,
    cout: usize,
    block: Block,
    /// Weights per block of output channels: `[⌈cout/k⌉][cin][kh·kw][k]`,
    /// `k` the block's channels (zeros past `cout`).
    packed: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    /// A leaky ReLU fused into the output (`max(v, α·v)`, 0 ≤ α ≤ 1); 1 is
    /// none.
    alpha: f32,
    /// A 2×2 max-pool of stride 2 fused into the output.
    pool: bool,
}

/// tract compares operators (to merge equal nodes): same geometry and
/// bit-identical weights.
impl PartialEq for DirectConv {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &[f32], b: &[f32]| {
            a.iter()
                .map(|f| f.to_bits())
                .eq(b.iter().map(|f| f.to_bits()))
        };
        self.g == other.g
            && self.cout == other.cout
            && self.block == other.block
            && self.alpha.to_bits() == other.alpha.to_bits()
            && self.pool == other.pool
            && (Arc::ptr_eq(&self.packed, &other.packed) || same(&self.packed, &other.packed))
            && same(&self.bias, &other.bias)
    }
}

impl Eq for DirectConv {}

impl std::fmt::Debug for DirectConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectConv")
            .field("geometry", &self.g)
            .field("cout", &self.cout)
            .field("block", &self.block)
            .field("alpha", &self.alpha)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl DirectConv {
    fn for_node(
        model: &TypedModel,
        node: &TypedNode,
        op: &Conv,
        blocks: Chooser,
    ) -> TractResult<Option<Self>> {
        if op.q_params.is_some()
            || op.group != 1
            || op.kernel_fmt != KernelFormat::OIHW
            || node.inputs.len() != 3
            || op.pool_spec.strides().iter().any(|&s| s != 1)
        {
            return Ok(None);
        }
        let cout = op.pool_spec.output_channels;
        let Some(g) = Geometry::of(&op.pool_spec, model.outlet_fact(node.inputs[0])?) else {
            return Ok(None);
        };
        let Some(block) = blocks(cout, g.ow) else {
            return Ok(None);
        };
        let (Some(kernel), Some(bias)) =
            (konst(model, node.inputs[1])?, konst(model, node.inputs[2])?)
        else {
            return Ok(None);
        };
        let taps = g.kh * g.kw;
        if kernel.datum_type() != f32::datum_type()
            || kernel.shape() != [cout, g.c, g.kh, g.kw]
            || bias.datum_type() != f32::datum_type()
            || !(bias.len() == 1 || bias.len() == cout)
            || !same_output(model, node, &g.shape(cout, g.oh, g.ow))?
        {
            return Ok(None);
        }
        let k = kernel.try_as_plain_ram()?.as_slice::<f32>()?;
        let co = block.channels();
        // The last block's channels past `cout` get zero weights and bias;
        // they are computed and dropped.
        let padded = cout.next_multiple_of(co);
        let mut packed = Vec::with_capacity(padded * g.c * taps);
        for first in (0..padded).step_by(co) {
            for ci in 0..g.c {
                for t in 0..taps {
                    for j in first..first + co {
                        packed.push(if j < cout {
                            k[(j * g.c + ci) * taps + t]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
        let b = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = (0..padded)
            .map(|o| match o < cout {
                true => b[if b.len() == 1 { 0 } else { o }],
                false => 0.0,
            })
            .collect();
        Ok(Some(DirectConv {
            g,
            cout,
            block,
            packed: Arc::new(packed),
            bias: Arc::new(bias),
            alpha: 1.0,
            pool: false,
        }))
    }

    /// The output's height and width (after the fused pool, if any).
    fn out_hw(&self) -> (usize, usize) {
        if self.pool {
            (self.g.oh / 2, self.g.ow / 2)
        } else {
            (self.g.oh, self.g.ow)
        }
    }

    /// The padded input's rows and row stride. Rows share their padding: the
    /// zeros after a row's data are the right padding of that row and the
    /// left padding of the next, so a row is `w + gap` long with `gap` the
    /// larger side (at least enough that an output row stays inside its input
    /// row's stride). A 3×3 kernel with padding 1 at 13 wide has a stride of
    /// 14, not 15: a fifteenth fewer positions computed and dropped.
    fn padded(&self) -> (usize, usize) {
        let g = &self.g;
        let [top, left, bottom, right] = g.pad;
        let gap = left.max(right).max((left + right + 1).saturating_sub(g.kw));
        (g.h + top + bottom, g.w + gap)
    }

    /// One padded plane's length for `rows` padded rows: `left` zeros (the
    /// first row's left padding), then `rows` rows of stride `wp`.
    fn plane(&self, rows: usize) -> usize {
        self.g.pad[1] + rows * self.padded().1
    }

    /// Padded rows `r0..r0 + rows` (see [`Self::padded`]) of every channel of
    /// one image `x`, as planes of [`Self::plane`]`(rows)` values in `dst`.
    /// Each value is written once, pads and rows together.
    fn pad_rows(&self, x: &[f32], r0: usize, rows: usize, dst: &mut [f32]) {
        let g = &self.g;
        let wp = self.padded().1;
        let [top, left, ..] = g.pad;
        let plane = self.plane(rows);
        assert!(x.len() == g.c * g.h * g.w && dst.len() == g.c * plane);
        for (src, dst) in x.chunks_exact(g.h * g.w).zip(dst.chunks_exact_mut(plane)) {
            let (lead, body) = dst.split_at_mut(left);
            lead.fill(0.0);
            for (r, row) in (r0..).zip(body.chunks_exact_mut(wp)) {
                match r.checked_sub(top).filter(|&sy| sy < g.h) {
                    Some(sy) => {
                        row[..g.w].copy_from_slice(&src[sy * g.w..][..g.w]);
                        row[g.w..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
    }

    /// Room in `buf` for `planes` planes of `rows` padded rows, with zeroed
    /// slack after the last plane for the reads of the last tiles (up to
    /// `positions + kw − 1 − left` values past it, see [`Part::check`]).
    /// `buf` is reused from run to run: a fresh buffer of megabytes costs a
    /// page fault a 4 KiB.
    fn padded_buf<'b>(&self, planes: usize, rows: usize, buf: &'b mut Vec<f32>) -> &'b mut [f32] {
        let body = planes * self.plane(rows);
        let total = body + self.block.positions() + self.g.kw;
        if buf.len() < total {
            buf.resize(total, 0.0);
        }
        buf[body..total].fill(0.0);
        &mut buf[..total]
    }

    /// Convolution rows a unit of work computes: bands of rows whose padded
    /// input fits in the L2 cache when the input is larger than the weights
    /// (the first layers, large and with few channels: a unit pads its band
    /// and runs every block of output channels over it while it is in cache),
    /// else whole planes (the weights are larger: every block's weights are
    /// read once). With several threads the bands come in a multiple of
    /// them, so that none is left with a short share.
    fn band_rows(&self, conv_rows: usize, threads: usize) -> usize {
        let g = &self.g;
        let (hp, wp) = self.padded();
        let step = if self.pool { 2 } else { 1 };
        if g.c * hp * wp <= self.packed.len() {
            return conv_rows.max(step);
        }
        let per_row = g.c * wp * std::mem::size_of::<f32>();
        let most = (BAND_BYTES / per_row).saturating_sub(g.kh - 1).max(step);
        let bands = conv_rows
            .div_ceil(most)
            .next_multiple_of(threads.max(1))
            .min(conv_rows.div_ceil(step));
        conv_rows.div_ceil(bands).div_ceil(step) * step
    }

    fn run(&self, x: &[f32], out: &mut [f32]) -> TractResult<()> {
        let g = &self.g;
        let (hp, wp) = self.padded();
        let taps: Vec<isize> = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| (ky * wp + kx) as isize))
            .collect();
        let blocks = self.cout.div_ceil(self.block.channels());
        let (oh, ow) = self.out_hw();
        let conv_rows = if self.pool { 2 * oh } else { oh };
        let image = g.c * g.h * g.w;
        assert_eq!(x.len(), g.n * image);
        assert_eq!(out.len(), g.n * self.cout * oh * ow);
        let out = Shared(out.as_mut_ptr());
        let work = g.n * self.cout * g.oh * g.ow * g.c * taps.len();
        let exec = tract_linalg::multithread::current_tract_executor();
        let threads = match &exec {
            _ if work < PARALLEL_WORK => 1,
            Executor::MultiThread(pool) => pool.current_num_threads(),
            Executor::RayonGlobal => rayon::current_num_threads(),
            _ => 1,
        };
        let rows = self.band_rows(conv_rows, threads);
        let bands = conv_rows.div_ceil(rows);
        // A 1×1 convolution without padding on the row block reads the input
        // as it is: its planes are already the layout, and row tiles read
        // nothing past a plane's last row.
        let direct = self.block == Block::R32x13 && (g.kh, g.kw, g.pad) == (1, 1, [0; 4]);
        if direct {
            for_units(&exec, threads, g.n * bands * blocks, |u, scratch| {
                let (ni, band, block) = (u / (bands * blocks), u / blocks % bands, u % blocks);
                let (y0, y1) = (band * rows, ((band + 1) * rows).min(conv_rows));
                let x = &x[ni * image + y0 * wp..];
                // SAFETY: units write disjoint rows of disjoint blocks.
                unsafe { self.block_rows(x, g.h * g.w, &taps, out, ni, block, y0, y1, scratch) }
            });
        } else if bands == 1 {
            // Whole planes: the calling thread pads every image once, then
            // units of (image, block of output channels) read them.
            let plane = self.plane(hp);
            with_buffer(|buf| {
                let padded = self.padded_buf(g.n * g.c, hp, buf);
                for (x, dst) in x
                    .chunks_exact(image)
                    .zip(padded.chunks_exact_mut(g.c * plane))
                {
                    self.pad_rows(x, 0, hp, dst);
                }
                let padded = &*padded;
                let units = g.n * blocks;
                for_units(&exec, threads, units, |u, scratch| {
                    let (ni, block) = (u / blocks, u % blocks);
                    let x = &padded[ni * g.c * plane..];
                    // SAFETY: units write disjoint blocks of output planes.
                    unsafe {
                        self.block_rows(x, plane, &taps, out, ni, block, 0, conv_rows, scratch)
                    }
                });
            });
        } else {
            // Bands: a unit pads its band of every channel (with the rows the
            // kernel reaches below it) into its thread's buffer and runs every
            // block over it.
            for_units(&exec, threads, g.n * bands, |u, scratch| {
                let (ni, band) = (u / bands, u % bands);
                let (y0, y1) = (band * rows, ((band + 1) * rows).min(conv_rows));
                let padded_rows = y1 - y0 + g.kh - 1;
                let plane = self.plane(padded_rows);
                with_buffer(|buf| {
                    let padded = self.padded_buf(g.c, padded_rows, buf);
                    let x = &x[ni * image..][..image];
                    self.pad_rows(x, y0, padded_rows, &mut padded[..g.c * plane]);
                    for block in 0..blocks {
                        // SAFETY: units write disjoint rows of the planes.
                        unsafe {
                            self.block_rows(padded, plane, &taps, out, ni, block, y0, y1, scratch)
                        }
                    }
                });
            });
        }
        Ok(())
    }

    /// Convolution rows `y0..y1` of one block of output channels of image
    /// `ni`, from `x`: that image's padded rows from row `y0` on, in planes
    /// of `plane` values. The last block may hold fewer than the block's
    /// channels: only those are stored.
    ///
    /// # Safety
    /// `out` must be the whole output, and no other thread may access these
    /// rows (or the pooled rows they make) meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block_rows(
        &self,
        x: &[f32],
        plane: usize,
        taps: &[isize],
        out: Shared,
        ni: usize,
        block: usize,
        y0: usize,
        y1: usize,
        scratch: &mut Vec<f32>,
    ) {
        let g = &self.g;
        let co = self.block.channels();
        let per_block = g.c * taps.len() * co;
        let (oh, ow) = self.out_hw();
        let part = Part {
            x,
            plane,
            wp: self.padded().1,
            taps,
            w: &self.packed[block * per_block..][..per_block],
            b: &self.bias[block * co..][..co],
        };
        // The block's first output plane, at the first row the buffer holds.
        let first = (ni * self.cout + block * co) * oh * ow;
        let valid = (self.cout - block * co).min(co);
        let row = if self.pool { y0 / 2 } else { y0 };
        // SAFETY: within `out` (its length is asserted in `run`); `planes*`
        // write only the rows y0..y1 (or their pooled rows) of the block's
        // `valid` planes, counted from this first row.
        unsafe {
            let dst = out.at(first + row * ow);
            if self.pool {
                self.planes_pooled(&part, 0, y1 - y0, valid, dst, scratch);
            } else {
                self.planes(&part, 0, y1 - y0, valid, dst);
            }
        }
    }

    /// Rows `y0..y1` (even) of the first `valid` planes of one block of
    /// output planes at `out`, with the 2×2/2 max-pool fused: each pair of
    /// convolution rows is computed into `rows` (two padded rows a channel,
    /// plus a tile's slack, so it stays in cache) and pooled from there into
    /// pooled rows `y0/2..y1/2`.
    ///
    /// # Safety
    /// `out` must be valid for `valid` pooled planes, and no other thread may
    /// access pooled rows `y0/2..y1/2` of them meanwhile.
    unsafe fn planes_pooled(
        &self,
        p: &Part<'_>,
        y0: usize,
        y1: usize,
        valid: usize,
        out: *mut f32,
        rows: &mut Vec<f32>,
    ) {
        let g = &self.g;
        let (co, full) = (self.block.channels(), self.block.positions());
        let (ph, pw) = self.out_hw();
        let wp = p.wp;
        let pair = 2 * wp;
        let stride = pair + full;
        p.check(g, co, self.block, y1);
        assert!(y0.is_multiple_of(2) && y1.is_multiple_of(2) && y1 <= 2 * ph && 2 * pw <= g.ow);
        rows.clear();
        rows.resize(co * stride, 0.0);
        for py in y0 / 2..y1 / 2 {
            let base = 2 * py * wp;
            let mut s = 0;
            while s < pair {
                let (len, next) = self.block.next_tile(s, pair, wp, g.ow);
                // SAFETY: reads end before x[(cin − 1)·plane + (2·py + 2)·wp
                // + reach + len], within `x` (`check`, 2·py + 2 ≤ oh);
                // writes `len` values at rows[j·stride + s] for j < co, and
                // s + len < pair + full = stride.
                unsafe {
                    tile(
                        self.block,
                        len,
                        p,
                        base + s,
                        g.c,
                        self.alpha,
                        rows.as_mut_ptr().add(s),
                        stride,
                    )
                };
                s = next;
            }
            for j in 0..valid {
                let r = &rows[j * stride..];
                let (r0, r1) = (&r[..2 * pw], &r[wp..wp + 2 * pw]);
                // SAFETY: pooled row `py` of channel j, this unit's own.
                let o = unsafe { std::slice::from_raw_parts_mut(out.add((j * ph + py) * pw), pw) };
                for ((o, a), b) in o.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                    *o = a[0].max(a[1]).max(b[0].max(b[1]));
                }
            }
        }
    }

    /// Rows `y0..y1` of the first `valid` planes of one block of output
    /// planes at `out`: tiles of
    /// consecutive positions along the padded input flattened (row stride
    /// `wp`), so a tile may run over the end of a row into the next: positions
    /// past the output's width (`wp − ow` a row) are computed and dropped. A
    /// tile inside one row is stored in place, others through a scratch block.
    ///
    /// # Safety
    /// `out` must be valid for `valid` output planes, and no other thread may
    /// access rows `y0..y1` of them meanwhile.
    unsafe fn planes(&self, p: &Part<'_>, y0: usize, y1: usize, valid: usize, out: *mut f32) {
        let g = &self.g;
        let co = self.block.channels();
        let wp = p.wp;
        let plane_out = g.oh * g.ow;
        p.check(g, co, self.block, y1);
        assert!(y0 < y1 && y1 <= g.oh);
        let (first, span) = (y0 * wp, y1 * wp);
        let mut scratch = [0f32; MAX_BLOCK];
        let mut start = first;
        while start < span {
            // Short tiles at the end, so narrow layers (13×13: 195 flat
            // positions) compute little past it.
            let (len, next) = self.block.next_tile(start, span, wp, g.ow);
            let (y, x0) = (start / wp, start % wp);
            if x0 + len <= g.ow && valid == co {
                // The whole tile is one output row's run: store in place.
                // SAFETY: reads x[c·plane + start + tap + 0..len] for
                // c < cin, within `x` (`check`: start < oh·wp); writes `len`
                // values at out[j·plane_out + y·ow + x0] for j < co, in row
                // y of the unit's rows (x0 + len ≤ ow).
                unsafe {
                    tile(
                        self.block,
                        len,
                        p,
                        start,
                        g.c,
                        self.alpha,
                        out.add(y * g.ow + x0),
                        plane_out,
                    )
                };
            } else {
                // SAFETY: as above, writing co × len values into `scratch`.
                unsafe {
                    tile(
                        self.block,
                        len,
                        p,
                        start,
                        g.c,
                        self.alpha,
                        scratch.as_mut_ptr(),
                        len,
                    )
                };
                // Copy out the parts of the (up to three) rows the tile
                // touched that are inside the output and the unit's rows.
                let (mut y, mut x0, mut i) = (y, x0, 0);
                while i < len && y < y1 {
                    let run = (wp - x0).min(len - i);
                    let inside = g.ow.saturating_sub(x0).min(run);
                    for j in 0..valid {
                        // SAFETY: row y < y1 of channel j < valid, x0 +
                        // inside ≤ ow.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                scratch.as_ptr().add(j * len + i),
                                out.add(j * plane_out + y * g.ow + x0),
                                inside,
                            )
                        };
                    }
                    (y, x0, i) = (y + 1, 0, i + run);
                }
            }
            start = next;
        }
    }
}

/// Runs `f` with this thread's padding buffer: one padded input at a time
/// per thread (runs of tract's plan are sequential); a re-entrant call gets a
/// buffer of its own.
fn with_buffer<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    thread_local! {
        static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PADDED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Runs `unit(u, scratch)` for every `u < units`, on the run's executor when
/// it has `threads` > 1, each thread with a scratch vector of its own.
fn for_units(
    exec: &Executor,
    threads: usize,
    units: usize,
    unit: impl Fn(usize, &mut Vec<f32>) + Send + Sync,
) {
    use rayon::prelude::*;
    let all = || {
        (0..units)
            .into_par_iter()
            .for_each_init(Vec::new, |scratch, u| unit(u, scratch))
    };
    match exec {
        Executor::MultiThread(pool) if threads > 1 && units > 1 => pool.install(all),
        Executor::RayonGlobal if threads > 1 && units > 1 => all(),
        _ => {
            let mut scratch = Vec::new();
            for u in 0..units {
                unit(u, &mut scratch);
            }
        }
    }
}

/// The output pointer, shared by the units that write disjoint parts of it.
#[derive(Clone, Copy)]
struct Shared(*mut f32);

impl Shared {
    /// # Safety
    /// `offset` must be within the allocation.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

// SAFETY: units write disjoint rows through it (see `DirectConv::run`).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// One image and block of output channels: what every tile reads.
struct Part<'a> {
    /// The padded input from the image's first plane (and the slack after).
    x: &'a [f32],
    plane: usize,
    wp: usize,
    /// Offset of each tap from a window's first position.
    taps: &'a [isize],
    /// The block's weights, `[cin][tap][co]`.
    w: &'a [f32],
    b: &'a [f32],
}

impl Part<'_> {
    /// The reads of any tile starting before `oh·wp` stay within `x`.
    fn check(&self, g: &Geometry, co: usize, block: Block, y1: usize) {
        let reach = self.taps.iter().copied().max().unwrap_or(0) as usize;
        // Tiles over positions may read a tile past the last; row tiles end
        // with their row.
        let past = match block {
            Block::R32x13 => 0,
            _ => block.positions(),
        };
        assert!(self.x.len() >= (g.c - 1) * self.plane + y1 * self.wp + reach + past);
        assert!(self.w.len() == g.c * self.taps.len() * co && self.b.len() == co);
    }
}

/// One block from `start`: `dst[j·stride + i]` = act(`b[j]` + Σ over channels
/// `c` and taps `t` of `w[c][t][j] · x[c·plane + start + t + i]`), for `len`
/// positions (the block's, or [`SHORT`]), with act(v) = max(v, α·v).
///
/// # Safety
/// `p.x` must hold `(cin − 1)·plane + start + max(taps) + len` values and
/// `dst` must be valid for `len` writes at `dst + j·stride` for each channel
/// `j` of the block; the block must be one [`Block::for_cpu`] chose.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile(
    block: Block,
    len: usize,
    p: &Part<'_>,
    start: usize,
    cin: usize,
    alpha: f32,
    dst: *mut f32,
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features `Block::for_cpu` checked; the bounds
    // are the caller's.
    unsafe {
        let (x, w, b, taps, plane) = (p.x.as_ptr().add(start), p.w.as_ptr(), p.b, p.taps, p.plane);
        match (block, len) {
            (Block::R32x13, _) => x86::rows_32(len, x, plane, cin, taps, w, b, alpha, dst, stride),
            (Block::C8x32, 32) => x86::tile_8x32(x, plane, cin, taps, w, b, alpha, dst, stride),
            (Block::C8x32, 24) => x86::tile_8x24(x, plane, cin, taps, w, b, alpha, dst, stride),
            (Block::C8x32, 16) => x86::tile_8x16(x, plane, cin, taps, w, b, alpha, dst, stride),
            (Block::C8x32, _) => x86::tile_8x8(x, plane, cin, taps, w, b, alpha, dst, stride),
            (Block::C4x16, 16) => x86::tile_4x16(x, plane, cin, taps, w, b, alpha, dst, stride),
            (Block::C4x16, _) => x86::tile_4x8(x, plane, cin, taps, w, b, alpha, dst, stride),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (block, len, p, start, cin, alpha, dst, stride);
        unreachable!("DirectConv is only built on x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// A vector of f32 lanes: 8 (`__m256`, AVX2 and FMA) or 16 (`__m512`,
    /// AVX-512F). The methods are inlined into callers that enable the
    /// features.
    trait Lanes: Copy {
        const N: usize;
        unsafe fn splat(v: f32) -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn store(self, p: *mut f32);
        /// `self + a · b`.
        unsafe fn fma(self, a: Self, b: Self) -> Self;
        /// `max(v, α·v)`.
        unsafe fn leaky(self, alpha: Self) -> Self;
    }

    macro_rules! lanes {
        ($t:ty, $n:literal, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident, $max:ident, $mul:ident) => {
            impl Lanes for $t {
                const N: usize = $n;
                #[inline(always)]
                unsafe fn splat(v: f32) -> Self {
                    unsafe { $set1(v) }
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    unsafe { $loadu(p) }
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    unsafe { $storeu(p, self) }
                }
                #[inline(always)]
                unsafe fn fma(self, a: Self, b: Self) -> Self {
                    unsafe { $fmadd(a, b, self) }
                }
                #[inline(always)]
                unsafe fn leaky(self, alpha: Self) -> Self {
                    unsafe { $max(self, $mul(self, alpha)) }
                }
            }
        };
    }

    lanes!(
        __m256,
        8,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps,
        _mm256_max_ps,
        _mm256_mul_ps
    );
    lanes!(
        __m512,
        16,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps,
        _mm512_max_ps,
        _mm512_mul_ps
    );

    /// `CO` channels × `NV` vectors of `V::N` positions, accumulated in
    /// registers (see [`super::tile`]; `x` points at the tile's first
    /// position in channel 0). Inlined into callers that enable the CPU
    /// features.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn body<V: Lanes, const CO: usize, const NV: usize>(
        x: *const f32,
        plane: usize,
        cin: usize,
        taps: &[isize],
        w: *const f32,
        b: &[f32],
        alpha: f32,
        dst: *mut f32,
        stride: usize,
    ) {
        unsafe {
            let mut acc = [[V::splat(0.0); NV]; CO];
            for (j, row) in acc.iter_mut().enumerate() {
                *row = [V::splat(b[j]); NV];
            }
            let mut wp = w;
            for c in 0..cin {
                let xc = x.add(c * plane);
                for &off in taps {
                    let p = xc.offset(off);
                    let mut xv = [V::splat(0.0); NV];
                    for (v, xv) in xv.iter_mut().enumerate() {
                        *xv = V::load(p.add(V::N * v));
                    }
                    for (j, row) in acc.iter_mut().enumerate() {
                        let wj = V::splat(*wp.add(j));
                        for (a, xv) in row.iter_mut().zip(&xv) {
                            *a = a.fma(*xv, wj);
                        }
                    }
                    wp = wp.add(CO);
                }
            }
            let alpha = V::splat(alpha);
            for (j, row) in acc.iter().enumerate() {
                for (v, a) in row.iter().enumerate() {
                    a.leaky(alpha).store(dst.add(j * stride + V::N * v));
                }
            }
        }
    }

    /// 32 output channels × `P` positions (see [`super::Block::R32x13`]):
    /// the weights of a tap are two 16-lane vectors, each input value is
    /// broadcast; the accumulators are transposed on the way out.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn rows_body<const P: usize>(
        x: *const f32,
        plane: usize,
        cin: usize,
        taps: &[isize],
        w: *const f32,
        b: &[f32],
        alpha: f32,
        dst: *mut f32,
        stride: usize,
    ) {
        unsafe {
            let bias = [
                _mm512_loadu_ps(b.as_ptr()),
                _mm512_loadu_ps(b.as_ptr().add(16)),
            ];
            let mut acc = [[bias[0]; P], [bias[1]; P]];
            let mut wp = w;
            for c in 0..cin {
                let xc = x.add(c * plane);
                for &off in taps {
                    let p = xc.offset(off);
                    let (w0, w1) = (_mm512_loadu_ps(wp), _mm512_loadu_ps(wp.add(16)));
                    let [a0, a1] = &mut acc;
                    for (i, (a0, a1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                        let v = _mm512_set1_ps(*p.add(i));
                        *a0 = _mm512_fmadd_ps(w0, v, *a0);
                        *a1 = _mm512_fmadd_ps(w1, v, *a1);
                    }
                    wp = wp.add(32);
                }
            }
            let alpha = _mm512_set1_ps(alpha);
            let mut t = [[0f32; 32]; P];
            for (h, half) in acc.iter().enumerate() {
                for (i, a) in half.iter().enumerate() {
                    let a = _mm512_max_ps(*a, _mm512_mul_ps(*a, alpha));
                    _mm512_storeu_ps(t[i].as_mut_ptr().add(16 * h), a);
                }
            }
            for j in 0..32 {
                for (i, t) in t.iter().enumerate() {
                    *dst.add(j * stride + i) = t[j];
                }
            }
        }
    }

    /// [`rows_body`] for a tile of `len` (1 to 13) positions.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_32(
        len: usize,
        x: *const f32,
        plane: usize,
        cin: usize,
        taps: &[isize],
        w: *const f32,
        b: &[f32],
        alpha: f32,
        dst: *mut f32,
        stride: usize,
    ) {
        macro_rules! by_len {
            ($($n:literal)*) => {
                match len {
                    $($n => unsafe { rows_body::<$n>(x, plane, cin, taps, w, b, alpha, dst, stride) },)*
                    _ => unreachable!("row tiles are 1 to 13 positions"),
                }
            };
        }
        by_len!(1 2 3 4 5 6 7 8 9 10 11 12 13)
    }

    macro_rules! tile_fn {
        ($name:ident, $features:literal, $lanes:ty, $co:literal, $nv:literal) => {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $features)]
            pub unsafe fn $name(
                x: *const f32,
                plane: usize,
                cin: usize,
                taps: &[isize],
                w: *const f32,
                b: &[f32],
                alpha: f32,
                dst: *mut f32,
                stride: usize,
            ) {
                unsafe { body::<$lanes, $co, $nv>(x, plane, cin, taps, w, b, alpha, dst, stride) }
            }
        };
    }

    tile_fn!(tile_8x32, "avx2,fma,avx512f,avx512vl", __m512, 8, 2);
    tile_fn!(tile_8x24, "avx2,fma,avx512f,avx512vl", __m256, 8, 3);
    tile_fn!(tile_8x16, "avx2,fma,avx512f,avx512vl", __m256, 8, 2);
    tile_fn!(tile_8x8, "avx2,fma,avx512f,avx512vl", __m256, 8, 1);
    tile_fn!(tile_4x16, "avx2,fma", __m256, 4, 2);
    tile_fn!(tile_4x8, "avx2,fma", __m256, 4, 1);
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        "VigilDirectConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?} → {} channels", self.g, self.cout)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let g = &self.g;
        ensure!(*input.shape() == *g.input_shape(), "unexpected input shape");
        let (oh, ow) = self.out_hw();
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every
        // output value (every position of every row of every plane).
        let mut out = unsafe { Tensor::uninitialized::<f32>(&g.shape(self.cout, oh, ow))? };
        let mut view = out.try_as_plain_ram_mut()?;
        self.run(
            input.try_as_plain_ram()?.as_slice::<f32>()?,
            view.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DirectConv {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.g;
        let (oh, ow) = self.out_hw();
        Ok(tvec!(f32::fact(g.shape(self.cout, oh, ow))))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.g;
        let macs = g.n * self.cout * g.oh * g.ow * g.c * g.kh * g.kw;
        Ok(tvec!((Cost::FMA(f32::datum_type()), macs.into())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::PaddingSpec;

    /// A deterministic pseudo-random tensor in [−1, 1).
    fn noise(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        tract_onnx::tract_core::ndarray::ArrayD::from_shape_vec(shape, v)
            .unwrap()
            .into()
    }

    fn spec(
        format: DataFormat,
        k: [usize; 2],
        s: usize,
        pad: PaddingSpec,
        c: [usize; 2],
    ) -> PoolSpec {
        PoolSpec {
            data_format: format,
            kernel_shape: tvec![k[0], k[1]],
            padding: pad,
            dilations: None,
            strides: (s != 1).then(|| tvec![s, s]),
            input_channels: c[0],
            output_channels: c[1],
        }
    }

    struct ConvCase {
        input: Vec<usize>,
        cout: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: PaddingSpec,
        leaky: Option<f32>,
        pool: bool,
    }

    /// A case with stride 1, no padding and nothing after the convolution;
    /// each case overrides what it tests (`ConvCase { pad, .., ..conv(…) }`).
    fn conv(input: &[usize], cout: usize, kernel: [usize; 2]) -> ConvCase {
        ConvCase {
            input: input.to_vec(),
            cout,
            kernel,
            stride: 1,
            pad: PaddingSpec::Valid,
            leaky: None,
            pool: false,
        }
    }

    fn conv_model(c: &ConvCase) -> TypedModel {
        let chw = c.input.len() == 3;
        let cin = c.input[c.input.len() - 3];
        let format = if chw {
            DataFormat::CHW
        } else {
            DataFormat::NCHW
        };
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(&c.input)).unwrap();
        let k = m
            .add_const("k", noise(&[c.cout, cin, c.kernel[0], c.kernel[1]], 7))
            .unwrap();
        let b = m.add_const("b", noise(&[c.cout], 8)).unwrap();
        let conv = Conv {
            pool_spec: spec(format, c.kernel, c.stride, c.pad.clone(), [cin, c.cout]),
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let mut y = m.wire_node("conv", conv, &[x, k, b]).unwrap();
        if let Some(alpha) = c.leaky {
            y = m
                .wire_node(
                    "leaky",
                    tract_onnx::tract_core::ops::nn::leaky_relu(alpha),
                    &y,
                )
                .unwrap();
        }
        if c.pool {
            let pool = MaxPool::new(
                spec(format, [2, 2], 2, PaddingSpec::Valid, [c.cout, c.cout]),
                None,
            );
            y = m.wire_node("pool", pool, &y).unwrap();
        }
        m.select_output_outlets(&y).unwrap();
        m
    }

    fn run(model: TypedModel, input: &Tensor, threads: usize) -> Tensor {
        let options = RunOptions {
            executor: (threads > 1).then(|| Executor::multithread(threads)),
            ..Default::default()
        };
        let plan = model
            .into_optimized()
            .unwrap()
            .into_runnable_with_options(&options)
            .unwrap();
        plan.run(tvec!(input.clone().into()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    /// tract's own result, ours on one thread and on two, and what was
    /// replaced, with the blocks `blocks` chooses. The rewrite runs before
    /// tract declutters the model, as the host does.
    fn both(
        model: TypedModel,
        input: &Tensor,
        blocks: Chooser,
    ) -> (Tensor, Tensor, Tensor, Replaced) {
        let reference = run(model.clone(), input, 1);
        let (ours, replaced) = accelerate_with(model, blocks).unwrap();
        let one = run(ours.clone(), input, 1);
        let two = run(ours, input, 2);
        (reference, one, two, replaced)
    }

    fn assert_close(reference: &Tensor, ours: &Tensor, what: &str) {
        assert_eq!(reference.shape(), ours.shape(), "{what}: shape");
        let (a, b) = (values(reference), values(ours));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{what}: off by {worst} (relative)");
    }

    /// The AVX2 block for any output channels, when the CPU has it.
    fn avx2_block(_cout: usize, _ow: usize) -> Option<Block> {
        Block::on_cpu()
            .contains(&Block::C4x16)
            .then_some(Block::C4x16)
    }

    /// The best block over positions (not the row block).
    fn positions_block(cout: usize, ow: usize) -> Option<Block> {
        let blocks = Block::on_cpu().into_iter();
        Block::pick(blocks.filter(|b| *b != Block::R32x13), cout, ow)
    }

    #[test]
    fn convolutions_match_tract_on_every_path() {
        if Block::for_cpu(8, 8).is_none() {
            eprintln!("skipped: this CPU has no AVX2 and FMA");
            return;
        }
        let same = |p: usize| PaddingSpec::Explicit(tvec![p, p], tvec![p, p]);
        let cases = [
            // The detector's first layer, fused with its leaky ReLU and
            // max-pool; two images; bands (the input outweighs the weights).
            ConvCase {
                pad: same(1),
                leaky: Some(0.1),
                pool: true,
                ..conv(&[2, 3, 120, 200], 16, [3, 3])
            },
            // Narrow: 13×13 out, tiles span rows (scratch path); 12 output
            // channels take the 4-channel block.
            conv(&[1, 5, 15, 15], 12, [3, 3]),
            // A 5×3 kernel with uneven padding.
            ConvCase {
                pad: PaddingSpec::Explicit(tvec![2, 0], tvec![1, 1]),
                leaky: Some(0.25),
                ..conv(&[1, 7, 9, 40], 8, [5, 3])
            },
            // CHW (no batch axis), as tract leaves some layers.
            ConvCase {
                pad: same(1),
                leaky: Some(0.1),
                ..conv(&[16, 13, 13], 32, [3, 3])
            },
            // Odd output (15×17) under a fused pool: the last row and
            // column are dropped, as ONNX's floor mode does; 36 channels
            // leave the last 8-channel block half empty.
            ConvCase {
                pad: same(1),
                pool: true,
                ..conv(&[1, 24, 15, 17], 36, [3, 3])
            },
            // A detector head: 1×1 to 255 channels (8 row blocks of 32,
            // the last of 31; or 31 position blocks of 8 and one of 7, with
            // a 32-position tile and a 16-position one over 42 positions).
            ConvCase {
                leaky: Some(0.1),
                ..conv(&[1, 40, 6, 7], 255, [1, 1])
            },
            // 1×1 with 40 positions: a 32-position tile and an 8-position
            // one; the input outweighs the weights (bands).
            conv(&[1, 24, 5, 8], 16, [1, 1]),
            // 1×1 on the row block reads the input in place; on two threads
            // in three bands (four on two threads).
            conv(&[1, 64, 60, 40], 32, [1, 1]),
            // The row block under a fused pool, in bands: 30 wide, tiles of
            // 13, 13 and 4 positions.
            ConvCase {
                pad: same(1),
                leaky: Some(0.1),
                pool: true,
                ..conv(&[1, 8, 12, 30], 32, [3, 3])
            },
        ];
        let choices: [(&str, Chooser); 3] = [
            ("best", Block::for_cpu),
            ("positions", positions_block),
            ("avx2", avx2_block),
        ];
        for ((i, c), (chosen, blocks)) in cases
            .iter()
            .enumerate()
            .flat_map(|c| choices.iter().map(move |b| (c, *b)))
        {
            if blocks(c.cout, c.input[c.input.len() - 1]).is_none() {
                continue;
            }
            let i = format!("{i} ({chosen} block)");
            let input = noise(&c.input, c.cout as u64);
            let (reference, one, two, replaced) = both(conv_model(c), &input, blocks);
            assert_eq!(replaced.convs, 1, "case {i}: {replaced:?}");
            assert_eq!(
                replaced.fused_activations,
                c.leaky.is_some() as usize,
                "case {i}"
            );
            assert_eq!(replaced.fused_pools, c.pool as usize, "case {i}");
            assert_eq!(
                replaced.max_pools, 0,
                "case {i}: a fused pool is not replaced again"
            );
            assert_close(&reference, &one, &format!("case {i}"));
            // Threads split the work, not the sums: the same bits.
            assert_eq!(values(&one), values(&two), "case {i}: two threads");
        }
    }

    #[test]
    fn convolutions_it_has_no_kernel_for_stay_with_tract() {
        let cases = [
            // Stride 2.
            ConvCase {
                stride: 2,
                ..conv(&[1, 3, 20, 20], 8, [3, 3])
            },
            // Output channels not in fours, too few to pad to a block.
            conv(&[1, 3, 20, 20], 6, [3, 3]),
        ];
        for (i, c) in cases.iter().enumerate() {
            let (_, replaced) = accelerate(conv_model(c)).unwrap();
            assert_eq!(replaced, Replaced::default(), "case {i}");
        }
        // A leaky ReLU steeper than identity is not max(v, α·v): not fused.
        let c = ConvCase {
            leaky: Some(1.5),
            ..conv(&[1, 3, 20, 20], 8, [3, 3])
        };
        let input = noise(&c.input, 3);
        let (reference, one, _, replaced) = both(conv_model(&c), &input, Block::for_cpu);
        assert_eq!(replaced.fused_activations, 0);
        assert_close(&reference, &one, "steep leaky");
    }

    #[test]
    fn max_pools_match_tract_exactly() {
        let cases = [
            // 2×2/2 on even and odd sizes.
            (vec![1, 3, 10, 12], [2, 2], 2, PaddingSpec::Valid),
            (vec![2, 4, 11, 13], [2, 2], 2, PaddingSpec::Valid),
            // 2×2/1 padded right and bottom (YOLOv3-tiny's last pool).
            (
                vec![1, 8, 13, 13],
                [2, 2],
                1,
                PaddingSpec::ExplicitOnnxPool(tvec![0, 0], tvec![1, 1], false),
            ),
            // 3×3/2 padded all round, ceil mode.
            (
                vec![1, 2, 17, 20],
                [3, 3],
                2,
                PaddingSpec::ExplicitOnnxPool(tvec![1, 1], tvec![1, 1], true),
            ),
            // 3×3/1 padded all round (stride 1 with left padding).
            (
                vec![1, 3, 9, 11],
                [3, 3],
                1,
                PaddingSpec::ExplicitOnnxPool(tvec![1, 1], tvec![1, 1], false),
            ),
            // CHW.
            (vec![5, 9, 9], [3, 2], 1, PaddingSpec::Valid),
        ];
        for (i, (shape, k, s, pad)) in cases.into_iter().enumerate() {
            let format = if shape.len() == 3 {
                DataFormat::CHW
            } else {
                DataFormat::NCHW
            };
            let c = shape[shape.len() - 3];
            let mut m = TypedModel::default();
            let x = m.add_source("x", f32::fact(&shape)).unwrap();
            let y = m
                .wire_node(
                    "pool",
                    MaxPool::new(spec(format, k, s, pad, [c, c]), None),
                    &[x],
                )
                .unwrap();
            m.select_output_outlets(&y).unwrap();
            let input = noise(&shape, 10 + i as u64);
            let (reference, one, two, replaced) = both(m, &input, Block::for_cpu);
            assert_eq!(replaced.max_pools, 1, "case {i}");
            assert_eq!(reference.shape(), one.shape(), "case {i}");
            assert_eq!(values(&reference), values(&one), "case {i}");
            assert_eq!(values(&one), values(&two), "case {i}: two threads");
        }
    }
}
