"""Open Inference Protocol v2 (KServe / Triton REST) for tensor models (ONNX versions).

A thin translator over the one gateway: ``/v2/models/{name}/infer`` is routed by the traffic
table, ``/v2/models/{name}/versions/{v}/infer`` pins ``v`` (a version, alias or range), and
both are tracked and fall back exactly as predict. JSON tensors and the binary tensor
extension (``Inference-Header-Content-Length``) are both understood; a body without
``Content-Type`` is accepted, as ``tritonclient`` sends none.
"""
from __future__ import annotations

import json
import struct
from typing import Any, Literal, Optional

import numpy as np
from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from api import protocol_errors
from api.cost_header import set_cost
from api.services import api_key_name, services
from api.spec import EXTRA_OPERATIONS, schema_ref
from deployment.model_ref import parse_model_ref
from errors import InvalidArgument, Unavailable
from models.base_model import Prediction, TensorSpec

bp = Blueprint("oip", __name__, url_prefix="/v2")
protocol_errors.install(bp, lambda status, code, message, param: {"error": message})

HEADER_LENGTH = "Inference-Header-Content-Length"
# OIP datatype ↔ numpy dtype name.
DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
             "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
             "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
             "BYTES": "str"}
NUMPY_TO_OIP = {v: k for k, v in DATATYPES.items()}
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                   "INT64", "FP16", "FP32", "FP64", "BYTES"]


class TensorParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_size: Optional[int] = Field(None, ge=0)
    binary_data: Optional[bool] = None


class InferInput(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="sizes >= 0")
    data: Optional[Any] = Field(None, description="flat or nested values (JSON tensors)")
    parameters: TensorParameters = Field(default_factory=TensorParameters)


class RequestedOutput(BaseModel):
    name: str
    parameters: TensorParameters = Field(default_factory=TensorParameters)


class InferParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_output: bool = False


class InferRequest(BaseModel):
    """JSON, or the JSON header of the binary tensor extension."""

    id: Optional[str] = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: Optional[list[RequestedOutput]] = None
    parameters: InferParameters = Field(default_factory=InferParameters)


@bp.get("")
def server_metadata():  # type: ignore[no-untyped-def]
    return jsonify({"name": "model-registry", "version": "1.0.0",
                    "extensions": ["binary_tensor_data"]})


@bp.get("/health/live")
@bp.get("/health/ready")
def health():  # type: ignore[no-untyped-def]
    """The process answers, so it is live; it serves every model it can load, so ready."""
    return jsonify({"live": True, "ready": True})


def _served_version(name: str, version: str | None) -> tuple[str, str]:
    """(model, exact version) a readiness call is about: the pinned one, or the traffic
    table's stable version (Unavailable when nothing serves the model)."""
    ref = parse_model_ref(name)
    route = services().gateway.route(ref.name, version or ref.ref)
    return ref.name, route.stable_version or route.version


def _described_version(name: str, version: str | None) -> tuple[str, str]:
    """(model, exact version) metadata describes: as readiness, but a model that nothing
    serves yet is described by its latest version (its signature is known all the same)."""
    try:
        return _served_version(name, version)
    except Unavailable:
        model = parse_model_ref(name).name
        return model, services().registry.resolve(model, "latest").text


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):  # type: ignore[no-untyped-def]
    model, exact = _described_version(name, version)
    inputs, outputs = services().loader.get(model, exact).tensor_signature()
    return jsonify({"name": model, "versions": [exact], "platform": "onnxruntime_onnx",
                    "inputs": [_metadata(t) for t in inputs],
                    "outputs": [_metadata(t) for t in outputs]})


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):  # type: ignore[no-untyped-def]
    model, exact = _served_version(name, version)
    services().loader.get(model, exact).tensor_signature()  # loads it; errors say why not
    return jsonify({"name": model, "version": exact, "ready": True})


