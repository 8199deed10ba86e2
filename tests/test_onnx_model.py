"""models.onnx_model: real ONNX files (built by models/onnx_examples.py) run by onnxruntime."""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from errors import FailedPrecondition, InvalidArgument, ProviderError, Unavailable
from models.base_model import VersionSpec
from models.onnx_model import OnnxModel
from models import onnx_examples


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., OnnxModel]:
    """Write a model built by ``builder`` and load it as an ``OnnxModel``."""
    loaded: list[OnnxModel] = []

    def build(builder: Callable[..., bytes] = onnx_examples.linear_model,
              config: dict | None = None, **kwargs) -> OnnxModel:
        path = tmp_path / f"model{len(loaded)}.onnx"
        builder(path, **kwargs)
        spec = VersionSpec("m", "1.0.0", "onnx", OnnxModel.validate_config(config or {}), path)
        model = OnnxModel(spec)
        model.load()
        loaded.append(model)
        return model

    yield build
    for model in loaded:
        model.close()


def test_linear_prediction_matches_numpy(make):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2)).astype(np.float32)
    b = rng.normal(size=2).astype(np.float32)
    model = make(weights=w, bias=b)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    prediction = model.predict(x.tolist())
    assert prediction.usage is None
    assert isinstance(prediction.output, list) and len(prediction.output) == 5
    np.testing.assert_allclose(prediction.output, x @ w + b, rtol=1e-5, atol=1e-5)


def test_integers_are_cast_to_the_declared_float_type(make):
    model = make()
    w, b = onnx_examples.default_weights(4, 2)
    np.testing.assert_allclose(model.predict([[1, 2, 3, 4]]).output,
                               np.array([[1, 2, 3, 4]], np.float32) @ w + b, rtol=1e-6)


def test_single_input_can_also_be_named(make):
    model = make()
    assert model.predict({"x": [[1.0, 2.0, 3.0, 4.0]]}).output == \
        model.predict([[1.0, 2.0, 3.0, 4.0]]).output


def test_named_inputs_and_several_outputs(make):
    model = make(onnx_examples.two_input_model)
    out = model.predict({"a": [[0.5, 1.5, 2.5]], "b": [[1, 2, 3]]}).output
    assert out == {"sum": [[1.5, 3.5, 5.5]], "product": [[0.5, 3.0, 7.5]]}


