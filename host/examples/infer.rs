//! Runs a model on a picture through the host's inference path (the same code
//! plugins use) and times it:
//!
//! ```text
//! cargo run -p vigil --example infer -- MODEL.onnx [--runs N] [--threads T]
//!     [--i420 FILE --width W --height H] [--dump DIR] [--tract-only]
//! ```
//!
//! `--tract-only` leaves every operator to tract (`[inference] vigil_kernels =
//! false`), for comparison with Vigil's kernels.
//!
//! Without `--i420` a mid-grey picture is used. `--dump` writes the input tensor
//! the host built (`input.f32`, little-endian) and the first output
//! (`output.f32`) with their shapes (`shapes.json`), so another runtime can be
//! checked on the very same input (`tools/compare_onnxruntime.py`). Prints JSON:
//! load time, median and p90 of the runs (with input building, and without).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vigil::codec::Picture;
use vigil::inference::{Inference, InferenceConfig, InputSpec};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model_path = None;
    let (mut runs, mut threads) = (20usize, 1usize);
    let (mut i420, mut width, mut height, mut dump) = (None, 0u32, 0u32, None);
    let mut tract_only = false;
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val()?.parse()?,
            "--threads" => threads = val()?.parse()?,
            "--i420" => i420 = Some(PathBuf::from(val()?)),
            "--width" => width = val()?.parse()?,
            "--height" => height = val()?.parse()?,
            "--dump" => dump = Some(PathBuf::from(val()?)),
            "--tract-only" => tract_only = true,
            s if !s.starts_with("--") && model_path.is_none() => {
                model_path = Some(PathBuf::from(s))
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let model_path = model_path.context("usage: infer MODEL.onnx [options]")?;
    let inf = Inference::new(InferenceConfig {
        threads: 1,
        threads_per_run: threads,
        queue: 1,
        max_model_bytes: 1 << 30,
        vigil_kernels: !tract_only,
        ..Default::default()
    })?;
    let t0 = Instant::now();
    let model = inf.load(&std::fs::read(&model_path)?)?;
    let load = t0.elapsed();
    let (h, w, _) = model.image_size();
    let pic = match &i420 {
        Some(f) => {
            let data = std::fs::read(f)?;
            let (pw, ph) = (width as usize, height as usize);
            let (cw, ch) = (pw.div_ceil(2), ph.div_ceil(2));
            if data.len() != pw * ph + 2 * cw * ch {
                bail!(
                    "{}: {} bytes is not a {pw}×{ph} I420 picture",
                    f.display(),
                    data.len()
                );
            }
            Picture {
                width,
                height,
                y: data[..pw * ph].to_vec(),
                u: data[pw * ph..pw * ph + cw * ch].to_vec(),
                v: data[pw * ph + cw * ch..].to_vec(),
            }
        }
        None => Picture {
            width: w as u32,
            height: h as u32,
            y: vec![126; w * h],
            u: vec![128; w.div_ceil(2) * h.div_ceil(2)],
            v: vec![128; w.div_ceil(2) * h.div_ceil(2)],
        },
    };
    let spec = InputSpec::letterbox_unit();
    if let Some(dir) = &dump {
        std::fs::create_dir_all(dir)?;
        let (tensor, _) = vigil::inference::input_tensor(&model, &pic, &spec)?;
        let input: Vec<u8> = tensor
            .to_plain_array_view::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(dir.join("input.f32"), input)?;
        let out = model.run(tensor)?;
        let o = &out[0];
        let bytes: Vec<u8> = o.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("output.f32"), bytes)?;
        std::fs::write(
            dir.join("shapes.json"),
            serde_json::json!({"input": model.input.shape, "input_name": model.input.name,
                "output": o.shape, "output_name": o.name})
            .to_string(),
        )?;
    }
    let mut total = Vec::new();
    let mut run_only = Vec::new();
    for _ in 0..runs + 2 {
        let t = Instant::now();
        let (tensor, _) = vigil::inference::input_tensor(&model, &pic, &spec)?;
        let t1 = Instant::now();
        std::hint::black_box(model.run(tensor)?);
        total.push(t.elapsed());
        run_only.push(t1.elapsed());
    }
    let stat = |v: &mut Vec<Duration>| {
        v.drain(..2);
        v.sort();
        (
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[(v.len() * 9 / 10).min(v.len() - 1)].as_secs_f64() * 1e3,
        )
    };
    let (tm, tp) = stat(&mut total);
    let (rm, rp) = stat(&mut run_only);
    println!(
        "{}",
        serde_json::json!({"model": model_path, "input": model.input.shape, "threads": threads,
            "load_ms": load.as_secs_f64() * 1e3, "median_ms": tm, "p90_ms": tp,
            "run_median_ms": rm, "run_p90_ms": rp, "runs": runs})
    );
    inf.shutdown();
    Ok(())
}