def _metadata(tensor: TensorSpec) -> dict[str, Any]:
    shape = [-1] if tensor.shape is None else [-1 if d is None else d for d in tensor.shape]
    return {"name": tensor.name, "datatype": NUMPY_TO_OIP.get(tensor.dtype, tensor.dtype),
            "shape": shape}


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):  # type: ignore[no-untyped-def]
    header, binary = _split_body(request.get_data())
    tensors = _inputs(header, binary)
    ref = parse_model_ref(name)
    served = services().gateway.serve(
        ref.name, lambda provider: Prediction(provider.infer(tensors)),
        version=version or ref.ref, key=request.headers.get("X-Routing-Key") or None,
        api_key=api_key_name(), example=lambda: tensors)
    response = _outputs(header, served.prediction.output,
                        {"model_name": ref.name, "model_version": served.version})
    response.headers["x-model-version"] = served.version
    return set_cost(response, served.cost)   # no usage object in OIP: the header only


def _split_body(raw: bytes) -> tuple[InferRequest, bytes]:
    length = request.headers.get(HEADER_LENGTH)
    try:
        size = int(length) if length is not None else len(raw)
        if not 0 <= size <= len(raw):
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"{HEADER_LENGTH} must be an integer from 0 to the body size "
                              f"({len(raw)}), got {length!r}") from None
    return InferRequest.model_validate_json(raw[:size] or b"{}"), raw[size:]


def _inputs(header: InferRequest, binary: bytes) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(header.inputs):
        where = f"inputs[{i}]"
        if any(d < 0 for d in item.shape):
            raise InvalidArgument(f"{where}.shape must hold sizes >= 0, got {item.shape}")
        size = item.parameters.binary_data_size
        if size is not None:
            if offset + size > len(binary):
                raise InvalidArgument(f"{where}.parameters.binary_data_size ({size}) runs "
                                      f"past the {len(binary)} bytes of binary data")
            array = _from_bytes(binary[offset:offset + size], item.datatype, where)
            offset += size
        elif item.data is not None:
            array = _from_json(item.data, item.datatype, where)
        else:
            raise InvalidArgument(f"{where} has neither 'data' nor "
                                  f"parameters.binary_data_size")
        try:
            tensors[item.name] = array.reshape(item.shape)
        except ValueError:
            raise InvalidArgument(f"{where} holds {array.size} values, which do not fill "
                                  f"shape {item.shape}") from None
    return tensors


def _from_json(data: Any, datatype: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(data).reshape(-1)
    except ValueError:
        raise InvalidArgument(f"{where}.data is not a rectangular array") from None
    if datatype == "BYTES":
        return array.astype(str)
    if array.size and array.dtype.kind not in "biuf":
        raise InvalidArgument(f"{where}.data must hold numbers for datatype {datatype}")
    # Converted by the provider, which refuses what would lose information (floats → ints).
    return array


def _from_bytes(blob: bytes, datatype: str, where: str) -> np.ndarray:
    if datatype == "BYTES":  # each element: 4-byte little-endian length, then the bytes
        items, pos = [], 0
        while pos < len(blob):
            if pos + 4 > len(blob):
                raise InvalidArgument(f"{where}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", blob, pos)
            items.append(blob[pos + 4:pos + 4 + n].decode("utf-8", "replace"))
            pos += 4 + n
        return np.asarray(items, dtype=str)
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if len(blob) % dtype.itemsize:
        raise InvalidArgument(f"{where}: {len(blob)} bytes is not a whole number of "
                              f"{datatype} values")
    return np.frombuffer(blob, dtype=dtype)


def _outputs(header: InferRequest, results: dict[str, Any],
             meta: dict[str, Any]) -> Response:
    """The requested outputs (all by default), as JSON or binary per output."""
    default_binary = header.parameters.binary_data_output
    wanted = header.outputs or [RequestedOutput(name=n) for n in results]
    body: dict[str, Any] = {**meta, "outputs": []}
    if header.id is not None:
        body["id"] = header.id
    blobs: list[bytes] = []
    for i, item in enumerate(wanted):
        if item.name not in results:
            raise InvalidArgument(f"outputs[{i}].name must be one of {sorted(results)}, "
                                  f"got {item.name!r}")
        array = np.asarray(results[item.name])
        datatype = NUMPY_TO_OIP.get("str" if array.dtype.kind in "OUS" else array.dtype.name)
        if datatype is None:
            raise InvalidArgument(f"output '{item.name}' ({array.dtype}) has no OIP datatype")
        out: dict[str, Any] = {"name": item.name, "datatype": datatype,
                               "shape": list(array.shape)}
        binary = item.parameters.binary_data
        if binary if binary is not None else default_binary:
            blob = _to_bytes(array, datatype)
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = array.reshape(-1).tolist()
        body["outputs"].append(out)
    if not blobs:
        return jsonify(body)
    head = json.dumps(body).encode()
    response = Response(head + b"".join(blobs), mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(head))
    return response


def _to_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b
                        for b in (str(v).encode() for v in array.reshape(-1)))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "model name, or name@ref"}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "a version, alias or range"}
