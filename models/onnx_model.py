"""The ``onnx`` provider: an uploaded ONNX artifact run locally by onnxruntime (CPU).

Request ``input``:

- a JSON array, fed to the model's single input, or
- an object of named arrays ``{"input_name": [...], ...}`` naming every input exactly.

Arrays are checked against the inputs the model declares (element type, rank, static
dimensions, and symbolic dimensions such as ``N`` being equal across inputs) before the run,
so a bad request is an ``InvalidArgument`` that spells out the expected signature instead of
an onnxruntime message. Numbers are cast to the declared type; JSON floats are refused for
integer inputs (no silent truncation), booleans only feed ``bool`` inputs.

``output``: the single output as a nested list, or ``{output_name: nested list}`` when the
model has several. Usage is always ``None`` (no tokens).

Version ``config`` (all keys optional, nothing else accepted):

- ``sample_input``: the input the health probe sends; by default zeros shaped like the inputs
  (dynamic dimensions → 1).
- ``intra_op_threads``: onnxruntime threads per run (default 1). The gateway already runs many
  requests in parallel, so one thread per run avoids oversubscribing the CPU.
- ``labels``: class names for a classifier. The output then is always an object
  ``{output_name: ..., "label": ...}`` where ``label`` is the arg-max of the first output's
  last axis mapped to these names (one label per row; a plain string for a 1-D output).

``predict`` is thread-safe: ``InferenceSession.run`` may be called from many threads at once.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as OrtInvalidArgument

from errors import (FailedPrecondition, InvalidArgument, ProviderError, ProviderTimeout,
                    TooLarge, Unavailable)
from models.base_model import ModelProvider, Prediction, TensorSpec, VersionSpec
from models.deadline import WATCHDOG

log = logging.getLogger(__name__)

_DTYPES: dict[str, np.dtype] = {
    f"tensor({onnx_name})": np.dtype(np_name) for onnx_name, np_name in {
        "float": "float32", "double": "float64", "float16": "float16",
        "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
        "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
        "bool": "bool", "string": "str",
    }.items()
}
# Which JSON-derived numpy kinds each target kind accepts (f: float, i/u: integers,
# b: bool, U: str). Floats never feed integers: that would truncate silently.
_ACCEPTED_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b", "U": "U"}
_KIND_WORDS = {"f": "floats", "i": "integers", "u": "integers", "b": "booleans",
               "U": "strings", "O": "nulls, objects or mixed values"}
_MAX_THREADS = 64
# onnxruntime's words for an allocation the capped arena refused.
_ARENA_REFUSED = ("Available memory of", "BFCArena", "bad allocation")
_LABEL_KEY = "label"

Dim = int | str | None


@dataclass(frozen=True)
class TensorInfo:
    """One declared model input: its name, element type and shape (``None`` = unknown rank;
    a ``str`` dimension is symbolic, a ``None`` dimension is dynamic)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None

    @cached_property  # read on every request: dtype.name is slow
    def type_name(self) -> str:
        return "string" if self.dtype.kind == "U" else self.dtype.name

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.name}: {self.type_name}[...]"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.type_name}[{dims}]"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type_name,
                "shape": None if self.shape is None else list(self.shape)}

    def zeros(self) -> Any:
        shape = [d if isinstance(d, int) else 1 for d in (self.shape or (1,))]
        if self.dtype.kind == "U":
            return np.full(shape, "").tolist()
        return np.zeros(shape, dtype=self.dtype).tolist()


def _check_threads(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_THREADS:
        raise InvalidArgument(f"intra_op_threads must be an integer from 1 to {_MAX_THREADS}, "
                              f"got {value!r}")
    return value


def _check_labels(value: Any) -> list[str]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v for v in value)):
        raise InvalidArgument("labels must be a non-empty list of non-empty strings")
    return list(value)


def _check_sample_input(value: Any) -> Any:
    if not isinstance(value, (list, dict)):
        raise InvalidArgument("sample_input must be a JSON array or an object of named arrays")
    return value


_CONFIG_KEYS = {"sample_input": _check_sample_input, "intra_op_threads": _check_threads,
                "labels": _check_labels}


_arena_lock = threading.Lock()
_arena_bytes: int | None = None


