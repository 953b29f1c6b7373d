//! Where tract spends its time on a model: runs the optimized plan as the host
//! builds it (Vigil's kernels unless `--tract-only`; `--threads` per run, 1 by
//! default) `--runs` times on a grey input and prints the nodes that took
//! longest, median per run, with their operators and output shapes.
//!
//! ```text
//! cargo run --release -p vigil --example profile_model -- MODEL.onnx [--runs N] [--top K]
//!     [--threads T] [--tract-only]
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{SimpleState, eval};
use vigil::inference::InferenceConfig;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut path, mut runs, mut top, mut tract_only) = (None, 10usize, 25usize, false);
    let mut threads = 1usize;
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val()?.parse()?,
            "--top" => top = val()?.parse()?,
            "--tract-only" => tract_only = true,
            "--threads" => threads = val()?.parse()?,
            s if !s.starts_with("--") && path.is_none() => path = Some(s.to_string()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let path = path.context("usage: profile_model MODEL.onnx [--runs N] [--top K]")?;
    let typed = tract_onnx::onnx().model_for_path(&path)?.into_typed()?;
    let cfg = InferenceConfig {
        threads_per_run: threads,
        vigil_kernels: !tract_only,
        ..Default::default()
    };
    let planned = vigil::inference::plan(typed, &cfg)?;
    let plan = &planned.plan;
    let shape: Vec<usize> = plan
        .model()
        .input_fact(0)?
        .shape
        .as_concrete()
        .context("fixed input shape")?
        .to_vec();
    let input: Tensor = tract_ndarray::ArrayD::<f32>::from_elem(shape.clone(), 0.5).into();
    // On the plan's pool, as the host runs it (`Plan::enter`).
    let (mut per_node, mut totals) = planned.enter(|| -> TractResult<_> {
        let mut state = SimpleState::new(plan)?;
        state.run(tvec!(input.clone().into()))?; // warm-up
        let mut per_node: HashMap<usize, Vec<Duration>> = HashMap::new();
        let mut totals = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let mut times: Vec<(usize, Duration)> = Vec::new();
            state.run_plan_with_eval(tvec!(input.clone().into()), |ctx, st, node, inputs| {
                let t = Instant::now();
                let r = eval(ctx, st, node, inputs);
                times.push((node.id, t.elapsed()));
                r
            })?;
            totals.push(t0.elapsed());
            for (id, d) in times {
                per_node.entry(id).or_default().push(d);
            }
        }
        Ok((per_node, totals))
    })?;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let total = median(&mut totals);
    let mut rows: Vec<(Duration, usize)> = per_node
        .iter_mut()
        .map(|(id, v)| (median(v), *id))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let by_op = rows
        .iter()
        .fold(HashMap::<String, Duration>::new(), |mut m, (d, id)| {
            *m.entry(plan.model().node(*id).op().name().to_string())
                .or_default() += *d;
            m
        });
    println!(
        "model {path} input {shape:?}: median run {:.2} ms over {runs} runs",
        total.as_secs_f64() * 1e3
    );
    println!("\nby operator (sum of node medians):");
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by_key(|o| std::cmp::Reverse(o.1));
    for (op, d) in ops {
        println!(
            "  {:>8.2} ms  {:>5.1} %  {op}",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / total.as_secs_f64() * 100.0
        );
    }
    println!("\nslowest nodes:");
    for (d, id) in rows.iter().take(top) {
        let node = plan.model().node(*id);
        let out = plan
            .model()
            .outlet_fact(OutletId::new(*id, 0))
            .map(|f| format!("{:?}", f.shape))
            .unwrap_or_default();
        println!(
            "  {:>8.2} ms  #{id} {} [{}] → {out}",
            d.as_secs_f64() * 1e3,
            node.name,
            node.op().name()
        );
    }
    Ok(())
}
