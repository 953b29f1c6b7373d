#!/usr/bin/env python3
"""Writes the tiny ONNX models the inference tests use (tests/fixtures/models/).

Run with the venv of scripts/fetch-model.sh (needs `onnx` and `numpy`):

    ~/.cache/vigil/py/bin/python tools/make_test_models.py

- mean-rgb-32.onnx: input `images` [1,3,32,32] → output `mean` [1,3] (the mean
  of each channel): lets a test check the host-built tensor exactly.
- dynamic.onnx: the same with a free height and width (refused: not fixed).
"""
import os
import sys

import onnx
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models")


def mean_model(h, w, name):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, 3])
    node = helper.make_node("ReduceMean", ["images"], ["mean"], axes=[2, 3], keepdims=0)
    g = helper.make_graph([node], name, [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def main():
    os.makedirs(OUT, exist_ok=True)
    onnx.save(mean_model(32, 32, "mean-rgb-32"), os.path.join(OUT, "mean-rgb-32.onnx"))
    onnx.save(mean_model("h", "w", "dynamic"), os.path.join(OUT, "dynamic.onnx"))
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
