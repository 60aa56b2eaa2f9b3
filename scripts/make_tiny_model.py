#!/usr/bin/env python3
"""Writes the tiny CIFAR-shaped CNN that fovea's tests use, so a fresh clone
can test without downloads.

The network (conv 3->8 3x3 stride 2, ReLU, global average pool, gemm -> 10)
has random but deterministic weights (numpy seed 0): its predictions mean
nothing, but every backend must agree on them.

Outputs:
  crates/fovea-engine/tests/fixtures/tiny-cifar.onnx

Usage: python3 scripts/make_tiny_model.py   (needs the `onnx` and `numpy` packages)
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "crates/fovea-engine/tests/fixtures/tiny-cifar.onnx"





def build_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    # He-style scales keep the logits spread out, so argmax is not decided by rounding.
    conv_w = (rng.standard_normal((8, 3, 3, 3)) * np.sqrt(2.0 / 27)).astype(np.float32)
    conv_b = (rng.standard_normal(8) * 0.1).astype(np.float32)
    fc_w = (rng.standard_normal((10, 8)) * np.sqrt(2.0 / 8)).astype(np.float32)
    fc_b = (rng.standard_normal(10) * 0.1).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"],
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cifar",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(fc_w, "fc_w"),
            numpy_helper.from_array(fc_b, "fc_b"),
        ],
    )
    model = helper.make_model(
        graph,
        producer_name="fovea/scripts/make_tiny_model.py",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    # IR 8 keeps the file loadable by older ONNX Runtime builds as well.
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    data = build_model().SerializeToString()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_bytes(data)
    print(f"wrote {FIXTURE.relative_to(REPO)} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
