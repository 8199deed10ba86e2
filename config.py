"""Configuration read from the environment (and `.env`, loaded by python-dotenv).

Every key is listed with its default in `.env.example` and in the README.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv


def env_number(name: str, default: float | None) -> float | None:
    """A number from the environment; a value that is not one stops with a clear message."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        example = f"; set it to e.g. {default}" if default is not None else ""
        raise SystemExit(f"{name}={raw!r} is not a number{example}") from None


def _float(name: str, default: float) -> float:
    value = env_number(name, default)
    assert value is not None
    return value


def _flag(name: str) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"{name}={raw!r} is not a boolean; set it to true or false")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    artifact_root: Path
    gemini_api_key: str | None = None
    gemini_model: str = "gemini-2.5-flash"
    provider_timeout_s: float = 30.0
    host: str = "127.0.0.1"
    port: int = 5000
    admin_token: str | None = None
    max_artifact_bytes: int = 512 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    max_inflight_per_model: int = 64
    # -- issue 21: bounded work per request ------------------------------------------------
    server_threads: int = 8                  # GUNICORN_THREADS: the in-flight limit stays below
    onnx_timeout_s: float = 10.0             # enforced deadline of one ONNX run
    onnx_memory_bytes: int = 1024 ** 3       # the process-wide onnxruntime arena cap
    max_output_bytes: int = 8 * 1024 ** 2    # largest provider output served
    max_loaded_versions: int = 32            # loaded versions per process (LRU)
    max_loaded_bytes: int = 2 * 1024 ** 3    # their artifacts' bytes (LRU)
    max_series_versions: int = 20            # versions in one metrics series / Prometheus model
    max_response_bytes: int = 16 * 1024 ** 2  # largest JSON answer
    # -- webhooks (issue 18) --
    webhook_timeout_s: float = 10.0             # per request: connect + read
    webhook_max_attempts: int = 8               # then the delivery is failed
    webhook_backoff_base_s: float = 2.0         # first retry after ~this, doubling, with jitter
    webhook_backoff_max_s: float = 600.0        # cap of one wait (also of a Retry-After)
    webhook_disable_after: int = 10             # consecutive failed deliveries
    webhook_workers: int = 4                    # concurrent sends per process
    webhook_allowed_http_hosts: tuple[str, ...] = ()   # hosts plain http may go to
    webhook_allow_private: bool = False         # allow private/loopback/link-local addresses
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def inflight_limit(self) -> int:
        """Predictions of one model in flight per process: never more than the server's
        threads (beyond them a request would only queue, holding a socket); with the provider
        deadlines, a slow model holds a thread at most ``onnx_timeout_s`` at a time."""
        return max(1, min(self.max_inflight_per_model, self.server_threads))

    @classmethod
    def from_env(cls, overrides: dict | None = None) -> "Settings":
        """Build settings from the environment; ``overrides`` (lower-case field names) win."""
        load_dotenv(override=False)
        env = os.environ
        data_dir = Path(env.get("REGISTRY_DATA_DIR") or "./data")
        values: dict = dict(
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'registry.db'}",
            artifact_root=Path(env.get("ARTIFACT_ROOT") or data_dir / "artifacts"),
            gemini_api_key=env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY") or None,
            gemini_model=env.get("GEMINI_MODEL") or "gemini-2.5-flash",
            provider_timeout_s=_float("PROVIDER_TIMEOUT_S", 30.0),
            host=env.get("HOST") or "127.0.0.1",
            port=int(_float("PORT", 5000)),
            admin_token=env.get("REGISTRY_ADMIN_TOKEN") or None,
            max_artifact_bytes=int(_float("MAX_ARTIFACT_BYTES", 512 * 1024 * 1024)),
            max_body_bytes=int(_float("MAX_BODY_BYTES", 1024 * 1024)),
            max_inflight_per_model=int(_float("MAX_INFLIGHT_PER_MODEL", 64)),
            # issue 21
            server_threads=int(_float("GUNICORN_THREADS", 8)),
            onnx_timeout_s=_float("ONNX_TIMEOUT_S", 10.0),
            onnx_memory_bytes=int(_float("ONNX_MEMORY_BYTES", 1024 ** 3)),
            max_output_bytes=int(_float("MAX_OUTPUT_BYTES", 8 * 1024 ** 2)),
            max_loaded_versions=int(_float("MAX_LOADED_VERSIONS", 32)),
            max_loaded_bytes=int(_float("MAX_LOADED_BYTES", 2 * 1024 ** 3)),
            max_series_versions=int(_float("MAX_SERIES_VERSIONS", 20)),
            max_response_bytes=int(_float("MAX_RESPONSE_BYTES", 16 * 1024 ** 2)),
            # -- webhooks (issue 18) --
            webhook_timeout_s=_float("WEBHOOK_TIMEOUT_S", 10.0),
            webhook_max_attempts=int(_float("WEBHOOK_MAX_ATTEMPTS", 8)),
            webhook_backoff_base_s=_float("WEBHOOK_BACKOFF_BASE_S", 2.0),
            webhook_backoff_max_s=_float("WEBHOOK_BACKOFF_MAX_S", 600.0),
            webhook_disable_after=int(_float("WEBHOOK_DISABLE_AFTER", 10)),
            webhook_workers=int(_float("WEBHOOK_WORKERS", 4)),
            webhook_allowed_http_hosts=tuple(
                h.strip().lower() for h in (env.get("WEBHOOK_ALLOWED_HTTP_HOSTS") or "").split(",")
                if h.strip()),
            webhook_allow_private=_flag("WEBHOOK_ALLOW_PRIVATE"),
        )
        if overrides:
            if "data_dir" in overrides and "database_url" not in overrides:
                d = Path(overrides["data_dir"])
                values["database_url"] = f"sqlite:///{d / 'registry.db'}"
                values["artifact_root"] = d / "artifacts"
            values.update(overrides)
        values["data_dir"] = Path(values["data_dir"])
        values["artifact_root"] = Path(values["artifact_root"])
        return cls(**values)


def get_settings() -> Settings:
    return Settings.from_env()
