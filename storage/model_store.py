"""Content-addressed artifact store: the bytes of model versions, named by their sha256.

Layout under ``root``::

    sha256/ab/abcdef…   one read-only file per distinct content (the name is the digest)
    tmp/upload-….part   uploads in progress; never read, removed by ``cleanup_temp``

Why this shape:

- Paths are built only from a validated 64-character lowercase hex digest, never from a model
  name or anything else a caller sent, so no request can reach outside ``root``.
- An upload is streamed to a temp file on the same filesystem while it is hashed, fsynced, then
  published with one atomic ``os.replace``. A reader therefore sees either no artifact or the
  whole one; a crash mid-upload leaves only a temp file.
- Identical bytes are stored once (dedupe). A new upload of bytes whose stored copy went bad
  replaces (heals) that copy.
- Bytes are re-hashed before they are served or loaded (``path_for``/``hold``/``open`` with
  ``verify``): a disk that silently changed them yields ``DataCorrupted``, never wrong output.

No SQL here: which version owns which digest is the registry's business.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from errors import DataCorrupted, InvalidArgument, NotFound, TooLarge
from storage.disk import is_full, storage_full

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = "upload-"
_TEMP_SUFFIX = ".part"
_HASH_CHUNK = 1 << 20


def check_digest(digest: object) -> str:
    """Return ``digest`` if it is a sha256 hex digest (64 lowercase hex characters)."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        shown = repr(digest) if len(repr(digest)) <= 80 else repr(digest)[:77] + "..."
        raise InvalidArgument(f"invalid artifact digest {shown}: expected a sha256 as 64 "
                              "lowercase hex characters")
    return digest


def _hash_file(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_HASH_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: the directory entry, not only the file, must reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactStore:
    """Immutable blobs by sha256 under ``root``; safe for many threads and processes."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._objects = self.root / "sha256"
        self._tmp = self.root / "tmp"

    def _path(self, digest: str) -> Path:
        digest = check_digest(digest)
        return self._objects / digest[:2] / digest

    # -- writing --------------------------------------------------------------------------
    def put_stream(self, stream: BinaryIO, max_bytes: int, chunk_size: int = 1 << 20, *,
                   link: Path | None = None) -> tuple[str, int]:
        """Store everything ``stream.read`` yields; return ``(sha256 hex digest, size)``.

        More than ``max_bytes`` → ``TooLarge``. Any failure (including one raised by the
        stream itself) removes the temp file and leaves the store as it was. ``link``: also
        hard-link the new file there before it is published, so that a cache evicting it
        right after cannot take it from the caller (the S3 store's ``hold``).
        """
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX,
                                            dir=self._tmp)
        except OSError as exc:
            if is_full(exc):
                raise storage_full("storing the artifact") from exc
            raise
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(chunk_size):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"artifact is larger than the limit of {max_bytes} bytes",
                                       details={"max_bytes": max_bytes})
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if link is not None:
                os.link(tmp, link)
            self._publish(tmp, digest)
            return digest, size
        except OSError as exc:
            if is_full(exc):
                raise storage_full("storing the artifact") from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)  # already gone when published

    def put_bytes(self, data: bytes, max_bytes: int | None = None) -> tuple[str, int]:
        """``put_stream`` for bytes already in memory (demos, tests)."""
        return self.put_stream(io.BytesIO(data), len(data) if max_bytes is None else max_bytes)

    def _publish(self, tmp: Path, digest: str) -> None:
        final = self._path(digest)
        if final.exists() and self._matches(final, digest):
            return  # dedupe: identical bytes are already there
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    # -- reading --------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def path_for(self, digest: str, verify: bool = True) -> Path:
        """The file holding ``digest``; with ``verify`` its bytes are re-hashed first."""
        path = self._path(digest)
        if verify:
            self.open(digest).close()
        elif not path.is_file():
            raise self._missing(digest)
        return path

    @contextmanager
    def hold(self, digest: str, verify: bool = True) -> Iterator[Path]:
        """A local file of ``digest`` that stays valid for the block (what the model loader
        hands to a provider). Here it is the stored file itself: nothing evicts local
        artifacts, and a heal replaces the file with the same bytes in one rename."""
        yield self.path_for(digest, verify)

    def open(self, digest: str, verify: bool = True) -> BinaryIO:
        """An open binary file positioned at 0. With ``verify`` the hash is checked on the
        same file descriptor that is returned, so what was checked is what gets read."""
        path = self._path(digest)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise self._missing(digest) from None
        if verify:
            try:
                actual = _hash_file(f)
                if actual != digest:
                    raise DataCorrupted(
                        f"artifact sha256:{digest} is corrupted: its bytes on disk hash to "
                        f"sha256:{actual}; re-upload the original file to repair it",
                        details={"expected": digest, "actual": actual})
                f.seek(0)
            except BaseException:
                f.close()
                raise
        return f

    def download_url(self, digest: str) -> str | None:
        """None: the server streams local artifacts itself (S3 may redirect, issue 20)."""
        return None

    def digests(self) -> Iterator[str]:
        """Every stored digest (for ``storage.migrate_artifacts``)."""
        for path in self._objects.glob("*/*"):
            if _DIGEST_RE.fullmatch(path.name):
                yield path.name

    def _matches(self, path: Path, digest: str) -> bool:
        try:
            with open(path, "rb") as f:
                return _hash_file(f) == digest
        except FileNotFoundError:
            return False

    @staticmethod
    def _missing(digest: str) -> NotFound:
        return NotFound(f"artifact sha256:{digest} is not in the artifact store",
                        details={"digest": digest})

    # -- removing -------------------------------------------------------------------------
    def delete(self, digest: str) -> bool:
        """Remove the blob; True if it existed. The caller makes sure nothing refers to it."""
        try:
            self._path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def cleanup_temp(self, max_age_s: float = 3600.0) -> int:
        """Remove temp files of uploads that died (no write for ``max_age_s`` seconds);
        return how many. The age guard spares uploads still running in other processes."""
        if not self._tmp.is_dir():
            return 0
        cutoff = time.time() - max_age_s
        removed = 0
        for path in self._tmp.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