_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string", "enum": sorted(DATATYPES)},
    "shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array"},
    "parameters": {"type": "object"}}}
_OIP_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}}
_ERRORS = {str(s): _OIP_ERROR for s in (400, 401, 403, 404, 409, 413, 429, 502, 503, 504)}


def _op(summary: str, op_id: str, params: list[dict[str, Any]], ok: dict[str, Any],
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    op = {"tags": ["open inference protocol"], "summary": summary, "operationId": op_id,
          "parameters": params, "responses": {"200": ok, **_ERRORS}}
    if body is not None:
        op["requestBody"] = body
    return op


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_INFER_BODY = {"required": True, "description": (
    "JSON (`inputs` with `data`), or the binary tensor extension: a JSON header of "
    f"`{HEADER_LENGTH}` bytes followed by the raw tensors (`parameters.binary_data_size`). "
    "Any or no Content-Type."), "content": {
    "application/json": {"schema": schema_ref(InferRequest)},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
_INFER_OK = {"description": "outputs (JSON, or JSON header + binary tensors)", "content": {
    "application/json": {"schema": {"type": "object", "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
_META_OK = _json({"type": "object", "properties": {
    "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
    "platform": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR},
    "outputs": {"type": "array", "items": _TENSOR}}}, "model metadata from the ONNX graph")
_READY_OK = _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}, "ready")
_HEALTH_OK = _json({"type": "object", "properties": {"live": {"type": "boolean"},
                                                     "ready": {"type": "boolean"}}}, "health")

EXTRA_OPERATIONS["/v2"] = {"get": _op("OIP server metadata", "oip_server_metadata", [],
                                      _json({"type": "object"}, "name, version, extensions"))}
EXTRA_OPERATIONS["/v2/health/live"] = {"get": _op("OIP liveness", "oip_live", [], _HEALTH_OK)}
EXTRA_OPERATIONS["/v2/health/ready"] = {"get": _op("OIP readiness", "oip_ready", [],
                                                   _HEALTH_OK)}
for _suffix, _params, _tag in (("", [_NAME], ""), ("/versions/{version}", [_NAME, _VERSION],
                                                   "_version")):
    _base = f"/v2/models/{{name}}{_suffix}"
    EXTRA_OPERATIONS[_base] = {"get": _op("OIP model metadata (inputs and outputs)",
                                          f"oip_model_metadata{_tag}", _params, _META_OK)}
    EXTRA_OPERATIONS[f"{_base}/ready"] = {"get": _op("OIP model readiness",
                                                     f"oip_model_ready{_tag}", _params,
                                                     _READY_OK)}
    EXTRA_OPERATIONS[f"{_base}/infer"] = {"post": _op(
        "OIP inference (routed by the traffic table, or pinned with /versions/{version})",
        f"oip_infer{_tag}", _params, _INFER_OK, _INFER_BODY)}
