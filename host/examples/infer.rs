//! Times a model on a picture through the host's inference path (the same code
//! plugins use): `cargo run -p vigil --example infer -- MODEL.onnx [RUNS] [IMAGE.rgb W H]`.
//! Without an image, a mid-grey picture is used. Prints JSON: load time, median
//! and p90 of the runs (input building included, then without).

use std::time::{Duration, Instant};

use vigil::codec::Picture;
use vigil::inference::{Fit, Inference, InferenceConfig, InputSpec, Layout};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: infer MODEL.onnx [RUNS]"))?;
    let runs: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let inf = Inference::new(InferenceConfig {
        threads: 1,
        queue: 1,
        ..Default::default()
    })?;
    let t0 = Instant::now();
    let model = inf.load(&std::fs::read(model_path)?)?;
    let load = t0.elapsed();
    let (h, w, _) = model.image_size();
    let pic = Picture {
        width: w as u32,
        height: h as u32,
        y: vec![126; w * h],
        u: vec![128; w.div_ceil(2) * h.div_ceil(2)],
        v: vec![128; w.div_ceil(2) * h.div_ceil(2)],
    };
    let spec = InputSpec {
        layout: Layout::Nchw,
        bgr: false,
        fit: Fit::Letterbox,
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        pad: 128,
    };
    let mut total = Vec::new();
    let mut run_only = Vec::new();
    for _ in 0..runs + 2 {
        let t = Instant::now();
        let (tensor, _) = vigil::inference::input_tensor(&model, &pic, &spec)?;
        let t1 = Instant::now();
        let out = model.run(tensor)?;
        std::hint::black_box(out);
        total.push(t.elapsed());
        run_only.push(t1.elapsed());
    }
    let stat = |v: &mut Vec<Duration>| {
        v.drain(..2);
        v.sort();
        (
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[v.len() * 9 / 10].as_secs_f64() * 1e3,
        )
    };
    let (tm, tp) = stat(&mut total);
    let (rm, rp) = stat(&mut run_only);
    println!(
        "{}",
        serde_json::json!({"model": model_path, "input": model.input.shape, "load_ms": load.as_secs_f64() * 1e3,
            "median_ms": tm, "p90_ms": tp, "run_median_ms": rm, "run_p90_ms": rp, "runs": runs})
    );
    inf.shutdown();
    Ok(())
}
