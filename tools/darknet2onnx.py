#!/usr/bin/env python3
"""Vigil's converter from a Darknet network (cfg + weights) to ONNX.

Written for the original YOLOv3-tiny (see docs/models/yolov3-tiny.md) and kept to the
layer types that network and its relatives use: [convolutional], [maxpool], [upsample],
[route], [shortcut] and [yolo]. Anything else stops the conversion with the cfg line
that names it.

Needs only `onnx` and `numpy`.

The exported graph
------------------
input   images  float32 [1, 3, H, W]   RGB, planar (NCHW), values in [0, 1] (pixel / 255).
                H and W are fixed at export (--height/--width, multiples of 32). The
                network sees exactly this tensor: resizing or letterboxing the camera
                frame to W x H is the caller's job (Darknet itself letterboxes, padding
                with 0.5 gray, keeping the aspect ratio).
output  boxes   float32 [1, N, 5 + classes]
                one row per anchor box of every [yolo] head, heads in cfg order, inside a
                head ordered anchor, row, column. Columns:
                  0 cx, 1 cy  box centre in input pixels (0..W, 0..H)
                  2 w,  3 h   box size in input pixels
                  4           objectness, after sigmoid
                  5..         class probabilities, each after sigmoid (independent,
                              not softmax)
                A detection's score for class c is objectness * column 5+c; thresholding
                and non-maximum suppression are left to the consumer.

Decoding follows Darknet's yolo layer: cx = (sigmoid(tx) + col) * W / grid_w,
cy = (sigmoid(ty) + row) * H / grid_h, w = exp(tw) * anchor_w, h = exp(th) * anchor_h.
The cfg's anchors are taken as input pixels at whatever size the graph is exported
for: Darknet computes w = exp(tw) * anchor_w / net_w as a fraction of the network input,
so at any network size the anchor is in that input's pixels.

Batch normalisation is folded into the convolution weights with Darknet's own formula,
(x - mean) / (sqrt(variance) + 1e-6) * scale + bias.
"""

import argparse
import hashlib
import os
import sys

import numpy as np

CONVERTER_NAME = "vigil-darknet2onnx"
CONVERTER_VERSION = "1.1.0"
OPSET = 13
IR_VERSION = 7  # the IR version that goes with opset 13; widest reader support

# The published yolov3-tiny.cfg had `mask = 0,1,2` on its second [yolo] layer, while the
# released yolov3-tiny.weights were trained with `mask = 1,2,3`. Recognised by these
# anchors and masks; applied unless --no-mask-fix.
TINY_ANCHORS = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]
TINY_BAD_MASK = [0, 1, 2]
TINY_GOOD_MASK = [1, 2, 3]

BN_EPSILON = 1e-6  # added to sqrt(variance), as Darknet's normalize_cpu does
LEAKY_SLOPE = 0.1


class ConvertError(Exception):
    """A problem with the input files or arguments, reported without a traceback."""


# ---------------------------------------------------------------------------------------
# cfg parsing


class Section:
    def __init__(self, kind, line, path):
        self.kind = kind
        self.line = line
        self.path = path
        self.options = {}  # key -> (value, line)

    def where(self, key=None):
        if key is not None and key in self.options:
            return "%s:%d" % (self.path, self.options[key][1])
        return "%s:%d" % (self.path, self.line)

    def has(self, key):
        return key in self.options

    def raw(self, key, default=None):
        if key in self.options:
            return self.options[key][0]
        return default

    def _number(self, key, default, convert, what):
        value = self.raw(key)
        if value is None:
            if default is None:
                raise ConvertError("%s: [%s] needs `%s`" % (self.where(), self.kind, key))
            return default
        try:
            return convert(value)
        except ValueError:
            raise ConvertError("%s: `%s=%s` is not %s" % (self.where(key), key, value, what))

    def int(self, key, default=None):
        return self._number(key, default, int, "an integer")

    def float(self, key, default=None):
        return self._number(key, default, float, "a number")

    def ints(self, key, default=None):
        value = self.raw(key)
        if value is None:
            if default is None:
                raise ConvertError("%s: [%s] needs `%s`" % (self.where(), self.kind, key))
            return list(default)
        try:
            return [int(v) for v in value.split(",") if v != ""]
        except ValueError:
            raise ConvertError("%s: `%s=%s` is not a list of integers" % (self.where(key), key, value))

    def require_default(self, key, default, what):
        """Stop if an option we do not implement is set to anything but its default."""
        if key in self.options and self.raw(key) != str(default):
            raise ConvertError("%s: [%s] `%s=%s` is not supported (%s)"
                               % (self.where(key), self.kind, key, self.raw(key), what))


