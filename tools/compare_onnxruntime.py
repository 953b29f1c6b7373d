#!/usr/bin/env python3
"""Runs an ONNX model with onnxruntime on the input tensor the Vigil host built
(dumped by `cargo run -p vigil --example infer -- MODEL --dump DIR`) and compares
with the host's (tract's) output on that same input.

    ~/.cache/vigil/py/bin/python tools/compare_onnxruntime.py MODEL.onnx DIR

Prints JSON: max and mean absolute difference overall, for box coordinates
(pixels, columns 0-3 of a YOLO [1,N,85] output) and for scores (columns 4+).
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, d = sys.argv[1], sys.argv[2]
    shapes = json.load(open(f"{d}/shapes.json"))
    x = np.fromfile(f"{d}/input.f32", dtype="<f4").reshape(shapes["input"])
    host = np.fromfile(f"{d}/output.f32", dtype="<f4").reshape(shapes["output"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = sess.run(None, {name: x})[0]
    if ref.shape != host.shape:
        print(json.dumps({"error": f"shapes differ: onnxruntime {ref.shape}, host {host.shape}"}))
        sys.exit(1)
    diff = np.abs(ref - host)
    out = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
    if ref.ndim == 3 and ref.shape[2] > 5:
        out["box_max_abs_px"] = float(diff[..., :4].max())
        out["score_max_abs"] = float(diff[..., 4:].max())
        out["boxes_over_0.25"] = int(((ref[..., 4:5] * ref[..., 5:]).max(-1) > 0.25).sum())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
