#!/usr/bin/env python3
"""Runs a YOLO model made by tools/darknet2onnx.py on one picture and prints the detections
as JSON. A check of the exported model, and the reference for what a consumer must do
with its `boxes` output.

Needs numpy and onnxruntime; pictures other than binary PPM are decoded by the `ffmpeg`
command-line tool (any image or video it reads; `--at SECONDS` picks a video frame; an
input of the form `lavfi:SPEC` is an ffmpeg test source such as `lavfi:color=c=gray:s=768x576`).

Preprocessing, as Darknet's `detector test` does it: the frame is letterboxed to the
model's input size (scaled to fit keeping its aspect ratio, bilinear, centred on 0.5
gray), RGB, planar, /255. `--resize stretch` scales without keeping the aspect ratio.
A frame already at the model's size is used as it is.

Postprocessing: score = objectness x class probability, kept if >= --conf, then
non-maximum suppression per class (IoU > --iou suppresses the lower score). Boxes are
reported as [x1, y1, x2, y2] in the source frame's pixels.

  tools/check_yolo.py --model M.onnx --input video.avi --at 2
  tools/check_yolo.py --model M.onnx --input lavfi:color=c=gray:s=768x576
  tools/check_yolo.py --model M.onnx --input frame.ppm --bench 20 --threads 1
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def fail(msg):
    print("check_yolo: error: %s" % msg, file=sys.stderr)
    sys.exit(1)


def parse_ppm(data, origin):
    """Binary PPM (P6, maxval 255) -> uint8 array [H, W, 3]."""
    fields = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            fail("%s: truncated PPM header" % origin)
        fields.append(data[start:pos])
    pos += 1  # the single whitespace after maxval
    if fields[0] != b"P6":
        fail("%s: not a binary PPM (P6)" % origin)
    w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    if maxval != 255:
        fail("%s: PPM maxval %d, only 255 is supported" % (origin, maxval))
    need = w * h * 3
    if len(data) - pos < need:
        fail("%s: PPM has %d pixel bytes, %dx%d needs %d" % (origin, len(data) - pos, w, h, need))
    return np.frombuffer(data, dtype=np.uint8, count=need, offset=pos).reshape(h, w, 3)


def load_frame(spec, at):
    if spec.lower().endswith(".ppm") and at is None:
        with open(spec, "rb") as f:
            return parse_ppm(f.read(), spec)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if at is not None:
        cmd += ["-ss", str(at)]
    if spec.startswith("lavfi:"):
        cmd += ["-f", "lavfi", "-i", spec[len("lavfi:"):]]
    else:
        cmd += ["-i", spec]
    cmd += ["-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"]
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except FileNotFoundError:
        fail("ffmpeg is not installed (needed to decode %s; binary PPM needs no ffmpeg)" % spec)
    if res.returncode != 0 or not res.stdout:
        fail("ffmpeg could not decode a frame from %s: %s" % (spec, res.stderr.decode(errors="replace").strip()))
    return parse_ppm(res.stdout, spec)


def resize_bilinear(img, new_w, new_h):
    """float32 [H, W, 3] -> [new_h, new_w, 3], pixel-centre aligned bilinear."""
    h, w = img.shape[:2]
    if (w, h) == (new_w, new_h):
        return img

    def axis(n_out, n_in):
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(new_h, h)
    x0, x1, fx = axis(new_w, w)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bot = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def prepare(frame, net_w, net_h, mode):
    """uint8 [H, W, 3] -> (float32 [1, 3, net_h, net_w], mapping back to frame pixels)."""
    h, w = frame.shape[:2]
    img = frame.astype(np.float32) / 255.0
    if mode == "stretch" or (w, h) == (net_w, net_h):
        sx, sy = net_w / w, net_h / h
        out = resize_bilinear(img, net_w, net_h)
        return out.transpose(2, 0, 1)[None].copy(), (sx, sy, 0.0, 0.0)
    # letterbox, as Darknet's letterbox_image
    if net_w / w < net_h / h:
        new_w, new_h = net_w, (h * net_w) // w
    else:
        new_w, new_h = (w * net_h) // h, net_h
    canvas = np.full((net_h, net_w, 3), 0.5, dtype=np.float32)
    dx, dy = (net_w - new_w) // 2, (net_h - new_h) // 2
    canvas[dy:dy + new_h, dx:dx + new_w] = resize_bilinear(img, new_w, new_h)
    return canvas.transpose(2, 0, 1)[None].copy(), (new_w / w, new_h / h, float(dx), float(dy))


def iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def decode(out, conf, iou_thresh):
    """boxes [N, 5+C] -> list of (class, score, x1, y1, x2, y2) in model-input pixels."""
    xyxy = np.empty((out.shape[0], 4), dtype=np.float32)
    xyxy[:, 0] = out[:, 0] - out[:, 2] / 2
    xyxy[:, 1] = out[:, 1] - out[:, 3] / 2
    xyxy[:, 2] = out[:, 0] + out[:, 2] / 2
    xyxy[:, 3] = out[:, 1] + out[:, 3] / 2
    scores = out[:, 4:5] * out[:, 5:]
    found = []
    for c in np.unique(np.nonzero(scores >= conf)[1]):
        idx = np.nonzero(scores[:, c] >= conf)[0]
        idx = idx[np.argsort(-scores[idx, c], kind="stable")]
        while idx.size:
            best = idx[0]
            found.append((int(c), float(scores[best, c]), *[float(v) for v in xyxy[best]]))
            if idx.size == 1:
                break
            rest = idx[1:]
            idx = rest[iou(xyxy[best], xyxy[rest]) <= iou_thresh]
    found.sort(key=lambda d: -d[1])
    return found


def main():
    ap = argparse.ArgumentParser(description="Run a darknet2onnx YOLO model on one picture, print JSON.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True, help="image, video, binary PPM, or lavfi:SPEC")
    ap.add_argument("--at", type=float, default=None, help="seconds into a video")
    ap.add_argument("--conf", type=float, default=0.25, help="score threshold (objectness x class prob)")
    ap.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    ap.add_argument("--resize", choices=["letterbox", "stretch"], default="letterbox")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra_op_num_threads (0: its default)")
    ap.add_argument("--bench", type=int, default=0, help="also time this many runs (after 3 warm-up runs)")
    ap.add_argument("--compact", action="store_true", help="one-line JSON")
    args = ap.parse_args()

    try:
        import onnxruntime as ort
    except ImportError:
        fail("the `onnxruntime` Python package is not installed (scripts/fetch-model.sh sets up a venv with it)")

    opts = ort.SessionOptions()
    if args.threads:
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(args.model, sess_options=opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if inp.name != "images" or len(inp.shape) != 4 or not all(isinstance(d, int) for d in inp.shape):
        fail("%s: expected a fixed-size input `images` [1,3,H,W], found %s %s" % (args.model, inp.name, inp.shape))
    net_h, net_w = inp.shape[2], inp.shape[3]
    meta = sess.get_modelmeta().custom_metadata_map
    labels = meta.get("labels", "").split("\n") if meta.get("labels") else []

    frame = load_frame(args.input, args.at)
    src_h, src_w = frame.shape[:2]
    tensor, (sx, sy, dx, dy) = prepare(frame, net_w, net_h, args.resize)

    t0 = time.perf_counter()
    out = sess.run(["boxes"], {"images": tensor})[0][0]
    first_ms = (time.perf_counter() - t0) * 1000

    dets = []
    for c, score, x1, y1, x2, y2 in decode(out, args.conf, args.iou):
        bx = [(x1 - dx) / sx, (y1 - dy) / sy, (x2 - dx) / sx, (y2 - dy) / sy]
        bx = [min(max(bx[0], 0.0), src_w), min(max(bx[1], 0.0), src_h),
              min(max(bx[2], 0.0), src_w), min(max(bx[3], 0.0), src_h)]
        dets.append({"label": labels[c] if c < len(labels) else str(c), "class": c,
                     "score": round(score, 4), "box": [round(v, 1) for v in bx]})

    counts = {}
    for d in dets:
        counts[d["label"]] = counts.get(d["label"], 0) + 1
    persons = [d["box"] for d in dets if d["label"] == "person"]
    summary = {"counts": counts}
    if persons:
        hs = [b[3] - b[1] for b in persons]
        ws = [b[2] - b[0] for b in persons]
        summary["person_mean_height"] = round(sum(hs) / len(hs), 1)
        summary["person_mean_width"] = round(sum(ws) / len(ws), 1)
        summary["person_mean_h_over_w"] = round(sum(h / max(w, 1e-6) for h, w in zip(hs, ws)) / len(hs), 3)

    report = {"model": args.model, "input": args.input, "at": args.at,
              "frame_size": [src_w, src_h], "model_input": [net_w, net_h],
              "preprocess": "as is" if (src_w, src_h) == (net_w, net_h) else args.resize,
              "cfg_fix": meta.get("cfg_fix"), "conf": args.conf, "iou": args.iou,
              "first_run_ms": round(first_ms, 2), "summary": summary, "detections": dets}

    if args.bench > 0:
        for _ in range(3):
            sess.run(["boxes"], {"images": tensor})
        times = []
        for _ in range(args.bench):
            t0 = time.perf_counter()
            sess.run(["boxes"], {"images": tensor})
            times.append((time.perf_counter() - t0) * 1000)
        report["timing"] = {"runtime": "onnxruntime " + ort.__version__, "intra_op_num_threads": args.threads,
                            "runs": args.bench, "median_ms": round(statistics.median(times), 2),
                            "min_ms": round(min(times), 2), "max_ms": round(max(times), 2)}

    print(json.dumps(report, indent=None if args.compact else 1))


if __name__ == "__main__":
    main()
