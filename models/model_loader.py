"""Provider discovery and the per-process cache of loaded versions.

``ProviderCatalog`` knows which providers exist: the built-ins (``gemini``, ``onnx``) plus any
package that declares an entry point in the group ``model_registry.providers``::

    [project.entry-points."model_registry.providers"]
    my_backend = "my_package.provider:MyProvider"   # a ModelProvider subclass

Built-in names cannot be taken over by a plug-in, and a plug-in that fails to import is
skipped (logged) so that one broken package does not take the whole service down.

``ModelLoader.get(model, version)`` is on the prediction hot path. A loaded version is one
dict lookup away (no SQL, no hashing, no lock): versions are immutable, so a loaded instance
never goes stale and is only dropped by ``unload``/``retain``/``close``. The first request
for a version reads the registry, verifies the artifact's sha256 and loads the provider under
a per-version lock, so concurrent first requests load it once. A version whose load failed
answers the same error, without retrying, for ``failure_ttl_s`` seconds: a corrupted artifact
on a live version must not cost a full re-hash on every request.

Wiring (the registry validates configs with the catalog; the loader reads the registry)::

    catalog = ProviderCatalog()
    registry = ModelRegistry(database, validate_config=catalog.validate_config)
    loader = ModelLoader(registry, open_artifact_store(settings), catalog)
"""
from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

from config import Settings
from money import parse_price
from errors import (DataCorrupted, FailedPrecondition, InvalidArgument, NotFound, ProviderError,
                    RegistryError)
from models.base_model import ModelProvider, ProviderLimits, VersionSpec
from models.gemini_model import GeminiModel
from models.onnx_model import OnnxModel
from registry.model_registry import ModelRegistry
from storage.artifacts import ArtifactStorage

# Installed distributions do not change while a process runs: their plug-in entry points are
# read once (a scan of every distribution's metadata, ~14 ms), not once per catalog.
entry_points = functools.cache(metadata.entry_points)

ENTRY_POINT_GROUP = "model_registry.providers"
BUILTIN_PROVIDERS: dict[str, type[ModelProvider]] = {"gemini": GeminiModel, "onnx": OnnxModel}

log = logging.getLogger(__name__)

Key = tuple[str, str]


