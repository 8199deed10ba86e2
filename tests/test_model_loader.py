"""models.model_loader: provider discovery and the cache of loaded versions, on a real
registry (SQLite, and PostgreSQL when configured) and a real artifact store."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from errors import (DataCorrupted, FailedPrecondition, InvalidArgument, NotFound,
                    ProviderError)
from models import model_loader
from models.base_model import ModelProvider, Prediction
from models.gemini_model import GeminiModel
from models.model_loader import ENTRY_POINT_GROUP, ModelLoader, ProviderCatalog
from models.onnx_model import OnnxModel
from registry.model_registry import ModelRegistry
from storage.model_store import ArtifactStore
from models import onnx_examples


def counting_provider(load_delay: float = 0.0, fail: Exception | None = None
                      ) -> type[ModelProvider]:
    """A fresh provider class that counts its loads and closes."""

    class Counting(ModelProvider):
        name = "counting"
        loads = 0
        closes = 0
        lock = threading.Lock()

        def load(self) -> None:
            time.sleep(load_delay)
            with Counting.lock:
                Counting.loads += 1
            if fail is not None:
                raise fail

        def predict(self, input: Any, params: dict[str, Any] | None = None) -> Prediction:
            return Prediction(output={"version": self.spec.version, "echo": input})

        def close(self) -> None:
            with Counting.lock:
                Counting.closes += 1

    return Counting


class Env:
    def __init__(self, database, tmp_path: Path, provider: type[ModelProvider]) -> None:
        self.provider = provider
        self.catalog = ProviderCatalog(extra={"counting": provider})
        self.registry = ModelRegistry(database, validate_config=self.catalog.validate_config)
        self.store = ArtifactStore(tmp_path / "artifacts")
        self.loader = ModelLoader(self.registry, self.store, self.catalog)

    def onnx_version(self, model: str = "m", version: str = "1.0.0", upload: bool = True,
                     config: dict | None = None) -> str | None:
        self.ensure_model(model)
        self.registry.register_version(model, version, provider="onnx", config=config)
        if not upload:
            return None
        digest, size = self.store.put_bytes(onnx_examples.linear_model())
        self.registry.attach_artifact(model, version, digest, size)
        return digest

    def counting_version(self, model: str, version: str) -> None:
        self.ensure_model(model)
        self.registry.register_version(model, version, provider="counting")

    def ensure_model(self, model: str) -> None:
        try:
            self.registry.get_model(model)
        except NotFound:
            self.registry.register_model(model)


@pytest.fixture
def env(database, tmp_path):
    env = Env(database, tmp_path, counting_provider())
    yield env
    env.loader.close()


def test_onnx_version_is_loaded_once_and_served(env):
    env.onnx_version()
    first = env.loader.get("m", "1.0.0")
    assert isinstance(first, OnnxModel)
    assert first.spec.artifact_path is not None and first.spec.artifact_path.is_file()
    w, b = onnx_examples.default_weights(4, 2)
    np.testing.assert_allclose(first.predict([[1, 2, 3, 4]]).output,
                               np.array([[1, 2, 3, 4]], np.float32) @ w + b, rtol=1e-6)
    assert env.loader.get("m", "1.0.0") is first
    assert env.loader.get("m", "latest") is first  # resolved to the same exact version
    assert env.loader.loaded() == [{"model": "m", "version": "1.0.0", "provider": "onnx"}]


def test_loaded_version_needs_neither_database_nor_disk(env, monkeypatch):
    env.onnx_version()
    instance = env.loader.get("m", "1.0.0")

    def forbidden(*args, **kwargs):
        raise AssertionError("the hot path must be a dict lookup")

    monkeypatch.setattr(env.registry, "get_version", forbidden)
    monkeypatch.setattr(env.store, "hold", forbidden)
    assert env.loader.get("m", "1.0.0") is instance


def test_concurrent_first_requests_load_once(database, tmp_path):
    env = Env(database, tmp_path, counting_provider(load_delay=0.05))
    env.counting_version("m", "1.0.0")
    barrier = threading.Barrier(8)
    got: list[ModelProvider] = []

    def ask() -> None:
        barrier.wait()
        got.append(env.loader.get("m", "1.0.0"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert env.provider.loads == 1
    assert len(got) == 8 and all(g is got[0] for g in got)
    env.loader.close()


def test_unknown_provider_lists_the_known_ones(env):
    with pytest.raises(InvalidArgument) as info:
        env.loader.provider_class("nope")
    assert "unknown provider 'nope'" in info.value.message
    assert "known providers: counting, gemini, onnx" in info.value.message
    env.registry.register_model("m")
    with pytest.raises(InvalidArgument, match="unknown provider 'nope'"):
        env.registry.register_version("m", "1.0.0", provider="nope")


def test_version_of_a_provider_no_longer_installed(env, database):
    unchecked = ModelRegistry(database)  # registered when the plug-in was still there
    unchecked.register_model("m")
    unchecked.register_version("m", "1.0.0", provider="retired")
    with pytest.raises(InvalidArgument, match="unknown provider 'retired'"):
        env.loader.get("m", "1.0.0")


def test_configs_are_validated_by_their_provider_at_registration(env):
    env.registry.register_model("m")
    with pytest.raises(InvalidArgument, match="unknown onnx config key"):
        env.registry.register_version("m", "1.0.0", provider="onnx", config={"bogus": 1})
    assert env.loader.validate_config("onnx", {"intra_op_threads": 2}) == {
        "intra_op_threads": 2}


def test_builtin_providers():
    assert model_loader.BUILTIN_PROVIDERS == {"gemini": GeminiModel, "onnx": OnnxModel}


def test_missing_artifact_is_a_failed_precondition_until_uploaded(env):
    env.onnx_version(upload=False)
    with pytest.raises(FailedPrecondition) as info:
        env.loader.get("m", "1.0.0")
    assert "upload an artifact first: PUT /api/models/m/versions/1.0.0/artifact" in \
        info.value.message
    digest, size = env.store.put_bytes(onnx_examples.linear_model())
    env.registry.attach_artifact("m", "1.0.0", digest, size)
    assert isinstance(env.loader.get("m", "1.0.0"), OnnxModel)  # no remembered failure


def test_corrupted_artifact_is_refused_and_the_failure_remembered(env, monkeypatch):
    digest = env.onnx_version()
    path = env.store.path_for(digest)
    path.chmod(0o644)
    path.write_bytes(b"flipped bits")
    hashed: list[str] = []
    original = env.store.hold
    monkeypatch.setattr(env.store, "hold",
                        lambda d, verify=True: hashed.append(d) or original(d, verify))
    for _ in range(3):
        with pytest.raises(DataCorrupted, match=digest):
            env.loader.get("m", "1.0.0")
    assert hashed == [digest]  # re-hashed once, not on every request
    assert env.loader.loaded() == []
    env.store.put_bytes(onnx_examples.linear_model())  # the original bytes repair the copy
    env.loader.unload("m", "1.0.0")  # forgets the failure at once
    assert isinstance(env.loader.get("m", "1.0.0"), OnnxModel)


def test_a_remembered_failure_expires(env):
    digest = env.onnx_version()
    now = [100.0]
    env.loader.clock = lambda: now[0]     # an injected clock: the test moves time, not sleeps
    env.store.delete(digest)
    with pytest.raises(DataCorrupted, match="missing from the artifact store"):
        env.loader.get("m", "1.0.0")
    env.store.put_bytes(onnx_examples.linear_model())
    now[0] += env.loader.failure_ttl_s - 0.01
    with pytest.raises(DataCorrupted):     # still remembered just before the TTL
        env.loader.get("m", "1.0.0")
    now[0] += 0.02
    assert isinstance(env.loader.get("m", "1.0.0"), OnnxModel)


def test_unknown_version_is_not_found(env):
    env.onnx_version()
    with pytest.raises(NotFound):
        env.loader.get("m", "9.9.9")
    with pytest.raises(NotFound):
        env.loader.get("nope", "1.0.0")


def test_provider_load_failures(database, tmp_path, caplog):
    env = Env(database, tmp_path, counting_provider(fail=RuntimeError("boom /secret/path")))
    env.counting_version("m", "1.0.0")
    with pytest.raises(ProviderError, match="failed to load .incident") as raised:
        env.loader.get("m", "1.0.0")
    assert "/secret/path" not in raised.value.message     # the details go to the log only
    assert raised.value.details["incident"] in caplog.text and "/secret/path" in caplog.text
    assert env.provider.closes == 1  # a half-loaded instance is closed
    assert env.loader.loaded() == []


def fake_entry_points(monkeypatch, **plugins: Any) -> None:
    def load_of(target: Any):
        def load():
            if isinstance(target, Exception):
                raise target
            return target
        return load

    eps = [SimpleNamespace(name=name, value=f"plugin_pkg:{name}", load=load_of(target))
           for name, target in plugins.items()]

    def entry_points(*, group: str):
        assert group == ENTRY_POINT_GROUP
        return eps

    monkeypatch.setattr(model_loader, "entry_points", entry_points)


def test_entry_point_providers(database, tmp_path, monkeypatch):
    plugin = counting_provider()
    fake_entry_points(monkeypatch, plug=plugin, broken=ImportError("no module named x"),
                      onnx=plugin, notaprovider=object)
    catalog = ProviderCatalog()
    registry = ModelRegistry(database, validate_config=catalog.validate_config)
    loader = ModelLoader(registry, ArtifactStore(tmp_path / "a"), catalog)
    assert catalog.providers() == {"gemini": GeminiModel, "onnx": OnnxModel, "plug": plugin}
    with pytest.raises(InvalidArgument, match="plug-in failed to load: ImportError"):
        catalog.provider_class("broken")
    with pytest.raises(InvalidArgument, match="not a ModelProvider subclass"):
        catalog.provider_class("notaprovider")

    registry.register_model("m")
    registry.register_version("m", "1.0.0", provider="plug")
    assert loader.get("m", "1.0.0").predict("hi").output == {"version": "1.0.0", "echo": "hi"}
    assert plugin.loads == 1
    loader.close()


def test_retain_unload_and_close(env):
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        env.counting_version("a", version)
        env.loader.get("a", version)
    env.counting_version("b", "1.0.0")
    kept = env.loader.get("b", "1.0.0")
    assert env.provider.loads == 4

    assert sorted(env.loader.retain("a", {"1.1.0", "3.0.0"})) == ["1.0.0", "2.0.0"]
    assert env.provider.closes == 2
    assert env.loader.loaded() == [
        {"model": "a", "version": "1.1.0", "provider": "counting"},
        {"model": "b", "version": "1.0.0", "provider": "counting"}]
    assert env.loader.get("b", "1.0.0") is kept

    assert env.loader.unload("a", "1.1.0") is True
    assert env.loader.unload("a", "1.1.0") is False
    assert env.loader.get("a", "1.1.0").predict(1).output == {"version": "1.1.0", "echo": 1}
    assert env.provider.loads == 5  # loaded again after the unload

    env.loader.close()
    assert env.loader.loaded() == [] and env.provider.closes == 5
