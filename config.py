"""All configuration: one typed, frozen :class:`Settings`, read from the environment (and
`.env`, loaded by python-dotenv) in this module only.

Every field names its environment variable (``env``), which `.env.example` and the README's
configuration table list; ``tests/test_settings.py`` checks that the three agree. A value that
cannot be used raises :class:`errors.ConfigurationError`, naming the variable and what it
accepts. :func:`get_settings` reads once per process and caches; :func:`reset_settings`
forgets the cached copy (tests that change the environment call it).
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from errors import ConfigurationError

_OFF = ("off", "0", "false", "no")
_ON = ("on", "1", "true", "yes")


def _env(name: str, *, aliases: tuple[str, ...] = (), positive: bool = False) -> dict[str, Any]:
    return {"env": name, "aliases": aliases, "positive": positive}



@dataclass(frozen=True)
class Settings:
    """The process's configuration. Field metadata: ``env`` (the variable), ``aliases``."""

    data_dir: Path = field(default=Path("./data"), metadata=_env("REGISTRY_DATA_DIR"))
    database_url: str = field(default="", metadata=_env("DATABASE_URL"))
    artifact_root: Path | str = field(   # a directory, or an s3://bucket/prefix URL (issue 20)
        default=Path(""), metadata=_env("ARTIFACT_ROOT"))
    gemini_api_key: str | None = field(
        default=None, metadata=_env("GEMINI_API_KEY", aliases=("GOOGLE_API_KEY",)))
    gemini_model: str = field(default="gemini-2.5-flash", metadata=_env("GEMINI_MODEL"))
    # Read by the google-genai SDK itself; kept here so that it is listed and checked.
    gemini_base_url: str | None = field(default=None, metadata=_env("GOOGLE_GEMINI_BASE_URL"))
    provider_timeout_s: float = field(default=30.0,
                                      metadata=_env("PROVIDER_TIMEOUT_S", positive=True))
    host: str = field(default="127.0.0.1", metadata=_env("HOST"))
    port: int = field(default=5000, metadata=_env("PORT"))
    admin_token: str | None = field(default=None, metadata=_env("REGISTRY_ADMIN_TOKEN"))
    max_artifact_bytes: int = field(default=512 * 1024 * 1024,
                                    metadata=_env("MAX_ARTIFACT_BYTES", positive=True))
    max_body_bytes: int = field(default=1024 * 1024,
                                metadata=_env("MAX_BODY_BYTES", positive=True))
    max_inflight_per_model: int = field(default=64,
                                        metadata=_env("MAX_INFLIGHT_PER_MODEL", positive=True))
    # -- issue 17: MLflow compatibility and bundles
    # bearer token `python -m registry.bundle import-mlflow` sends to the MLflow server
    mlflow_tracking_token: str | None = field(default=None,
                                              metadata=_env("MLFLOW_TRACKING_TOKEN"))
    # largest bundle POST /api/import accepts
    max_bundle_bytes: int = field(default=8 * 1024 * 1024 * 1024,
                                  metadata=_env("MAX_BUNDLE_BYTES", positive=True))
    # -- tracking
    metrics_retention_days: float = field(default=30.0,
                                          metadata=_env("METRICS_RETENTION_DAYS", positive=True))
    metrics_flush_interval_s: float = field(default=1.0,
                                            metadata=_env("METRICS_FLUSH_INTERVAL_S",
                                                          positive=True))
    # Read by prometheus_client itself in every worker; gunicorn.conf.py sets one when unset.
    prometheus_multiproc_dir: str | None = field(default=None,
                                                 metadata=_env("PROMETHEUS_MULTIPROC_DIR"))
    # -- automatic rollback
    auto_rollback: bool = field(default=True, metadata=_env("AUTO_ROLLBACK"))
    auto_rollback_max_error_rate: float = field(default=0.2,
                                                metadata=_env("AUTO_ROLLBACK_MAX_ERROR_RATE"))
    auto_rollback_max_p95_s: float | None = field(default=None,
                                                  metadata=_env("AUTO_ROLLBACK_MAX_P95_S"))
    auto_rollback_min_requests: int = field(default=20, metadata=_env("AUTO_ROLLBACK_MIN_REQUESTS"))
    auto_rollback_window_s: float = field(default=60.0, metadata=_env("AUTO_ROLLBACK_WINDOW_S"))
    # -- gunicorn.conf.py (None: gunicorn.conf.py picks the default it documents)
    web_concurrency: int | None = field(default=None,
                                        metadata=_env("WEB_CONCURRENCY", positive=True))
    # threads per gunicorn worker; the in-flight limit stays below it (``inflight_limit``)
    server_threads: int = field(default=8, metadata=_env("GUNICORN_THREADS", positive=True))
    gunicorn_timeout: int = field(default=60, metadata=_env("GUNICORN_TIMEOUT", positive=True))
    gunicorn_graceful_timeout: int = field(default=30,
                                           metadata=_env("GUNICORN_GRACEFUL_TIMEOUT",
                                                         positive=True))
    gunicorn_control_socket: str | None = field(default=None,
                                                metadata=_env("GUNICORN_CONTROL_SOCKET"))
    gunicorn_access_log: str | None = field(default=None, metadata=_env("GUNICORN_ACCESS_LOG"))
    gunicorn_log_level: str = field(default="info", metadata=_env("GUNICORN_LOG_LEVEL"))
    # issue 21: seconds to read a request head / any later read or write (HeadFirstWorker)
    gunicorn_head_timeout: int = field(default=10,
                                       metadata=_env("GUNICORN_HEAD_TIMEOUT", positive=True))
    gunicorn_io_timeout: int = field(default=30,
                                     metadata=_env("GUNICORN_IO_TIMEOUT", positive=True))
    gunicorn_min_rate: int = field(default=16384,   # bytes/s a client must keep up after that
                                   metadata=_env("GUNICORN_MIN_RATE", positive=True))
    # -- issue 21: bounded work per request ------------------------------------------------
    onnx_timeout_s: float = field(default=10.0,            # enforced deadline of one ONNX run
                                  metadata=_env("ONNX_TIMEOUT_S", positive=True))
    onnx_memory_bytes: int = field(default=1024 ** 3,      # the process-wide onnxruntime arena
                                   metadata=_env("ONNX_MEMORY_BYTES", positive=True))
    max_output_bytes: int = field(default=8 * 1024 ** 2,   # largest provider output served
                                  metadata=_env("MAX_OUTPUT_BYTES", positive=True))
    max_loaded_versions: int = field(default=32,           # loaded versions per process (LRU)
                                     metadata=_env("MAX_LOADED_VERSIONS", positive=True))
    max_loaded_bytes: int = field(default=2 * 1024 ** 3,   # their artifacts' bytes (LRU)
                                  metadata=_env("MAX_LOADED_BYTES", positive=True))
    max_series_versions: int = field(default=20,   # versions in one metrics series / Prometheus
                                     metadata=_env("MAX_SERIES_VERSIONS", positive=True))
    max_response_bytes: int = field(default=16 * 1024 ** 2,   # largest JSON answer
                                    metadata=_env("MAX_RESPONSE_BYTES", positive=True))
    # -- webhooks (issue 18) --
    webhook_timeout_s: float = field(default=10.0,          # per request: connect + read
                                     metadata=_env("WEBHOOK_TIMEOUT_S", positive=True))
    webhook_max_attempts: int = field(default=8,            # then the delivery is failed
                                      metadata=_env("WEBHOOK_MAX_ATTEMPTS", positive=True))
    webhook_backoff_base_s: float = field(default=2.0,      # first retry after ~this, doubling
                                          metadata=_env("WEBHOOK_BACKOFF_BASE_S", positive=True))
    webhook_backoff_max_s: float = field(default=600.0,     # cap of one wait (and Retry-After)
                                         metadata=_env("WEBHOOK_BACKOFF_MAX_S", positive=True))
    webhook_disable_after: int = field(default=10,          # consecutive failed deliveries
                                       metadata=_env("WEBHOOK_DISABLE_AFTER", positive=True))
    webhook_workers: int = field(default=4,                 # concurrent sends per process
                                 metadata=_env("WEBHOOK_WORKERS", positive=True))
    webhook_allowed_http_hosts: tuple[str, ...] = field(    # hosts plain http may go to
        default=(), metadata=_env("WEBHOOK_ALLOWED_HTTP_HOSTS"))
    webhook_allow_private: bool = field(default=False,      # private/loopback/link-local too
                                        metadata=_env("WEBHOOK_ALLOW_PRIVATE"))
    # -- shadow deployments (issue 19) --
    shadow_queue_size: int = field(default=256,       # mirrors waiting for a worker; beyond: dropped
                                   metadata=_env("SHADOW_QUEUE_SIZE", positive=True))
    shadow_concurrency: int = field(default=2,        # shadow calls in flight per process
                                    metadata=_env("SHADOW_CONCURRENCY", positive=True))
    shadow_store_inputs: bool = field(default=False,  # keep inputs/outputs of disagreements
                                      metadata=_env("SHADOW_STORE_INPUTS"))
    # -- issue 20: artifacts in S3, logs, tracing --
    s3_endpoint_url: str | None = field(default=None, metadata=_env(
        "S3_ENDPOINT_URL", aliases=("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")))
    aws_region: str | None = field(default=None,
                                   metadata=_env("AWS_REGION", aliases=("AWS_DEFAULT_REGION",)))
    aws_access_key_id: str | None = field(default=None, metadata=_env("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: str | None = field(default=None,
                                              metadata=_env("AWS_SECRET_ACCESS_KEY"))
    aws_session_token: str | None = field(default=None, metadata=_env("AWS_SESSION_TOKEN"))
    s3_part_bytes: int = field(default=8 * 1024 ** 2,       # multipart above; one part in memory
                               metadata=_env("S3_PART_BYTES", positive=True))
    s3_presign_downloads: bool = field(default=False,       # GET .../artifact redirects to S3
                                       metadata=_env("S3_PRESIGN_DOWNLOADS"))
    s3_presign_expiry_s: int = field(default=300,
                                     metadata=_env("S3_PRESIGN_EXPIRY_S", positive=True))
    artifact_cache_bytes: int = field(default=4 * 1024 ** 3,   # cache of artifacts from S3
                                      metadata=_env("ARTIFACT_CACHE_BYTES", positive=True))
    log_format: str = field(default="text", metadata=_env("LOG_FORMAT"))   # text | json
    otel_exporter_otlp_endpoint: str | None = field(   # spans over OTLP/HTTP when set
        default=None, metadata=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    otel_service_name: str = field(default="model-registry", metadata=_env("OTEL_SERVICE_NAME"))

    @property
    def inflight_limit(self) -> int:
        """Predictions of one model in flight per process: never more than the server's
        threads (beyond them a request would only queue, holding a socket); with the provider
        deadlines, a slow model holds a thread at most ``onnx_timeout_s`` at a time."""
        return max(1, min(self.max_inflight_per_model, self.server_threads))

    @classmethod
    def from_env(cls, overrides: dict[str, Any] | None = None, *,
                 defaults: dict[str, Any] | None = None) -> "Settings":
        """Read the environment (and `.env`). ``overrides`` (field names) win over it;
        ``defaults`` (field names) apply only where the environment sets nothing. A data dir
        given in ``overrides`` also moves the default database and artifact root there."""
        load_dotenv(override=False)
        values: dict[str, Any] = dict(defaults or {})
        for f in dataclasses.fields(cls):
            raw = _raw(f)
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update(overrides or {})
        data_dir = Path(values.get("data_dir") or "./data")
        values["data_dir"] = data_dir
        moved = bool(overrides and "data_dir" in overrides)
        # issue 20: an s3:// root stays a URL string (see ``artifact_s3_url``)
        in_s3 = str(values.get("artifact_root") or "").startswith("s3://")
        if not values.get("database_url") or (moved and "database_url" not in overrides):
            values["database_url"] = f"sqlite:///{data_dir / 'registry.db'}"
        if not in_s3 and (not values.get("artifact_root") or (
                moved and "artifact_root" not in overrides)):
            values["artifact_root"] = data_dir / "artifacts"
        if not in_s3:
            values["artifact_root"] = Path(values["artifact_root"])
        return cls(**values)

    @property
    def artifact_s3_url(self) -> str | None:
        """``ARTIFACT_ROOT=s3://bucket/prefix``: artifacts in that bucket (issue 20)."""
        root = str(self.artifact_root)
        return root if root.startswith("s3://") else None

    @property
    def artifact_cache_dir(self) -> Path:
        """Where a server keeps the artifacts it loaded from S3 (``ARTIFACT_CACHE_BYTES``)."""
        return self.data_dir / "artifact-cache"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def env_names() -> dict[str, str]:
    """Every environment variable read here → its field name (aliases included)."""
    names = {}
    for f in dataclasses.fields(Settings):
        for name in (f.metadata["env"], *f.metadata["aliases"]):
            names[name] = f.name
    return names


def _raw(f: dataclasses.Field) -> str | None:
    for name in (f.metadata["env"], *f.metadata["aliases"]):
        value = os.environ.get(name)
        if value not in (None, ""):
            return value
    return None


def _parse(f: dataclasses.Field, raw: str) -> Any:
    """``raw`` as the field's type; ConfigurationError naming the variable otherwise."""
    name, kind = f.metadata["env"], str(f.type)
    if "bool" in kind:
        if raw.lower() in _ON:
            return True
        if raw.lower() in _OFF:
            return False
        raise ConfigurationError(f"{name}={raw!r} is not on or off; accepted: "
                                 f"{', '.join(_ON + _OFF)}", variable=name)
    if "int" in kind or "float" in kind:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        whole = "int" in kind
        if not math.isfinite(number) or (whole and number != int(number)) or (
                f.metadata["positive"] and number <= 0):
            what = ("a positive " if f.metadata["positive"] else "a ") + (
                "whole number" if whole else "number")
            example = "" if f.default is None else f"; set it to e.g. {f.default}"
            raise ConfigurationError(f"{name}={raw!r} is not {what}{example}", variable=name)
        return int(number) if whole else number
    if "tuple" in kind:   # a comma-separated list
        return tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    if "Path" in kind:   # an s3:// URL stays a string (Path() would fold its '//')
        return raw if raw.startswith("s3://") else Path(raw)
    return raw


_cached: Settings | None = None
_lock = threading.Lock()


def get_settings() -> Settings:
    """The process's settings, read once."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = Settings.from_env()
        return _cached


def reset_settings() -> None:
    """Forget the cached settings: the next :func:`get_settings` reads the environment again."""
    global _cached
    with _lock:
        _cached = None


def fresh_settings() -> Settings:
    """Read the environment now, bypassing the cache (a key added to `.env` since start)."""
    return Settings.from_env()


def export_prometheus_dir(path: str) -> None:
    """Hand prometheus-client its multiprocess directory: the library (in every worker, after
    the fork) reads it from the environment only."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    reset_settings()