def parse_cfg(path):
    """Read a Darknet cfg the way Darknet does: whitespace removed, `#`/`;` comments."""
    sections = []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConvertError("cannot read cfg %s: %s" % (path, e.strerror or e))
    for number, text in enumerate(lines, start=1):
        text = "".join(text.split())
        if not text or text[0] in "#;":
            continue
        if text[0] == "[":
            if text[-1] != "]":
                raise ConvertError("%s:%d: malformed section header %r" % (path, number, text))
            sections.append(Section(text[1:-1], number, path))
            continue
        if not sections:
            raise ConvertError("%s:%d: option outside any section: %r" % (path, number, text))
        if "=" not in text:
            raise ConvertError("%s:%d: expected key=value, got %r" % (path, number, text))
        key, value = text.split("=", 1)
        sections[-1].options[key] = (value, number)
    if not sections or sections[0].kind not in ("net", "network"):
        raise ConvertError("%s: the first section must be [net]" % path)
    return sections


def apply_tiny_mask_fix(sections):
    """Return a description of the fix if it was applied, else None."""
    yolos = [s for s in sections if s.kind == "yolo"]
    if len(yolos) != 2:
        return None
    second = yolos[1]
    try:
        anchors = [int(float(v)) for v in second.raw("anchors", "").split(",") if v != ""]
        mask = [int(v) for v in second.raw("mask", "").split(",") if v != ""]
    except ValueError:
        return None
    if anchors != TINY_ANCHORS or mask != TINY_BAD_MASK:
        return None
    line = second.options["mask"][1]
    second.options["mask"] = (",".join(str(m) for m in TINY_GOOD_MASK), line)
    return ("%s line %d: second [yolo] mask = 0,1,2 replaced by mask = 1,2,3 "
            "(the yolov3-tiny weights were trained with 1,2,3)" % (os.path.basename(second.path), line))


# ---------------------------------------------------------------------------------------
# weights


class Weights:
    def __init__(self, path):
        self.path = path
        try:
            data = open(path, "rb").read()
        except OSError as e:
            raise ConvertError("cannot read weights %s: %s" % (path, e.strerror or e))
        if len(data) < 16:
            raise ConvertError("%s: %d bytes is too short for a Darknet weights header" % (path, len(data)))
        major, minor, revision = np.frombuffer(data, dtype="<i4", count=3)
        major, minor, revision = int(major), int(minor), int(revision)
        if major >= 1000 or minor >= 1000:
            raise ConvertError("%s: header version %d.%d marks transposed weights, not supported"
                               % (path, major, minor))
        if major * 10 + minor >= 2:
            seen = int(np.frombuffer(data, dtype="<i8", count=1, offset=12)[0])
            header = 20
        else:
            seen = int(np.frombuffer(data, dtype="<i4", count=1, offset=12)[0])
            header = 16
        body = len(data) - header
        if body % 4:
            raise ConvertError("%s: %d bytes after the %d-byte header is not a whole number of float32"
                               % (path, body, header))
        self.header = {"major": major, "minor": minor, "revision": revision, "seen": seen}
        self.header_bytes = header
        self.values = np.frombuffer(data, dtype="<f4", offset=header)
        self.pos = 0
        self.sha256 = hashlib.sha256(data).hexdigest()

    def take(self, n, what):
        if self.pos + n > len(self.values):
            raise ConvertError("%s: ran out of values reading %s (needs %d at offset %d, file has %d)"
                               % (self.path, what, n, self.pos, len(self.values)))
        out = self.values[self.pos:self.pos + n].astype(np.float64)
        self.pos += n
        return out


