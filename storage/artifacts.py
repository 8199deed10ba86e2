"""The one artifact-store interface, and the choice of store from the settings (issue 20).

``ARTIFACT_ROOT`` a directory → ``ArtifactStore`` (storage/model_store.py);
``ARTIFACT_ROOT=s3://bucket/prefix`` → ``S3ArtifactStore`` (storage/s3_store.py), with the
local directory as its cache. Callers see only ``ArtifactStorage``.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol

from config import Settings
from storage.model_store import ArtifactStore
from storage.s3_store import S3ArtifactStore


class ArtifactStorage(Protocol):
    root: Path  # the local volume (the store itself, or the S3 store's cache)

    def put_stream(self, stream: BinaryIO, max_bytes: int,
                   chunk_size: int = ...) -> tuple[str, int]: ...
    def put_bytes(self, data: bytes, max_bytes: int | None = None) -> tuple[str, int]: ...
    def exists(self, digest: str) -> bool: ...
    def open(self, digest: str, verify: bool = True) -> BinaryIO: ...
    def hold(self, digest: str, verify: bool = True) -> AbstractContextManager[Path]: ...
    def download_url(self, digest: str) -> str | None: ...
    def digests(self) -> Iterator[str]: ...
    def delete(self, digest: str) -> bool: ...
    def cleanup_temp(self, max_age_s: float = 3600.0) -> int: ...


def s3_client(settings: Settings):
    """A boto3 S3 client from the settings (credentials, region, endpoint for MinIO/R2)."""
    from botocore.config import Config
    config = Config(retries={"max_attempts": 3, "mode": "standard"},
                    max_pool_connections=max(10, settings.server_threads * 2),
                    s3={"addressing_style": "path"} if settings.s3_endpoint_url else {})
    with _boto_lock:   # a boto3 session is not thread-safe; its clients are
        return _boto_session().client(
            "s3", endpoint_url=settings.s3_endpoint_url, config=config,
            region_name=settings.aws_region or "us-east-1",
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key,
            aws_session_token=settings.aws_session_token)


_boto_lock = threading.Lock()


@functools.cache
def _boto_session():  # type: ignore[no-untyped-def]
    """One session per process: a new one parses botocore's service models again (~0.2 s per
    client); credentials not given in the settings come from its usual chain."""
    import boto3
    return boto3.session.Session()


def open_artifact_store(settings: Settings, url: str | None = None,
                        cache_root: Path | None = None) -> ArtifactStorage:
    """The store for ``url`` (default: the settings' ``ARTIFACT_ROOT``)."""
    url = url if url is not None else str(settings.artifact_root)
    if not url.startswith("s3://"):
        return ArtifactStore(url)
    return S3ArtifactStore(
        url, s3_client(settings), cache_root or settings.artifact_cache_dir,
        part_bytes=settings.s3_part_bytes, cache_bytes=settings.artifact_cache_bytes,
        presign_expiry_s=settings.s3_presign_expiry_s if settings.s3_presign_downloads else None)
