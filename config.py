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
    # issue 17: MLflow compatibility and bundles
    mlflow_tracking_token: str | None = None   # bearer token import-mlflow sends to MLflow
    max_bundle_bytes: int = 8 * 1024 * 1024 * 1024   # POST /api/import body limit
    extra: dict[str, str] = field(default_factory=dict)

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
            # issue 17
            mlflow_tracking_token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            max_bundle_bytes=int(_float("MAX_BUNDLE_BYTES", 8 * 1024 * 1024 * 1024)),
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