class ProviderCatalog:
    """Provider classes by name. Plug-ins are discovered once, on first use."""

    def __init__(self, extra: Mapping[str, type[ModelProvider]] | None = None) -> None:
        """``extra`` adds providers directly (demos, benchmarks, tests); like plug-ins, they
        cannot replace a built-in."""
        self._extra = dict(extra or {})
        self._providers: dict[str, type[ModelProvider]] | None = None
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def providers(self) -> dict[str, type[ModelProvider]]:
        found = self._providers
        if found is None:
            with self._lock:
                if self._providers is None:
                    self._providers = self._discover()
                found = self._providers
        return found

    def _discover(self) -> dict[str, type[ModelProvider]]:
        found = dict(BUILTIN_PROVIDERS)
        candidates: list[tuple[str, Any]] = list(self._extra.items())
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                candidates.append((ep.name, ep.load()))
            except Exception as exc:  # one broken plug-in must not break the service
                self._broken[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("provider plug-in %r (%s) failed to load: %s", ep.name, ep.value,
                            exc)
        for name, cls in candidates:
            if name in BUILTIN_PROVIDERS:
                log.warning("provider plug-in %r ignored: the built-in provider keeps the name",
                            name)
            elif not (isinstance(cls, type) and issubclass(cls, ModelProvider)):
                self._broken[name] = f"{cls!r} is not a ModelProvider subclass"
                log.warning("provider plug-in %r ignored: %s", name, self._broken[name])
            else:
                found[name] = cls
        return found

    def provider_class(self, name: str) -> type[ModelProvider]:
        cls = self.providers().get(name)
        if cls is not None:
            return cls
        known = ", ".join(sorted(self.providers()))
        why = f" (its plug-in failed to load: {self._broken[name]})" if name in self._broken \
            else ""
        raise InvalidArgument(f"unknown provider {name!r}{why}; known providers: {known}",
                              details={"known_providers": sorted(self.providers())})

    def validate_config(self, provider: str, config: dict[str, Any]) -> dict[str, Any]:
        """The ``ModelRegistry(validate_config=...)`` hook: refuse at registration a config
        the version's provider could never load. ``prices`` (USD per 1M tokens, see
        ``money.parse_price``) is accepted by every provider: tracking reads it, not them."""
        cls = self.provider_class(provider)
        if not isinstance(config, dict) or "prices" not in config:
            return cls.validate_config(config)
        rest = {k: v for k, v in config.items() if k != "prices"}
        parse_price(config["prices"], "config.prices")
        return {**cls.validate_config(rest), "prices": config["prices"]}


def provider_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A version's config as its provider reads it: ``prices`` belongs to tracking."""
    return {k: v for k, v in (config or {}).items() if k != "prices"}


class ModelLoader:
    """Loaded provider instances, one per (model, exact version), shared by all threads.

    Bounded (issue 21): at most ``max_loaded`` versions and ``max_loaded_bytes`` of artifacts
    stay loaded. Loading one more evicts the least recently used versions, never one that
    ``serving(model)`` names (the versions its traffic table routes to, its stable version,
    an active rollout's candidate and previous version): pinned predictions of old versions
    load them for a while, they cannot keep them forever. The last-use time is one dict store
    on the hot path; eviction (rare, on a load) scans it."""

    def __init__(self, registry: ModelRegistry, store: ArtifactStorage,
                 catalog: ProviderCatalog | None = None, *, failure_ttl_s: float = 2.0,
                 limits: ProviderLimits | None = None, max_loaded: int = 32,
                 max_loaded_bytes: int = 2 * 1024 * 1024 * 1024,
                 serving: Callable[[str], set[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 settings: Settings | None = None) -> None:
        self.registry = registry
        self.store = store
        self.catalog = catalog or ProviderCatalog()
        self.failure_ttl_s = failure_ttl_s
        self.clock = clock   # monotonic seconds; tests inject one instead of sleeping
        self.limits = limits or ProviderLimits()
        self.settings = settings   # handed to the providers (the Gemini key and endpoint)
        self.max_loaded = max_loaded
        self.max_loaded_bytes = max_loaded_bytes
        self.serving = serving
        self._last_used: dict[Key, float] = {}
        self._sizes: dict[Key, int] = {}
        self._evicting = threading.Lock()
        self._loaded: dict[Key, ModelProvider] = {}
        self._failed: dict[Key, tuple[float, RegistryError]] = {}
        self._locks: dict[Key, threading.Lock] = {}
        self._guard = threading.Lock()

    def provider_class(self, name: str) -> type[ModelProvider]:
        return self.catalog.provider_class(name)

    def validate_config(self, provider: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.catalog.validate_config(provider, config)

    # -- the hot path ---------------------------------------------------------------------
    def get(self, model: str, version: str) -> ModelProvider:
        """The loaded provider for ``model@version``, loading it on first use.

        ``version`` should be exact (what the router hands out); ``latest``, an alias or a
        range also work, but are resolved through the registry on every call.
        """
        key = (model, version)
        instance = self._loaded.get(key)
        if instance is not None:
            self._last_used[key] = time.monotonic()
            return instance
        return self._load(model, version)

    def _load(self, model: str, ref: str) -> ModelProvider:
        row = self.registry.get_version(model, ref)
        key = (model, row["version"])
        cls = self._provider_for(row)  # cheap refusals, never remembered as failures
        with self._lock_for(key):
            instance = self._loaded.get(key)
            if instance is not None:
                return instance
            failed = self._failed.get(key)
            if failed is not None and self.clock() - failed[0] < self.failure_ttl_s:
                exc = failed[1]
                raise type(exc)(exc.message, details=exc.details)
            try:
                instance = self._instantiate(cls, row)
            except RegistryError as exc:
                self._failed[key] = (self.clock(), exc)
                raise
            self._failed.pop(key, None)
            self._sizes[key] = int((row.get("artifact") or {}).get("size") or 0)
            self._last_used[key] = time.monotonic()
            self._loaded[key] = instance
        self._evict(keep=key)
        return instance

    def _evict(self, keep: Key) -> None:
        """Unload least recently used versions until the count and bytes fit the bounds."""
        with self._evicting:
            protected: dict[str, set[str]] = {}
            while True:
                loaded = [k for k in list(self._loaded) if k != keep]
                total = sum(self._sizes.get(k, 0) for k in loaded) + self._sizes.get(keep, 0)
                if len(loaded) + 1 <= self.max_loaded and total <= self.max_loaded_bytes:
                    return
                candidates = [k for k in loaded
                              if k[1] not in self._protected(k[0], protected)]
                if not candidates:
                    log.warning("%d loaded versions (%d bytes) exceed the bounds, but every "
                                "one of them is serving", len(loaded) + 1, total)
                    return
                victim = min(candidates, key=lambda k: self._last_used.get(k, 0.0))
                log.info("unloading %s@%s (least recently used)", *victim)
                self.unload(*victim)

    def _protected(self, model: str, cache: dict[str, set[str]]) -> set[str]:
        if model not in cache:
            try:
                cache[model] = set(self.serving(model)) if self.serving else set()
            except Exception:  # cannot tell what serves: evict none of this model's versions
                log.exception("cannot read what serves %s; keeping its versions", model)
                cache[model] = {v for m, v in self._loaded if m == model}
        return cache[model]

    def _lock_for(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _provider_for(self, row: dict[str, Any]) -> type[ModelProvider]:
        cls = self.provider_class(row["provider"])
        if cls.requires_artifact and row.get("artifact") is None:
            model, version = row["model"], row["version"]
            raise FailedPrecondition(
                f"version '{version}' of model '{model}' ({row['provider']}) has no artifact: "
                f"upload an artifact first: PUT /api/models/{model}/versions/{version}/artifact")
        return cls

    def _instantiate(self, cls: type[ModelProvider], row: dict[str, Any]) -> ModelProvider:
        """Verify the artifact's bytes, then build and load the provider (the slow part).

        The artifact is held for the load only (``ArtifactStorage.hold``): a provider reads
        its file in ``load()`` and keeps what it needs in memory, so ``spec.artifact_path``
        need not outlive the load (with S3 it is a held link, removed afterwards)."""
        model, version = row["model"], row["version"]
        artifact = row.get("artifact")
        with ExitStack() as stack:
            path = None
            if artifact is not None:
                try:
                    path = stack.enter_context(self.store.hold(artifact["digest"], verify=True))
                except NotFound:
                    raise DataCorrupted(
                        f"the artifact of {model}@{version} (sha256:{artifact['digest']}) is "
                        "missing from the artifact store; re-upload it",
                        details={"expected": artifact["digest"]}) from None
            return self._build(cls, row, path)

    def _build(self, cls: type[ModelProvider], row: dict[str, Any],
               path: Path | None) -> ModelProvider:
        model, version = row["model"], row["version"]
        artifact = row.get("artifact")
        spec = VersionSpec(model=model, version=version, provider=row["provider"],
                           config=provider_config(row.get("config")), artifact_path=path,
                           artifact_digest=artifact["digest"] if artifact else None,
                           limits=self.limits, settings=self.settings)
        instance = cls(spec)
        try:
            instance.load()
        except Exception as exc:
            _close(instance)  # release whatever a half-done load acquired
            if isinstance(exc, RegistryError) and not isinstance(exc, ProviderError):
                raise   # our own words (a bad config, no artifact): nothing internal in them
            # A provider's failure text may name files, hosts or processes: it goes to the log
            # under an incident id, and the caller (and any alert) gets the id only.
            incident = secrets.token_hex(6)
            log.error("loading %s@%s (%s) failed, incident %s", model, version,
                      row["provider"], incident, exc_info=exc)
            raise ProviderError(f"{row['provider']} version {model}@{version} failed to load "
                                f"(incident {incident}; details in the server log)",
                                details={"incident": incident}) from exc
        return instance

    # -- unloading ------------------------------------------------------------------------
    def unload(self, model: str, version: str) -> bool:
        """Close and forget one version (and any remembered load failure); True if loaded."""
        key = (model, version)
        with self._lock_for(key):
            self._failed.pop(key, None)
            instance = self._loaded.pop(key, None)
            self._last_used.pop(key, None)
            self._sizes.pop(key, None)
        if instance is None:
            return False
        _close(instance)
        return True

    def retain(self, model: str, versions_in_use: Iterable[str]) -> list[str]:
        """Unload every loaded version of ``model`` not in ``versions_in_use`` (what the
        traffic table, a blue-green standby or a pin still needs); return those unloaded."""
        keep = set(versions_in_use)
        stale = [v for m, v in list(self._loaded) if m == model and v not in keep]
        return [v for v in stale if self.unload(model, v)]

    def loaded(self) -> list[dict[str, str]]:
        return [{"model": m, "version": v, "provider": inst.spec.provider}
                for (m, v), inst in sorted(self._loaded.items())]

    def close(self) -> None:
        for model, version in list(self._loaded):
            self.unload(model, version)


def _close(instance: ModelProvider) -> None:
    try:
        instance.close()
    except Exception:  # closing is best effort; the instance is already unreachable
        log.exception("closing %s@%s failed", instance.spec.model, instance.spec.version)
