"""Content-addressed artifact store in an S3-compatible bucket (AWS S3, MinIO, R2, moto).

Layout under ``s3://bucket/prefix/``::

    sha256/ab/abcdef…    one object per distinct content (the key is the digest)
    tmp/upload-….part    large uploads in progress; never read, removed by ``cleanup_temp``

It keeps the promises of the local ``ArtifactStore`` (storage/model_store.py), which it uses
as its cache of loaded artifacts:

- Streamed both ways, memory flat in the artifact's size: an upload holds at most one part
  (``part_bytes``) in memory; a download streams the object into the local cache while hashing.
- No half-written object under its final key: the digest is known only at the end, so an
  upload that fits in one part is one atomic PUT to the final key, and a larger one is a
  multipart upload to a temp key (invisible until completed) then a server-side copy to the
  final key (atomic for readers: they see no object or the whole one). A failure aborts the
  multipart upload and removes the temp object.
- Digest verified on load and on download: bytes fetched from the bucket are re-hashed before
  they enter the cache; an object changed behind our back yields ``DataCorrupted``.
- A missing bucket, denied access or an unreachable endpoint is ``Unavailable`` with a message
  naming the bucket and what to check, never a 500 with a botocore traceback.

Several servers share one bucket: every server caches what it loads, bounded by
``cache_bytes`` (least recently used evicted first). Eviction never pulls a file from under a
user: readers get an open descriptor (``open``) or a held hard link (``hold``), both of which
keep their bytes after the cache's name is gone (a held file's bytes count against the disk,
not against ``cache_bytes``, until the block ends).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from errors import DataCorrupted, NotFound, TooLarge, Unavailable
from storage.model_store import ArtifactStore, check_digest

log = logging.getLogger(__name__)

_MISSING_BUCKET = {"NoSuchBucket"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "AllAccessDisabled", "InvalidToken", "ExpiredToken"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_UNLIMITED = 1 << 62


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix/")`` (prefix may be empty)."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3ArtifactStore:
    """Immutable blobs by sha256 in a bucket, with a bounded local cache of loaded ones."""

    def __init__(self, url: str, client: Any, cache_root: Path | str, *,
                 part_bytes: int = 8 * 1024 ** 2, cache_bytes: int = 4 * 1024 ** 3,
                 presign_expiry_s: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.client = client
        self.part_bytes = max(5 * 1024 ** 2, part_bytes)  # S3's smallest non-final part
        self.cache_bytes = cache_bytes
        self.presign_expiry_s = presign_expiry_s
        self.cache = ArtifactStore(cache_root)
        self.root = self.cache.root  # the local volume: readiness probes write here
        self._held = self.root / "held"  # hard links to cached files in use (``hold``)

    def _key(self, digest: str) -> str:
        digest = check_digest(digest)
        return f"{self.prefix}sha256/{digest[:2]}/{digest}"

    @contextmanager
    def _s3(self, doing: str, digest: str | None = None) -> Iterator[None]:
        """Translate botocore's errors into the domain's."""
        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if code in _MISSING_BUCKET or (code in _MISSING_KEY and digest is None):
                raise Unavailable(
                    f"the artifact bucket '{self.bucket}' does not exist ({doing}); create it "
                    f"or fix ARTIFACT_ROOT={self.url}",
                    details={"bucket": self.bucket, "reason": "bucket_missing"}) from None
            if code in _DENIED:
                raise Unavailable(
                    f"access to the artifact bucket '{self.bucket}' was denied ({doing}): "
                    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy "
                    "(the server needs s3:GetObject, s3:PutObject, s3:DeleteObject, "
                    "s3:ListBucket)",
                    details={"bucket": self.bucket, "reason": "access_denied",
                             "s3_code": code}) from None
            if code in _MISSING_KEY and digest is not None:
                raise self.cache._missing(digest) from None
            raise Unavailable(f"the artifact store at {self.url} failed ({doing}): "
                              f"{code} {err.get('Message', '')}".strip(),
                              details={"bucket": self.bucket, "s3_code": code}) from None
        except BotoCoreError as exc:
            raise Unavailable(f"the artifact store at {self.url} is unreachable ({doing}): "
                              f"{exc}", details={"bucket": self.bucket}) from None

    # -- writing --------------------------------------------------------------------------
    def put_stream(self, stream: BinaryIO, max_bytes: int,
                   chunk_size: int = 1 << 20) -> tuple[str, int]:
        """Store everything ``stream.read`` yields; return ``(sha256 hex digest, size)``.

        More than ``max_bytes`` → ``TooLarge``; any failure leaves the bucket as it was."""
        h = hashlib.sha256()
        size = 0

        def next_part() -> bytearray:
            nonlocal size
            buf = bytearray()
            while len(buf) < self.part_bytes:
                chunk = stream.read(min(chunk_size, self.part_bytes - len(buf)))
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"artifact is larger than the limit of {max_bytes} bytes",
                                   details={"max_bytes": max_bytes})
                h.update(chunk)
                buf += chunk
            return buf  # botocore sends a bytearray as is: no second copy of the part

        first = next_part()
        if len(first) < self.part_bytes:  # the whole artifact: one atomic PUT
            digest = h.hexdigest()
            with self._s3("storing the artifact"):
                self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=first,
                                       Metadata={"sha256": digest})
            return digest, size
        return self._put_multipart(first, next_part, h, lambda: size)

    def _put_multipart(self, first: bytearray, next_part: Any, h: Any,
                       size: Any) -> tuple[str, int]:
        tmp_key = f"{self.prefix}tmp/upload-{uuid.uuid4().hex}.part"
        with self._s3("starting a multipart upload"):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=tmp_key)["UploadId"]
        completed = False
        try:
            parts = []
            part = first
            while part:
                with self._s3("uploading a part"):
                    etag = self.client.upload_part(
                        Bucket=self.bucket, Key=tmp_key, UploadId=upload_id,
                        PartNumber=len(parts) + 1, Body=part)["ETag"]
                parts.append({"ETag": etag, "PartNumber": len(parts) + 1})
                part = next_part()
            with self._s3("completing a multipart upload"):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=tmp_key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts})
            completed = True
            digest = h.hexdigest()
            with self._s3("publishing the artifact"):
                # A managed (multipart when large) server-side copy; always done, so that an
                # upload of the right bytes heals a stored copy that went bad.
                self.client.copy({"Bucket": self.bucket, "Key": tmp_key}, self.bucket,
                                 self._key(digest),
                                 ExtraArgs={"Metadata": {"sha256": digest},
                                            "MetadataDirective": "REPLACE"})
            return digest, size()
        finally:
            try:
                if completed:
                    self.client.delete_object(Bucket=self.bucket, Key=tmp_key)
                else:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=tmp_key,
                                                       UploadId=upload_id)
            except (ClientError, BotoCoreError) as exc:  # cleanup_temp retries it later
                log.warning("could not remove the temp upload %s: %s", tmp_key, exc)

    def put_bytes(self, data: bytes, max_bytes: int | None = None) -> tuple[str, int]:
        import io
        return self.put_stream(io.BytesIO(data), len(data) if max_bytes is None else max_bytes)

    # -- reading --------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        try:
            with self._s3("looking up the artifact", digest):
                self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
        except NotFound:  # a HEAD's 404 does not say whether the key or the bucket is missing
            with self._s3("looking up the bucket"):
                self.client.head_bucket(Bucket=self.bucket)
            return False
        return True

    def _fetch(self, digest: str, held: Path) -> None:
        """Stream the object into the cache, hashing it, and hold it at ``held`` (linked
        before it is published: no eviction can come in between). Wrong bytes never enter the
        cache."""
        with self._s3("downloading the artifact", digest):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"]
            try:
                actual, _ = self.cache.put_stream(body, _UNLIMITED, link=held)
            finally:
                body.close()
        if actual != digest:
            self.cache.delete(actual)
            raise DataCorrupted(
                f"artifact sha256:{digest} in {self.url} is corrupted: its bytes hash to "
                f"sha256:{actual}; re-upload the original file to repair it",
                details={"expected": digest, "actual": actual})
        self._evict(keep=digest)

    def open(self, digest: str, verify: bool = True) -> BinaryIO:
        """An open local file of the artifact (fetched into the cache if needed). Bytes just
        fetched were hashed on the way in; cached bytes are re-hashed when ``verify``. The
        descriptor keeps its bytes readable whatever is evicted until it is closed."""
        with self.hold(digest, verify) as path:
            return open(path, "rb")

    @contextmanager
    def hold(self, digest: str, verify: bool = True) -> Iterator[Path]:
        """A local file of ``digest`` that stays whole until the block ends, whatever evicts
        the cache meanwhile (what the model loader hands to a provider).

        The file is a hard link, under ``held/``, to the cached copy (made before a fetched
        copy is even published into the cache): eviction, by a thread of this process or by
        another worker sharing the cache directory, unlinks only the cache's name, so the
        held bytes live on until the block ends and removes the link. A bare path into the
        cache could be evicted between being returned and being opened, which is why this
        store has no ``path_for``. The cache directory must support hard links (any local
        POSIX filesystem does).
        """
        check_digest(digest)
        self._held.mkdir(parents=True, exist_ok=True)
        held = self._hold(digest, verify)
        try:
            yield held
        finally:
            held.unlink(missing_ok=True)

    def _hold(self, digest: str, verify: bool) -> Path:
        for _ in range(2):  # a cached copy found bad is dropped and fetched again
            held = self._held / f"{digest}.{time.time_ns()}.{uuid.uuid4().hex[:8]}"
            try:
                if self.cache.exists(digest):
                    try:
                        os.link(self.cache._path(digest), held)
                    except FileNotFoundError:
                        pass  # evicted since: fetched below
                    else:  # the hash is checked on the very inode that is held
                        if verify and not self.cache._matches(held, digest):
                            held.unlink(missing_ok=True)
                            self.cache.delete(digest)
                            continue
                        self._touch(digest)
                        return held
                self._fetch(digest, held)  # hashed on the way in
                return held
            except BaseException:
                held.unlink(missing_ok=True)
                raise
        raise DataCorrupted(f"artifact sha256:{digest}: the local cache keeps corrupting it "
                            f"(check the disk under {self.root})",
                            details={"expected": digest})

    def download_url(self, digest: str) -> str | None:
        """A presigned GET URL when downloads redirect to the bucket, else None."""
        if self.presign_expiry_s is None:
            return None
        with self._s3("presigning a download", digest):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(digest)},
                ExpiresIn=self.presign_expiry_s)

    def digests(self) -> Iterator[str]:
        """Every stored digest (for ``storage.migrate_artifacts``)."""
        with self._s3("listing artifacts"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}sha256/")
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"].rsplit("/", 1)[-1]

    # -- the cache ------------------------------------------------------------------------
    def _touch(self, digest: str) -> None:
        try:
            os.utime(self.cache._path(digest))
        except OSError:
            pass

    def _evict(self, keep: str) -> None:
        """Remove least recently used cached artifacts until the cache fits its limit."""
        files = []
        for path in self.cache.root.glob("sha256/*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.cache_bytes:
                break
            if path.name != keep:
                path.unlink(missing_ok=True)
                total -= size

    # -- removing -------------------------------------------------------------------------
    def delete(self, digest: str) -> bool:
        existed = self.exists(digest)
        with self._s3("deleting the artifact", digest):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))
        self.cache.delete(digest)
        return existed

    def _cleanup_held(self, max_age_s: float) -> int:
        """Remove held links left by a process that died inside ``hold`` (their names carry
        the time they were made)."""
        cutoff = time.time_ns() - int(max_age_s * 1e9)
        removed = 0
        for path in self._held.glob("*.*.*"):
            try:
                made = int(path.name.split(".")[1])
            except (IndexError, ValueError):
                continue
            if made <= cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def cleanup_temp(self, max_age_s: float = 3600.0) -> int:
        """Abort multipart uploads and remove temp objects older than ``max_age_s``, and
        held links a dead process left behind."""
        removed = self.cache.cleanup_temp(max_age_s) + self._cleanup_held(max_age_s)
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=max_age_s)
        tmp = f"{self.prefix}tmp/"
        try:
            with self._s3("cleaning temp uploads"):
                ups = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=tmp)
                for up in ups.get("Uploads", []):
                    if up["Initiated"] <= cutoff:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"],
                                                           UploadId=up["UploadId"])
                        removed += 1
                listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=tmp)
                for obj in listed.get("Contents", []):
                    if obj["LastModified"] <= cutoff:
                        self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                        removed += 1
        except Unavailable as exc:  # at start-up: say so, serve what can be served
            log.warning("artifact store: %s", exc)
        return removed