def _share_capped_arena(memory_bytes: int) -> None:
    """One CPU arena for every session of this process, capped at ``memory_bytes``: an input
    that drives a huge allocation (``ConstantOfShape``, ``Expand``) fails instead of taking
    the machine's memory. The first load sets the cap; it lasts as long as the process."""
    global _arena_bytes
    with _arena_lock:
        if _arena_bytes is not None:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                 ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(memory_bytes, -1, -1, -1))
        _arena_bytes = memory_bytes


class OnnxModel(ModelProvider):
    """One registered ONNX version: one InferenceSession shared by every serving thread."""

    name: ClassVar[str] = "onnx"
    requires_artifact: ClassVar[bool] = True

    def __init__(self, spec: VersionSpec) -> None:
        super().__init__(spec)
        self._session: ort.InferenceSession | None = None
        self._inputs: tuple[TensorInfo, ...] = ()
        self._output_names: list[str] = []
        self._outputs: tuple[TensorInfo | None, ...] = ()
        self._labels: np.ndarray | None = None

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise InvalidArgument(
                f"unknown onnx config key(s) {unknown}; allowed keys: {sorted(_CONFIG_KEYS)}",
                details={"unknown_keys": unknown})
        return {key: _CONFIG_KEYS[key](value) for key, value in config.items()}

    @property
    def label(self) -> str:
        return f"onnx version {self.spec.model}@{self.spec.version}"

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return self._inputs

    def signature(self) -> str:
        return ", ".join(t.describe() for t in self._inputs)

    # -- loading --------------------------------------------------------------------------
    def load(self) -> None:
        config = self.validate_config(dict(self.spec.config))
        if self.spec.artifact_path is None:
            raise FailedPrecondition(f"{self.label} has no artifact to load")
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.get("intra_op_threads", 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Fatal only: a failed run reaches the caller as an exception with the same message, so
        # onnxruntime's own error log would print every failure twice.
        options.log_severity_level = 4
        _share_capped_arena(self.spec.limits.memory_bytes)
        options.add_session_config_entry("session.use_env_allocators", "1")
        try:
            session = ort.InferenceSession(str(self.spec.artifact_path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's text names files: it goes to the log only
            raise ProviderError(f"cannot load {self.label}: onnxruntime refused the "
                                "artifact") from exc
        inputs = tuple(self._tensor_info(arg) for arg in session.get_inputs())
        outputs = session.get_outputs()
        labels = config.get("labels")
        if labels is not None:
            self._check_label_output(outputs, labels)
            self._labels = np.asarray(labels, dtype=object)
        self._inputs = inputs
        self._output_names = [o.name for o in outputs]
        self._outputs = tuple(self._tensor_info(o, strict=False) for o in outputs)
        self._session = session

    def _tensor_info(self, arg: Any, strict: bool = True) -> TensorInfo | None:
        """An input's (or, ``strict=False``, an output's: None for sequences and maps)."""
        dtype = _DTYPES.get(arg.type)
        if dtype is None and not strict:
            return None
        if dtype is None:
            raise ProviderError(f"{self.label}: input '{arg.name}' has type {arg.type}, which "
                                f"the onnx provider cannot feed from JSON")
        shape = None if arg.shape is None else tuple(
            d if isinstance(d, (int, str)) else None for d in arg.shape)
        return TensorInfo(arg.name, dtype, shape)

    def _check_label_output(self, outputs: list[Any], labels: list[str]) -> None:
        if any(o.name == _LABEL_KEY for o in outputs):
            raise ProviderError(f"{self.label}: config 'labels' needs the output key "
                                f"'{_LABEL_KEY}', which a model output already uses")
        last = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(last, int) and last != len(labels):
            raise ProviderError(f"{self.label}: config has {len(labels)} labels but output "
                                f"'{outputs[0].name}' has {last} classes")

    # -- predicting -----------------------------------------------------------------------
    def predict(self, input: Any, params: dict[str, Any] | None = None) -> Prediction:
        session = self._session
        if session is None:
            raise Unavailable(f"{self.label} is not loaded")
        if params:
            raise InvalidArgument("the onnx provider takes no params")
        return Prediction(output=self._output_json(self._run(session, self._feeds(input))))

    def _run(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[Any]:
        """One run under the version's deadline, its output within the output cap."""
        limits = self.spec.limits
        run_options = ort.RunOptions()
        run_options.log_severity_level = 4

        def stop() -> None:
            run_options.terminate = True

        try:
            with WATCHDOG.armed(limits.timeout_s, stop):
                results = session.run(self._output_names, feeds, run_options)
        except Exception as exc:
            raise self._run_error(exc, run_options.terminate) from exc
        size = sum(r.nbytes for r in results if isinstance(r, np.ndarray))
        if size > limits.max_output_bytes:
            raise TooLarge(f"{self.label} would answer {size} bytes for this input, over the "
                           f"{limits.max_output_bytes}-byte output cap",
                           details={"output_bytes": size, "limit": limits.max_output_bytes})
        return results

    def tensor_signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs as the graph declares them (outputs that are sequences or maps,
        which no tensor protocol carries, are left out)."""
        if self._session is None:
            raise Unavailable(f"{self.label} is not loaded")
        return ([_spec(t) for t in self._inputs],
                [_spec(t) for t in self._outputs if t is not None])

    def infer(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """Run on named arrays (checked as ``predict`` checks JSON); the raw output arrays."""
        session = self._session
        if session is None:
            raise Unavailable(f"{self.label} is not loaded")
        return dict(zip(self._output_names, self._run(session, self._feeds(tensors))))

    def _run_error(self, exc: Exception, terminated: bool) -> Exception:
        """Whose fault a failed run is: the caller's input (4xx, never counted against the
        version), the deadline, or the version (logged; the public message stays generic)."""
        text = str(exc)
        if terminated:
            return ProviderTimeout(f"{self.label} ran past its {self.spec.limits.timeout_s:g}s "
                                   "deadline and was stopped",
                                   details={"timeout_s": self.spec.limits.timeout_s})
        if any(word in text for word in _ARENA_REFUSED):
            return TooLarge(f"{self.label} needs more memory for this input than the "
                            f"{self.spec.limits.memory_bytes}-byte cap allows",
                            details={"memory_limit": self.spec.limits.memory_bytes})
        if isinstance(exc, OrtInvalidArgument):  # data-dependent, e.g. an index out of range
            return InvalidArgument(f"{self.label} rejected the input: {text}".strip(),
                                   details=self._expected())
        # Anything else (a node failing on the declared shapes, as a broken version does on
        # every input) is the version's: its health probe fails the same way.
        return ProviderError(f"{self.label} failed: {text}".strip())

    def _expected(self) -> dict[str, Any]:
        return {"expected_inputs": [t.as_dict() for t in self._inputs]}

    def _invalid(self, message: str) -> InvalidArgument:
        return InvalidArgument(f"{message}; expected inputs: {self.signature()}",
                               details=self._expected())

    def _feeds(self, input: Any) -> dict[str, np.ndarray]:
        names = [t.name for t in self._inputs]
        if isinstance(input, dict):
            missing = [n for n in names if n not in input]
            unexpected = sorted(k for k in input if k not in names)
            if missing or unexpected:
                raise self._invalid(f"input names must be exactly {names} "
                                    f"(missing {missing}, unexpected {unexpected})")
            values = input
        elif isinstance(input, list) and len(names) == 1:
            values = {names[0]: input}
        elif isinstance(input, list):
            raise self._invalid(f"this model has {len(names)} inputs: send an object of "
                                "named arrays")
        else:
            raise self._invalid("input must be a JSON array or an object of named arrays")
        bound: dict[str, int] = {}  # symbolic dimension → size, shared by all inputs
        return {t.name: self._to_array(t, values[t.name], bound) for t in self._inputs}

    def _to_array(self, tensor: TensorInfo, value: Any, bound: dict[str, int]) -> np.ndarray:
        try:
            array = np.asarray(value)
        except ValueError:
            raise self._invalid(f"input '{tensor.name}' is not a rectangular array "
                                "(rows of different lengths)") from None
        kind = array.dtype.kind
        if array.size and kind not in _ACCEPTED_KINDS[tensor.dtype.kind]:
            raise self._invalid(f"input '{tensor.name}' expects {_values(tensor)}, got "
                                f"{_KIND_WORDS.get(kind, array.dtype.name)}")
        if array.size and tensor.dtype.kind in "iu":
            info = np.iinfo(tensor.dtype)
            if array.min() < info.min or array.max() > info.max:
                raise self._invalid(f"input '{tensor.name}' expects {_values(tensor)}, got "
                                    "values outside that range")
        self._check_shape(tensor, array.shape, bound)
        with np.errstate(over="ignore", invalid="ignore"):  # judged just below
            converted = array.astype(tensor.dtype, copy=False)
        if converted.size and tensor.dtype.kind == "f" and not np.isfinite(converted).all():
            raise self._invalid(f"input '{tensor.name}' expects finite {tensor.dtype.name} "
                                "values; got a value out of that range")
        return converted

    def _check_shape(self, tensor: TensorInfo, shape: tuple[int, ...],
                     bound: dict[str, int]) -> None:
        if tensor.shape is None:
            return
        got = list(shape)
        if len(shape) != len(tensor.shape):
            hint = ("; wrap a single example in a list"
                    if len(shape) + 1 == len(tensor.shape) else "")
            raise self._invalid(f"input '{tensor.name}' expects {len(tensor.shape)} "
                                f"dimensions, got shape {got}{hint}")
        for axis, (want, size) in enumerate(zip(tensor.shape, shape)):
            if isinstance(want, int) and want != size:
                raise self._invalid(f"input '{tensor.name}' expects size {want} on axis "
                                    f"{axis}, got shape {got}")
            if isinstance(want, str) and bound.setdefault(want, size) != size:
                raise self._invalid(f"dimension '{want}' must be the same for every input: "
                                    f"input '{tensor.name}' has {size}, another has "
                                    f"{bound[want]}")

    def _output_json(self, results: list[Any]) -> Any:
        for name, result in zip(self._output_names, results):
            if isinstance(result, np.ndarray) and result.dtype.kind == "f" \
                    and not np.isfinite(result).all():
                # The input drove the arithmetic out of range: the caller's doing (400), never
                # counted against the version (issue 21).
                raise InvalidArgument(f"{self.label} produced NaN or infinite values in output "
                                      f"'{name}' for this input, which JSON cannot carry",
                                      details={"reason": "non_finite_output"})
        values = [_jsonable(r) for r in results]
        if self._labels is None:
            return values[0] if len(values) == 1 else dict(zip(self._output_names, values))
        output = dict(zip(self._output_names, values))
        output[_LABEL_KEY] = self._label_of(results[0])
        return output

    def _label_of(self, scores: Any) -> Any:
        assert self._labels is not None
        scores = np.asarray(scores)
        if scores.ndim == 0 or scores.shape[-1] != len(self._labels):
            raise ProviderError(f"{self.label}: config has {len(self._labels)} labels but "
                                f"output '{self._output_names[0]}' has shape "
                                f"{list(scores.shape)}")
        return _jsonable(self._labels[np.argmax(scores, axis=-1)])

    # -- probing and closing --------------------------------------------------------------
    def sample_input(self) -> Any:
        """Config ``sample_input`` if given, else zeros shaped like the declared inputs."""
        if "sample_input" in self.spec.config:
            return self.spec.config["sample_input"]
        zeros = {t.name: t.zeros() for t in self._inputs}
        if len(zeros) == 1 and isinstance(only := next(iter(zeros.values())), list):
            return only
        return zeros

    def close(self) -> None:
        """Drop the session. A run already in progress keeps its own reference and finishes;
        later calls answer ``Unavailable``."""
        self._session = None


def _spec(tensor: TensorInfo) -> TensorSpec:
    shape = None if tensor.shape is None else tuple(
        d if isinstance(d, int) else None for d in tensor.shape)
    return TensorSpec(tensor.name, "str" if tensor.dtype.kind == "U" else tensor.dtype.name, shape)


def _values(tensor: TensorInfo) -> str:
    """What an input accepts, for messages. Integer inputs name their range: numpy turns
    integers too big for int64 into floats or objects, which would otherwise read oddly."""
    if tensor.dtype.kind in "iu":
        info = np.iinfo(tensor.dtype)
        return f"{tensor.type_name} values (integers from {info.min} to {info.max})"
    return f"{tensor.type_name} values"


def _jsonable(value: Any) -> Any:
    """onnxruntime results (arrays, and lists/dicts for sequence and map outputs) → JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(_jsonable(k)): _jsonable(v)
                for k, v in value.items()}
    return value
