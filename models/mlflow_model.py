"""An ONNX version seen as an MLflow model directory: ``MLmodel`` + ``model.onnx``.

MLflow's client loads a registered model by listing and downloading a directory whose
``MLmodel`` file names its flavors. For an ONNX version that directory is generated: the
descriptor below (onnx + python_function flavors, ``loader_module: mlflow.onnx``) and a tensor
signature read from the graph's declared inputs and outputs, so that
``mlflow.pyfunc.load_model(...).predict(x)`` runs the very bytes this server runs.
JSON is valid YAML, so the descriptor is written with the standard library.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

ONNX_FILE = "model.onnx"
MLMODEL_FILE = "MLmodel"
# The MLflow release whose model format is generated (issue 17 targets MLflow 3.17's client).
MLFLOW_FORMAT_VERSION = "3.17.2"


def _tensor_specs(values: Any) -> list[dict[str, Any]]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        specs.append({"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape},
                      "name": value.name})
    return specs


def mlmodel_descriptor(onnx_path: Path, *, model_name: str, number: int,
                       created_at: str) -> str:
    """The ``MLmodel`` text for the ONNX file at ``onnx_path`` (weights are not read)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    python = ".".join(map(str, sys.version_info[:3]))
    descriptor = {
        "artifact_path": "model",
        "flavors": {
            "onnx": {"code": None, "data": ONNX_FILE, "onnx_version": onnx.__version__,
                     "providers": ["CPUExecutionProvider"]},
            "python_function": {"data": ONNX_FILE, "loader_module": "mlflow.onnx",
                                "python_version": python},
        },
        "mlflow_version": MLFLOW_FORMAT_VERSION,
        "model_size_bytes": onnx_path.stat().st_size,
        "signature": {"inputs": json.dumps(_tensor_specs(inputs)),
                      "outputs": json.dumps(_tensor_specs(graph.output)), "params": None},
        "utc_time_created": created_at,
        "metadata": {"registered_model": model_name, "registered_version": number},
    }
    return json.dumps(descriptor, indent=2) + "\n"