def test_classifier_with_labels(make):
    model = make(onnx_examples.classifier_model, config={"labels": ["cat", "dog", "bird"]})
    out = model.predict([[0, 0, 0, 0], [9, 9, 9, 9]]).output
    probabilities = np.array(out["probabilities"])
    np.testing.assert_allclose(probabilities.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    names = np.array(["cat", "dog", "bird"])
    assert out["label"] == names[probabilities.argmax(axis=1)].tolist()


def test_label_count_must_match_the_classes(tmp_path):
    path = tmp_path / "c.onnx"
    onnx_examples.classifier_model(path, classes=3)
    model = OnnxModel(VersionSpec("m", "1.0.0", "onnx", {"labels": ["a", "b"]}, path))
    with pytest.raises(ProviderError, match="2 labels .* 3 classes"):
        model.load()


@pytest.mark.parametrize("bad, fragment", [
    ([1.0, 2.0, 3.0, 4.0], "wrap a single example in a list"),
    ([[1.0, 2.0, 3.0]], "expects size 4 on axis 1, got shape [1, 3]"),
    ([[[1.0, 2.0, 3.0, 4.0]]], "expects 2 dimensions"),
    ([[1.0, 2.0], [3.0]], "not a rectangular array"),
    ([["a", "b", "c", "d"]], "expects float32 values, got strings"),
    ([[True, False, True, False]], "got booleans"),
    ([[None, 1.0, 2.0, 3.0]], "got nulls"),
    ({"y": [[1.0, 2.0, 3.0, 4.0]]}, "missing ['x'], unexpected ['y']"),
    ("1,2,3,4", "JSON array or an object"),
    (None, "JSON array or an object"),
])
def test_bad_inputs_name_the_expected_signature(make, bad, fragment):
    model = make()
    with pytest.raises(InvalidArgument) as info:
        model.predict(bad)
    assert fragment in info.value.message
    assert "expected inputs: x: float32[N, 4]" in info.value.message
    assert info.value.details["expected_inputs"] == [
        {"name": "x", "type": "float32", "shape": ["N", 4]}]


@pytest.mark.parametrize("bad, fragment", [
    ([[1.0, 2.0, 3.0]], "has 2 inputs: send an object of named arrays"),
    ({"a": [[1.0, 2.0, 3.0]]}, "missing ['b']"),
    ({"a": [[1.0, 2.0, 3.0]], "b": [[1.5, 2.0, 3.0]]}, "'b' expects int64 values"),
    ({"a": [[1.0, 2.0, 3.0]], "b": [[1.5, 2.0, 3.0]]}, "got floats"),
    ({"a": [[1.0, 2.0, 3.0]], "b": [[2**63] * 3]}, "got values outside that range"),
    ({"a": [[1.0, 2.0, 3.0]], "b": [[2**63, 1, 2]]}, "to 9223372036854775807), got floats"),
    ({"a": [[1.0, 2.0, 3.0]], "b": [[2**64, 1, 2]]}, "got nulls, objects or mixed values"),
    ({"a": [[1.0, 2.0, 3.0]], "b": [[1, 2, 3], [4, 5, 6]]},
     "dimension 'N' must be the same for every input"),
])
def test_bad_named_inputs(make, bad, fragment):
    model = make(onnx_examples.two_input_model)
    with pytest.raises(InvalidArgument) as info:
        model.predict(bad)
    assert fragment in info.value.message
    assert "a: float32[N, 3], b: int64[N, 3]" in info.value.message


def test_params_are_refused(make):
    with pytest.raises(InvalidArgument, match="no params"):
        make().predict([[1, 2, 3, 4]], {"temperature": 0.5})


def test_runtime_failure_is_a_provider_error(make):
    model = make(onnx_examples.failing_model)
    with pytest.raises(ProviderError, match="Reshape"):
        model.predict([[1.0, 2.0, 3.0, 4.0]])
    health = model.health()
    assert not health.ok and "Reshape" in health.message


def test_an_artifact_that_is_not_onnx_fails_to_load(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(ProviderError, match="cannot load onnx version m@1.0.0"):
        OnnxModel(VersionSpec("m", "1.0.0", "onnx", {}, path)).load()


def test_no_artifact_is_a_failed_precondition():
    with pytest.raises(FailedPrecondition):
        OnnxModel(VersionSpec("m", "1.0.0", "onnx", {})).load()


def test_sample_input_is_derived_from_the_input_shapes(make):
    assert make().sample_input() == [[0.0, 0.0, 0.0, 0.0]]
    assert make(onnx_examples.two_input_model).sample_input() == {
        "a": [[0.0, 0.0, 0.0]], "b": [[0, 0, 0]]}
    configured = make(config={"sample_input": [[1, 1, 1, 1]]})
    assert configured.sample_input() == [[1, 1, 1, 1]]


def test_health_ok(make):
    for model in (make(), make(onnx_examples.two_input_model),
                  make(onnx_examples.classifier_model, config={"labels": ["a", "b", "c"]})):
        health = model.health()
        assert health.ok, health.message
        assert health.latency >= 0


def test_predict_from_many_threads(make):
    model = make(config={"intra_op_threads": 2})
    rows = [[[float(i), 1.0, 2.0, 3.0]] for i in range(32)]
    expected = [model.predict(r).output for r in rows]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(offset, len(rows), 8):
                results[i] = model.predict(rows[i]).output
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [results[i] for i in range(len(rows))] == expected


def test_closed_version_is_unavailable(make):
    model = make()
    model.close()
    with pytest.raises(Unavailable, match="not loaded"):
        model.predict([[1, 2, 3, 4]])


@pytest.mark.parametrize("config, fragment", [
    ({"nope": 1}, "unknown onnx config key(s) ['nope']"),
    ({"intra_op_threads": 0}, "intra_op_threads"),
    ({"intra_op_threads": True}, "intra_op_threads"),
    ({"intra_op_threads": "2"}, "intra_op_threads"),
    ({"labels": []}, "labels"),
    ({"labels": ["a", 1]}, "labels"),
    ({"sample_input": "x"}, "sample_input"),
])
def test_validate_config_refuses(config, fragment):
    with pytest.raises(InvalidArgument) as info:
        OnnxModel.validate_config(config)
    assert fragment in info.value.message


def test_validate_config_accepts_known_keys():
    config = {"sample_input": [[0, 0, 0, 0]], "intra_op_threads": 4, "labels": ["a", "b"]}
    assert OnnxModel.validate_config(config) == config
    assert OnnxModel.validate_config({}) == {}