class WeightCounter:
    """Stands in for Weights in a dry run that counts the values the cfg asks for."""

    def __init__(self):
        self.pos = 0

    def take(self, n, what):
        self.pos += n
        return np.zeros(n, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# graph building


class Graph:
    def __init__(self, onnx_mod):
        self.onnx = onnx_mod
        self.helper = onnx_mod.helper
        self.nodes = []
        self.initializers = []

    def const(self, name, array):
        array = np.ascontiguousarray(array)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, name, **attrs):
        out = name
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def activation(g, kind, x, name, section):
    if kind == "linear":
        return x
    if kind == "leaky":
        return g.node("LeakyRelu", [x], name + "_leaky", alpha=LEAKY_SLOPE)
    if kind == "relu":
        return g.node("Relu", [x], name + "_relu")
    if kind == "logistic":
        return g.node("Sigmoid", [x], name + "_logistic")
    raise ConvertError("%s: activation `%s` is not supported (linear, leaky, relu, logistic are)"
                       % (section.where("activation"), kind))


def build(sections, weights, width, height, onnx_mod, opts):
    net = sections[0]
    channels = net.int("channels", 3)
    if channels != 3:
        raise ConvertError("%s: channels=%d, only 3-channel (RGB) networks are supported"
                           % (net.where("channels"), channels))

    g = Graph(onnx_mod)
    x = "images"
    shapes = []  # per layer: (tensor name, C, H, W)
    heads = []   # decoded head tensors [1, A*H*W, 5+classes]
    head_info = []
    cur = (x, 3, height, width)
    layers = sections[1:]

    for i, s in enumerate(layers):
        if s.kind not in ("convolutional", "conv", "maxpool", "upsample", "route", "shortcut", "yolo"):
            raise ConvertError("%s: layer %d: unsupported layer type [%s]" % (s.where(), i, s.kind))

    for i, s in enumerate(layers):
        name = "L%02d" % i
        prev_name, c, h, w = cur
        if s.kind in ("convolutional", "conv"):
            n = s.int("filters")
            k = s.int("size")
            stride = s.int("stride", 1)
            for key in ("stride_x", "stride_y"):
                if s.has(key) and s.int(key) != stride:
                    raise ConvertError("%s: [convolutional] %s differing from stride is not supported"
                                       % (s.where(key), key))
            s.require_default("dilation", 1, "no dilated convolutions")
            s.require_default("binary", 0, "no binary weights")
            s.require_default("xnor", 0, "no XNOR networks")
            groups = s.int("groups", 1)
            if c % groups or n % groups:
                raise ConvertError("%s: groups=%d does not divide %d input / %d output channels"
                                   % (s.where("groups"), groups, c, n))
            pad = s.int("padding", 0)
            if s.int("pad", 0):
                pad = k // 2
            bn = s.int("batch_normalize", 0)
            act = s.raw("activation", "logistic")
            bias = weights.take(n, "layer %d biases" % i)
            if bn:
                scales = weights.take(n, "layer %d bn scales" % i)
                mean = weights.take(n, "layer %d bn rolling mean" % i)
                var = weights.take(n, "layer %d bn rolling variance" % i)
            kernel = weights.take(n * (c // groups) * k * k, "layer %d weights" % i)
            kernel = kernel.reshape(n, c // groups, k, k)
            if bn:
                factor = scales / (np.sqrt(var) + BN_EPSILON)
                kernel = kernel * factor[:, None, None, None]
                bias = bias - mean * factor
            wname = g.const(name + "_W", kernel.astype(np.float32))
            bname = g.const(name + "_B", bias.astype(np.float32))
            y = g.node("Conv", [prev_name, wname, bname], name + "_conv",
                       kernel_shape=[k, k], strides=[stride, stride], pads=[pad, pad, pad, pad],
                       group=groups, dilations=[1, 1])
            oh = (h + 2 * pad - k) // stride + 1
            ow = (w + 2 * pad - k) // stride + 1
            y = activation(g, act, y, name, s)
            cur = (y, n, oh, ow)
        elif s.kind == "maxpool":
            k = s.int("size", 1)
            stride = s.int("stride", 1)
            s.require_default("maxpool_depth", 0, "no channel-wise maxpool")
            if s.has("stride_x") or s.has("stride_y"):
                raise ConvertError("%s: [maxpool] stride_x/stride_y are not supported" % s.where())
            padding = s.int("padding", k - 1)
            # Darknet: out = (in + padding - size) / stride + 1, first window starts at
            # -padding/2 (C division), so the rest of the padding is at the right/bottom.
            oh = (h + padding - k) // stride + 1
            ow = (w + padding - k) // stride + 1
            begin = padding // 2
            end_h = max(0, (oh - 1) * stride + k - h - begin)
            end_w = max(0, (ow - 1) * stride + k - w - begin)
            if (opts.maxpool == "slices" and k == 2 and stride == 2 and begin == 0
                    and end_h == 0 and end_w == 0):
                # The same 2x2/2 max as two halvings: max of even and odd rows,
                # then of even and odd columns (strided Slice + Max; rows first, as
                # they copy contiguously). Exactly MaxPool's result. tract runs it
                # faster than its MaxPool on one thread and slower on two;
                # onnxruntime always slower (docs/benchmarks.md).
                two = g.const(name + "_step2", np.array([2], dtype=np.int64))
                zero = g.const(name + "_at0", np.array([0], dtype=np.int64))
                one = g.const(name + "_at1", np.array([1], dtype=np.int64))
                big = g.const(name + "_end", np.array([2 ** 62], dtype=np.int64))
                ax_w = g.const(name + "_axis_w", np.array([3], dtype=np.int64))
                ax_h = g.const(name + "_axis_h", np.array([2], dtype=np.int64))
                he = g.node("Slice", [prev_name, zero, big, ax_h, two], name + "_pool_rows_even")
                ho = g.node("Slice", [prev_name, one, big, ax_h, two], name + "_pool_rows_odd")
                hm = g.node("Max", [he, ho], name + "_pool_rows")
                we = g.node("Slice", [hm, zero, big, ax_w, two], name + "_pool_cols_even")
                wo = g.node("Slice", [hm, one, big, ax_w, two], name + "_pool_cols_odd")
                y = g.node("Max", [we, wo], name + "_maxpool")
            else:
                y = g.node("MaxPool", [prev_name], name + "_maxpool", kernel_shape=[k, k],
                           strides=[stride, stride], pads=[begin, begin, end_h, end_w])
            cur = (y, c, oh, ow)
        elif s.kind == "upsample":
            stride = s.int("stride", 2)
            if stride < 1:
                raise ConvertError("%s: [upsample] stride=%d (downsampling) is not supported"
                                   % (s.where("stride"), stride))
            if s.float("scale", 1.0) != 1.0:
                raise ConvertError("%s: [upsample] scale other than 1 is not supported" % s.where("scale"))
            if opts.upsample == "resize":
                scales = g.const(name + "_scales", np.array([1, 1, stride, stride], dtype=np.float32))
                y = g.node("Resize", [prev_name, "", scales], name + "_upsample", mode="nearest",
                           coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            else:
                # [1,C,H,W] -> [1,C,H,1,W,1] -> broadcast to [1,C,H,s,W,s] -> [1,C,sH,sW]
                s6 = g.const(name + "_shape6", np.array([1, c, h, 1, w, 1], dtype=np.int64))
                ex = g.const(name + "_expand", np.array([1, c, h, stride, w, stride], dtype=np.int64))
                s4 = g.const(name + "_shape4", np.array([1, c, h * stride, w * stride], dtype=np.int64))
                y = g.node("Reshape", [prev_name, s6], name + "_up_r6")
                y = g.node("Expand", [y, ex], name + "_up_expand")
                y = g.node("Reshape", [y, s4], name + "_upsample")
            cur = (y, c, h * stride, w * stride)
        elif s.kind == "route":
            s.require_default("groups", 1, "no grouped route")
            refs = s.ints("layers")
            parts = []
            for r in refs:
                j = i + r if r < 0 else r
                if not 0 <= j < i:
                    raise ConvertError("%s: route to layer %d, which is not an earlier layer"
                                       % (s.where("layers"), j))
                if layers[j].kind == "yolo":
                    raise ConvertError("%s: route to a [yolo] layer is not supported" % s.where("layers"))
                parts.append(shapes[j])
            ph, pw = parts[0][2], parts[0][3]
            for p in parts:
                if (p[2], p[3]) != (ph, pw):
                    raise ConvertError("%s: route joins layers of different sizes %s (input size must be "
                                       "a multiple of 32)" % (s.where("layers"), [(q[2], q[3]) for q in parts]))
            if len(parts) == 1:
                cur = parts[0]
            else:
                y = g.node("Concat", [p[0] for p in parts], name + "_route", axis=1)
                cur = (y, sum(p[1] for p in parts), ph, pw)
        elif s.kind == "shortcut":
            r = s.ints("from")
            if len(r) != 1:
                raise ConvertError("%s: shortcut from several layers is not supported" % s.where("from"))
            j = i + r[0] if r[0] < 0 else r[0]
            if not 0 <= j < i:
                raise ConvertError("%s: shortcut from layer %d, which is not an earlier layer"
                                   % (s.where("from"), j))
            other = shapes[j]
            if other[1:] != (c, h, w):
                raise ConvertError("%s: shortcut between shapes %s and %s is not supported"
                                   % (s.where("from"), other[1:], (c, h, w)))
            s.require_default("weights_type", "none", "no weighted shortcut")
            y = g.node("Add", [prev_name, other[0]], name + "_shortcut")
            y = activation(g, s.raw("activation", "linear"), y, name, s)
            cur = (y, c, h, w)
        elif s.kind == "yolo":
            classes = s.int("classes", 20)
            num = s.int("num", 1)
            anchors = [float(v) for v in s.raw("anchors", "").split(",") if v != ""]
            if len(anchors) != 2 * num:
                raise ConvertError("%s: %d anchor values for num=%d (expected %d)"
                                   % (s.where("anchors"), len(anchors), num, 2 * num))
            mask = s.ints("mask", list(range(num)))
            for m in mask:
                if not 0 <= m < num:
                    raise ConvertError("%s: mask index %d outside 0..%d" % (s.where("mask"), m, num - 1))
            s.require_default("new_coords", 0, "only the classic sigmoid/exp box encoding")
            scale_xy = s.float("scale_x_y", 1.0)
            a = len(mask)
            entries = 5 + classes
            if c != a * entries:
                raise ConvertError("%s: [yolo] with %d masks and %d classes needs %d input channels, "
                                   "the layer before it gives %d" % (s.where(), a, classes, a * entries, c))
            head = "H%d" % len(heads)
            r5 = g.const(head + "_shape5", np.array([1, a, entries, h, w], dtype=np.int64))
            t = g.node("Reshape", [prev_name, r5], head + "_reshape")
            sig = g.node("Sigmoid", [t], head + "_sigmoid")

            def sl(src, start, end, label):
                st = g.const(head + "_%s_start" % label, np.array([start], dtype=np.int64))
                en = g.const(head + "_%s_end" % label, np.array([end], dtype=np.int64))
                ax = g.const(head + "_%s_axis" % label, np.array([2], dtype=np.int64))
                return g.node("Slice", [src, st, en, ax], head + "_" + label)

            xy = sl(sig, 0, 2, "xy")
            wh = sl(t, 2, 4, "wh")
            rest = sl(sig, 4, entries, "scores")
            stride_x = width / float(w)
            stride_y = height / float(h)
            # pixel = sigmoid * scale_xy * stride + (col - (scale_xy-1)/2) * stride
            mul = np.array([stride_x * scale_xy, stride_y * scale_xy], dtype=np.float32).reshape(1, 1, 2, 1, 1)
            off = (scale_xy - 1.0) / 2.0
            grid = np.zeros((1, 1, 2, h, w), dtype=np.float32)
            grid[0, 0, 0] = (np.arange(w, dtype=np.float64)[None, :] - off) * stride_x
            grid[0, 0, 1] = (np.arange(h, dtype=np.float64)[:, None] - off) * stride_y
            xy = g.node("Mul", [xy, g.const(head + "_xy_scale", mul)], head + "_xy_scaled")
            xy = g.node("Add", [xy, g.const(head + "_grid", grid)], head + "_xy_pixels")
            anchor_arr = np.array([[anchors[2 * m], anchors[2 * m + 1]] for m in mask],
                                  dtype=np.float32).reshape(1, a, 2, 1, 1)
            wh = g.node("Exp", [wh], head + "_wh_exp")
            wh = g.node("Mul", [wh, g.const(head + "_anchors", anchor_arr)], head + "_wh_pixels")
            y = g.node("Concat", [xy, wh, rest], head + "_decoded", axis=2)
            y = g.node("Transpose", [y], head + "_transpose", perm=[0, 1, 3, 4, 2])
            r3 = g.const(head + "_shape3", np.array([1, a * h * w, entries], dtype=np.int64))
            y = g.node("Reshape", [y, r3], head + "_boxes")
            heads.append((y, a * h * w, entries))
            head_info.append({"grid": [w, h], "anchors": anchor_arr.reshape(a, 2).tolist(),
                              "mask": mask, "classes": classes, "rows": a * h * w,
                              "cfg_line": s.line})
            # a [yolo] layer's own output (its input, partly activated) is not routed anywhere
        shapes.append(cur)

    if not heads:
        raise ConvertError("%s: no [yolo] layer, nothing to output" % net.path)
    entries = {e for _, _, e in heads}
    if len(entries) != 1:
        raise ConvertError("[yolo] layers disagree on the number of classes")
    total = sum(r for _, r, _ in heads)
    if len(heads) == 1:
        g.nodes[-1].output[0] = "boxes"
    else:
        g.node("Concat", [hd[0] for hd in heads], "boxes", axis=1)
    return g, total, entries.pop(), head_info


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert a Darknet YOLO (cfg + weights) to ONNX with in-graph box decoding.")
    ap.add_argument("--cfg", required=True, help="Darknet .cfg file")
    ap.add_argument("--weights", required=True, help="Darknet .weights file")
    ap.add_argument("--names", required=True, help="class names, one per line (coco.names)")
    ap.add_argument("--width", required=True, type=int, help="input width in pixels, multiple of 32")
    ap.add_argument("--height", required=True, type=int, help="input height in pixels, multiple of 32")
    ap.add_argument("--out", required=True, help="output .onnx path (a .names file is written beside it)")
    ap.add_argument("--no-mask-fix", action="store_true",
                    help="keep the yolov3-tiny cfg's wrong `mask = 0,1,2` (for comparisons only)")
    ap.add_argument("--upsample", choices=["resize", "expand"], default="resize",
                    help="how [upsample] is written: one Resize (nearest) op, or Reshape+Expand+Reshape")
    ap.add_argument("--maxpool", choices=["pool", "slices"], default="pool",
                    help="how an unpadded 2x2 stride-2 [maxpool] is written: one MaxPool op, or strided "
                         "Slices + Max (faster in tract on one thread, slower on two; see docs/benchmarks.md)")
    args = ap.parse_args(argv)
    try:
        convert(args)
    except ConvertError as e:
        print("darknet2onnx: error: %s" % e, file=sys.stderr)
        return 1
    return 0


def convert(args):
    for what, v in (("--width", args.width), ("--height", args.height)):
        if v <= 0 or v % 32:
            raise ConvertError("%s %d is not a positive multiple of 32 (YOLO downsamples by 32)" % (what, v))
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ConvertError("the `onnx` Python package is not installed (scripts/fetch-model.sh sets up a venv with it)")

    try:
        with open(args.names, "r", encoding="utf-8") as f:
            labels = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except OSError as e:
        raise ConvertError("cannot read names %s: %s" % (args.names, e.strerror or e))

    sections = parse_cfg(args.cfg)
    fix = None if args.no_mask_fix else apply_tiny_mask_fix(sections)
    with open(args.cfg, "rb") as f:
        cfg_sha = hashlib.sha256(f.read()).hexdigest()
    weights = Weights(args.weights)

    # Dry run first: checks the cfg and counts the float32 values it needs, so that a
    # cfg/weights mismatch is reported with both numbers before anything is read.
    counter = WeightCounter()
    build(sections, counter, args.width, args.height, onnx, args)
    if counter.pos != len(weights.values):
        raise ConvertError(
            "weight count mismatch: %s needs %d float32 values after the header, %s holds %d (%+d)"
            % (args.cfg, counter.pos, args.weights, len(weights.values), len(weights.values) - counter.pos))

    g, rows, entries, head_info = build(sections, weights, args.width, args.height, onnx, args)
    classes = entries - 5
    if len(labels) != classes:
        raise ConvertError("%s has %d names, the network has %d classes" % (args.names, len(labels), classes))

    h = onnx.helper
    inp = h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, args.height, args.width])
    out = h.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, rows, entries])
    graph = h.make_graph(g.nodes, "yolo", [inp], [out], initializer=g.initializers)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name=CONVERTER_NAME, producer_version=CONVERTER_VERSION)
    model.ir_version = IR_VERSION
    model.doc_string = (
        "Darknet %s converted by %s %s. Input `images` float32 [1,3,%d,%d] RGB in [0,1]. Output `boxes` "
        "float32 [1,%d,%d]: cx, cy, w, h in input pixels, objectness, %d class probabilities (sigmoid); "
        "score = objectness * class probability; NMS not included."
        % (os.path.basename(args.cfg), CONVERTER_NAME, CONVERTER_VERSION, args.height, args.width,
           rows, entries, classes))
    meta = {
        "labels": "\n".join(labels),
        "converter": "%s %s" % (CONVERTER_NAME, CONVERTER_VERSION),
        "source_cfg": os.path.basename(args.cfg),
        "source_cfg_sha256": cfg_sha,
        "source_weights": os.path.basename(args.weights),
        "source_weights_sha256": weights.sha256,
        "darknet_header": "version %(major)d.%(minor)d.%(revision)d, seen %(seen)d" % weights.header,
        "maxpool": args.maxpool,
        "cfg_fix": fix or ("none (disabled with --no-mask-fix)" if args.no_mask_fix else "none needed"),
        "input": "images float32 [1,3,%d,%d] RGB planar, pixel/255" % (args.height, args.width),
        "output": "boxes float32 [1,%d,%d] cx,cy,w,h (input pixels), objectness, class probs" % (rows, entries),
        "heads": "; ".join("grid %dx%d anchors %s" % (hi["grid"][0], hi["grid"][1],
                                                       ",".join("%gx%g" % tuple(a) for a in hi["anchors"]))
                           for hi in head_info),
    }
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key = k
        entry.value = v

    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    got = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    if got != [1, rows, entries]:
        raise ConvertError("internal: inferred output shape %s, expected %s" % (got, [1, rows, entries]))

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, args.out)
    names_path = os.path.splitext(args.out)[0] + ".names"
    with open(names_path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    os.replace(names_path + ".tmp", names_path)

    print("darknet2onnx %s: %s + %s -> %s" % (CONVERTER_VERSION, args.cfg, args.weights, args.out))
    print("  darknet header: %s; %d float32 weights, all consumed" % (meta["darknet_header"], weights.pos))
    print("  cfg fix: %s" % meta["cfg_fix"])
    for hi in head_info:
        print("  head: grid %dx%d, mask %s, anchors (input px) %s" % (hi["grid"][0], hi["grid"][1], hi["mask"],
                                                                      hi["anchors"]))
    print("  input  images float32 [1, 3, %d, %d] (RGB, 0..1)" % (args.height, args.width))
    print("  output boxes  float32 [1, %d, %d] (cx, cy, w, h, objectness, %d classes)" % (rows, entries, classes))
    print("  labels: %s (%d names, also in metadata_props['labels'])" % (names_path, len(labels)))


if __name__ == "__main__":
    sys.exit(main())
