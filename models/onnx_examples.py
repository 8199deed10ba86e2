"""Small example ONNX models built with the ``onnx`` helper API, for the demonstrations, the
benchmarks and the tests (no download: the models are made here).

Every builder returns the serialized model and, when ``path`` is given, also writes it there.
Opset 17 with IR version 10: accepted by onnxruntime 1.32 (and older releases back to 1.16).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 10


def _finish(graph: onnx.GraphProto, path: Path | str | None) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="model-registry-examples")
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def default_weights(in_features: int, out_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic, non-trivial weights (so a wrong feed shows up as a wrong answer)."""
    weights = np.arange(in_features * out_features, dtype=np.float32).reshape(
        in_features, out_features) / 10.0 - 0.5
    bias = np.linspace(-1.0, 1.0, out_features, dtype=np.float32)
    return weights, bias


def _affine(in_features: int, out_features: int, weights: np.ndarray | None,
            bias: np.ndarray | None) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    w0, b0 = default_weights(in_features, out_features)
    w = np.asarray(w0 if weights is None else weights, dtype=np.float32)
    b = np.asarray(b0 if bias is None else bias, dtype=np.float32)
    assert w.shape == (in_features, out_features) and b.shape == (out_features,)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "B"], ["logits"])]
    return nodes, [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]


def linear_model(path: Path | str | None = None, in_features: int = 4, out_features: int = 2,
                 weights: np.ndarray | None = None, bias: np.ndarray | None = None) -> bytes:
    """``y = x @ W + B``: input ``x`` float32[N, in_features], output ``y`` [N, out_features]."""
    nodes, inits = _affine(in_features, out_features, weights, bias)
    nodes.append(helper.make_node("Identity", ["logits"], ["y"]))
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_features])],
        initializer=inits)
    return _finish(graph, path)


def classifier_model(path: Path | str | None = None, in_features: int = 4, classes: int = 3,
                     weights: np.ndarray | None = None, bias: np.ndarray | None = None) -> bytes:
    """``softmax(x @ W + B)``: input ``x`` float32[N, in_features], output ``probabilities``
    float32[N, classes]."""
    nodes, inits = _affine(in_features, classes, weights, bias)
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializer=inits)
    return _finish(graph, path)


def two_input_model(path: Path | str | None = None, features: int = 3) -> bytes:
    """Inputs ``a`` float32[N, features] and ``b`` int64[N, features]; outputs
    ``sum = a + float(b)`` and ``product = a * float(b)``."""
    nodes = [helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["a", "b_float"], ["sum"]),
             helper.make_node("Mul", ["a", "b_float"], ["product"])]
    graph = helper.make_graph(
        nodes, "two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", features]),
         helper.make_tensor_value_info("b", TensorProto.INT64, ["N", features])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", features]),
         helper.make_tensor_value_info("product", TensorProto.FLOAT, ["N", features])])
    return _finish(graph, path)


def failing_model(path: Path | str | None = None, in_features: int = 4) -> bytes:
    """Loads fine and accepts float32[N, in_features], but every run fails inside the graph
    (a Reshape to [7, 11] that no input of that width can satisfy): a runtime failure."""
    assert 77 % in_features != 0, "pick a width that does not divide 7 * 11"
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    graph = helper.make_graph(
        nodes, "failing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 11])],
        initializer=[numpy_helper.from_array(np.array([7, 11], dtype=np.int64), "shape")])
    return _finish(graph, path)


def batch_of_one_model(path: Path | str | None = None, in_features: int = 4,
                       out_features: int = 2) -> bytes:
    """A linear model with a bug: it answers a batch of one row (so it passes a health probe)
    but fails at run time on any larger batch (a Reshape to [1, in_features]) — a version that
    breaks only under real traffic, for the automatic-rollback demonstrations."""
    nodes, inits = _affine(in_features, out_features, None, None)
    nodes = [helper.make_node("Reshape", ["x", "one_row"], ["x1"]),
             *[_rename_input(n, "x", "x1") for n in nodes],
             helper.make_node("Identity", ["logits"], ["y"])]
    inits.append(numpy_helper.from_array(np.array([1, in_features], dtype=np.int64), "one_row"))
    graph = helper.make_graph(
        nodes, "batch_of_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_features])],
        initializer=inits)
    return _finish(graph, path)


def _rename_input(node: onnx.NodeProto, old: str, new: str) -> onnx.NodeProto:
    node.input[:] = [new if name == old else name for name in node.input]
    return node
