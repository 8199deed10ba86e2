"""storage.model_store: a content-addressed artifact store on a real directory."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from errors import DataCorrupted, InvalidArgument, NotFound, TooLarge
from storage.model_store import ArtifactStore

ROOT = Path(__file__).resolve().parent.parent
DATA = b"model bytes " * 1000
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def blobs(store: ArtifactStore) -> list[Path]:
    return sorted(p for p in (store.root / "sha256").rglob("*") if p.is_file())


def temps(store: ArtifactStore) -> list[Path]:
    return sorted((store.root / "tmp").glob("*"))


class ExplodingStream(io.RawIOBase):
    """Yields some bytes, then fails: a client that disconnects mid-upload."""

    def __init__(self, good: bytes) -> None:
        self.good = good

    def read(self, size: int = -1) -> bytes:
        if self.good:
            chunk, self.good = self.good[:size], self.good[size:]
            return chunk
        raise ConnectionResetError("client went away")


def test_put_stream_returns_digest_and_size_and_stores_content_addressed(store):
    digest, size = store.put_stream(io.BytesIO(DATA), max_bytes=len(DATA), chunk_size=7)
    assert (digest, size) == (DIGEST, len(DATA))
    path = store.path_for(digest)
    assert path == store.root / "sha256" / DIGEST[:2] / DIGEST
    assert path.read_bytes() == DATA
    assert store.exists(digest) and temps(store) == []
    with store.open(digest) as f:
        assert f.read() == DATA


def test_empty_artifact(store):
    assert store.put_bytes(b"") == (hashlib.sha256(b"").hexdigest(), 0)


def test_identical_bytes_are_stored_once(store):
    first = store.put_bytes(DATA)
    inode = store.path_for(DIGEST).stat().st_ino
    assert store.put_stream(io.BytesIO(DATA), max_bytes=10**9) == first
    assert blobs(store) == [store.path_for(DIGEST)] and temps(store) == []
    assert store.path_for(DIGEST).stat().st_ino == inode  # the existing copy was kept


def test_concurrent_uploads_of_the_same_bytes(store):
    results: list[tuple[str, int]] = []
    threads = [threading.Thread(target=lambda: results.append(store.put_bytes(DATA)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {(DIGEST, len(DATA))}
    assert len(blobs(store)) == 1 and temps(store) == []
    assert store.path_for(DIGEST).read_bytes() == DATA


def test_over_the_limit_is_too_large_and_leaves_nothing(store):
    with pytest.raises(TooLarge, match="100 bytes"):
        store.put_stream(io.BytesIO(b"x" * 101), max_bytes=100, chunk_size=16)
    assert blobs(store) == [] and temps(store) == []
    assert store.put_stream(io.BytesIO(b"x" * 100), max_bytes=100)[1] == 100


def test_failing_stream_leaves_no_artifact_and_no_temp(store):
    with pytest.raises(ConnectionResetError):
        store.put_stream(ExplodingStream(DATA[:5000]), max_bytes=10**9, chunk_size=1000)
    assert blobs(store) == [] and temps(store) == []
    assert not store.exists(hashlib.sha256(DATA[:5000]).hexdigest())


def test_crash_mid_write_leaves_only_a_temp_file_that_cleanup_removes(store):
    # A hard crash (no exception handler runs): the process dies half-way through the upload.
    script = (
        "import io, os, sys\n"
        "from storage.model_store import ArtifactStore\n"
        "class Dying(io.RawIOBase):\n"
        "    sent = 0\n"
        "    def read(self, size=-1):\n"
        "        if self.sent:\n"
        "            os._exit(3)\n"
        "        self.sent = 1\n"
        "        return b'partial' * 100\n"
        "ArtifactStore(sys.argv[1]).put_stream(Dying(), max_bytes=10**9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(store.root)], cwd=ROOT,
                          capture_output=True, timeout=60)
    assert proc.returncode == 3, proc.stderr.decode()
    assert blobs(store) == [] and len(temps(store)) == 1
    assert not store.exists(hashlib.sha256(b"partial" * 100).hexdigest())
    assert store.cleanup_temp() == 0  # too recent: it might be another process's upload
    assert store.cleanup_temp(max_age_s=0) == 1
    assert temps(store) == []


def test_cleanup_temp_on_an_empty_store(store):
    assert store.cleanup_temp(max_age_s=0) == 0


def corrupt(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_corrupted_bytes_are_refused(store):
    store.put_bytes(DATA)
    path = store.path_for(DIGEST)
    corrupt(path, DATA[:-1] + b"!")
    actual = hashlib.sha256(DATA[:-1] + b"!").hexdigest()
    with pytest.raises(DataCorrupted) as info:
        store.path_for(DIGEST)
    assert DIGEST in info.value.message and actual in info.value.message
    assert info.value.details == {"expected": DIGEST, "actual": actual}
    with pytest.raises(DataCorrupted):
        store.open(DIGEST)
    assert store.path_for(DIGEST, verify=False) == path  # the caller opted out


def test_uploading_the_original_again_repairs_a_corrupted_copy(store):
    store.put_bytes(DATA)
    corrupt(store.path_for(DIGEST), b"garbage")
    assert store.put_bytes(DATA) == (DIGEST, len(DATA))
    assert store.path_for(DIGEST).read_bytes() == DATA


def test_stored_files_are_read_only(store):
    store.put_bytes(DATA)
    assert store.path_for(DIGEST).stat().st_mode & 0o222 == 0


def test_missing_artifact_is_not_found(store):
    with pytest.raises(NotFound, match=DIGEST):
        store.path_for(DIGEST)
    with pytest.raises(NotFound):
        store.path_for(DIGEST, verify=False)
    with pytest.raises(NotFound):
        store.open(DIGEST)
    assert not store.exists(DIGEST)


def test_delete(store):
    store.put_bytes(DATA)
    assert store.delete(DIGEST) is True
    assert not store.exists(DIGEST)
    assert store.delete(DIGEST) is False


@pytest.mark.parametrize("digest", [
    "../../etc/passwd", "", None, 42, DIGEST.upper(), DIGEST[:-1], DIGEST + "0",
    "sha256:" + DIGEST, "../" + DIGEST[3:], DIGEST[:-1] + "\x00", DIGEST[:-1] + "/",
    "g" * 64, " " + DIGEST[1:],
])
def test_bad_digests_are_refused_before_touching_the_disk(store, digest):
    for call in (store.exists, store.path_for, store.open, store.delete):
        with pytest.raises(InvalidArgument, match="64 lowercase hex"):
            call(digest)
