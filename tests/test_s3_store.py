"""The S3 artifact store against a real S3 API: moto's server in its own process (issue 20)."""
from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest
import requests

from api.app import create_app
from api.services import EXTENSION_KEY
from config import Settings
from errors import DataCorrupted, NotFound, TooLarge, Unavailable
from storage.artifacts import open_artifact_store
from storage.migrate_artifacts import main as migrate_main
from storage.model_store import ArtifactStore
from storage.s3_store import S3ArtifactStore, parse_s3_url
from tests.conftest import fresh_sqlite
from tests.moto_s3 import CREDENTIALS, MotoS3

MB = 1024 ** 2


# ``moto`` (one S3 server per session) and ``bucket`` (a fresh one per test): conftest.py


def settings_for(moto: MotoS3, tmp_path: Path, **over) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'r.db'}",
                    artifact_root="s3://unused", s3_endpoint_url=moto.url,
                    aws_access_key_id="testing", aws_secret_access_key="testing",
                    aws_region="us-east-1", **over)


def store_for(moto: MotoS3, bucket: str, tmp_path: Path, cache: str = "cache",
              **over) -> S3ArtifactStore:
    s = settings_for(moto, tmp_path, **over)
    store = open_artifact_store(s, f"s3://{bucket}/models", cache_root=tmp_path / cache)
    assert isinstance(store, S3ArtifactStore)
    return store


def keys(moto: MotoS3, bucket: str) -> list[str]:
    return [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_parse_url():
    assert parse_s3_url("s3://b/x/y/") == ("b", "x/y/")
    assert parse_s3_url("s3://b") == ("b", "")
    with pytest.raises(ValueError):
        parse_s3_url("s3:///x")


def test_settings_keep_the_s3_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ARTIFACT_ROOT", "s3://bucket/some/prefix")
    s = Settings.from_env()
    assert s.artifact_s3_url == s.artifact_root == "s3://bucket/some/prefix"
    assert s.artifact_cache_dir.name == "artifact-cache"


def test_small_upload_is_one_object_under_its_digest(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path)
    data = b"onnx bytes" * 100
    digest, size = store.put_bytes(data)
    assert digest == hashlib.sha256(data).hexdigest() and size == len(data)
    assert keys(moto, bucket) == [f"models/sha256/{digest[:2]}/{digest}"]
    head = moto.client().head_object(Bucket=bucket, Key=keys(moto, bucket)[0])
    assert head["Metadata"]["sha256"] == digest
    assert store.exists(digest) and not store.exists("0" * 64)
    with store.open(digest) as f:
        assert f.read() == data
    assert store.put_bytes(data) == (digest, size)  # dedupe: still one object
    assert len(keys(moto, bucket)) == 1
    assert list(store.digests()) == [digest]
    with pytest.raises(NotFound):
        store.open("1" * 64)


def test_multipart_upload_streams_and_leaves_no_temp(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path, s3_part_bytes=5 * MB)
    data = os.urandom(12 * MB + 123)  # three parts
    reads = []

    class Stream(io.BytesIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    digest, size = store.put_stream(Stream(data), 100 * MB)
    assert digest == hashlib.sha256(data).hexdigest() and size == len(data)
    assert max(reads) <= 1 * MB  # never asked the request body for more than a chunk
    assert keys(moto, bucket) == [f"models/sha256/{digest[:2]}/{digest}"]
    assert not moto.client().list_multipart_uploads(Bucket=bucket).get("Uploads")
    fresh = store_for(moto, bucket, tmp_path, cache="other-cache")
    with fresh.open(digest) as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest


def test_too_large_aborts_the_multipart_upload(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path, s3_part_bytes=5 * MB)
    with pytest.raises(TooLarge):
        store.put_stream(io.BytesIO(os.urandom(11 * MB)), 10 * MB)
    assert keys(moto, bucket) == []
    assert not moto.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_failing_stream_leaves_nothing(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path, s3_part_bytes=5 * MB)

    class Dies(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 6 * MB:
                raise OSError("client went away")
            return super().read(n)

    with pytest.raises(OSError):
        store.put_stream(Dies(os.urandom(8 * MB)), 100 * MB)
    assert keys(moto, bucket) == []
    assert not moto.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_tampered_object_is_detected_and_healed_by_reupload(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path)
    data = b"the real model" * 1000
    digest, _ = store.put_bytes(data)
    # Change the object behind the store's back, through the S3 API.
    moto.client().put_object(Bucket=bucket, Key=f"models/sha256/{digest[:2]}/{digest}",
                             Body=b"evil" + data[4:])
    other = store_for(moto, bucket, tmp_path, cache="server-b-cache")  # nothing cached
    with pytest.raises(DataCorrupted) as exc:
        other.open(digest)
    assert exc.value.details["expected"] == digest
    assert not other.cache.exists(digest) and list(other.cache.digests()) == []
    with pytest.raises(DataCorrupted), other.hold(digest):
        pass
    store.put_bytes(data)  # uploading the right bytes again repairs the object
    with other.open(digest) as f:
        assert f.read() == data


def test_tampered_cache_is_refetched(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path)
    digest, _ = store.put_bytes(b"x" * 5000)
    store.open(digest).close()            # fetched into the cache
    path = store.cache.path_for(digest)   # the cached copy itself
    os.chmod(path, 0o644)
    path.write_bytes(b"y" * 5000)
    with store.open(digest) as f:
        assert f.read() == b"x" * 5000


def test_missing_bucket_is_a_clear_error(moto, tmp_path):
    store = store_for(moto, "no-such-bucket", tmp_path)
    for call in (lambda: store.put_bytes(b"abc"), lambda: store.open("a" * 64),
                 lambda: store.exists("a" * 64)):
        with pytest.raises(Unavailable) as exc:
            call()
        assert exc.value.details["reason"] == "bucket_missing"
        assert "no-such-bucket" in str(exc.value) and "does not exist" in str(exc.value)


@pytest.mark.slow   # a moto server of its own, with IAM enforced
def test_access_denied_is_a_clear_error(tmp_path):
    """moto enforces IAM when INITIAL_NO_AUTH_ACTION_COUNT is set: unknown keys are refused."""
    with MotoS3(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict:
        store = store_for(strict, "any-bucket", tmp_path)
        for call in (lambda: store.put_bytes(b"abc"), lambda: store.open("a" * 64)):
            with pytest.raises(Unavailable) as exc:
                call()
            assert exc.value.details["reason"] == "access_denied", exc.value
            assert "denied" in str(exc.value) and "AWS_ACCESS_KEY_ID" in str(exc.value)


def test_unreachable_endpoint_is_unavailable(tmp_path):
    from tests.support import free_port
    s = Settings(data_dir=tmp_path, database_url="sqlite://", artifact_root=tmp_path / "c",
                 s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
                 aws_access_key_id="x", aws_secret_access_key="y")
    store = open_artifact_store(s, "s3://b/p")
    with pytest.raises(Unavailable, match="unreachable"):
        store.put_bytes(b"abc")


def test_cache_is_bounded_lru(moto, bucket, tmp_path):
    writer = store_for(moto, bucket, tmp_path, cache="w")
    digests = [writer.put_bytes(os.urandom(4000))[0] for _ in range(4)]
    reader = store_for(moto, bucket, tmp_path, cache="r", artifact_cache_bytes=10_000)
    for d in digests:
        with reader.hold(d):
            pass
    cached = set(reader.cache.digests())
    assert digests[-1] in cached and digests[-2] in cached and len(cached) == 2


def test_a_held_artifact_survives_its_eviction_by_another_worker(moto, bucket, tmp_path):
    """Two workers share one cache directory. While one holds an artifact (a provider is
    loading it), the other's fetches evict it from the cache: the held file stays whole and
    readable, and the held link is gone after the block."""
    writer = store_for(moto, bucket, tmp_path, cache="w")
    blobs = [os.urandom(4000) for _ in range(3)]
    digests = [writer.put_bytes(b)[0] for b in blobs]
    a, b = (store_for(moto, bucket, tmp_path, cache="shared", artifact_cache_bytes=5000)
            for _ in range(2))
    with a.hold(digests[0]) as path:
        for d in digests[1:]:
            with b.hold(d):
                pass
        assert not a.cache.exists(digests[0])      # evicted from the cache meanwhile...
        assert path.read_bytes() == blobs[0]       # ...and still whole where it is held
    assert not path.exists() and list((tmp_path / "shared" / "held").iterdir()) == []
    with a.hold(digests[0]) as again:              # fetched again on the next use
        assert again.read_bytes() == blobs[0]


def test_concurrent_holds_never_lose_their_file(moto, bucket, tmp_path):
    """Threads of two workers hold and read artifacts through a cache that fits one of them,
    so every fetch evicts what another thread may be about to open: a path into the cache
    would go missing (FileNotFoundError) now and then; a held file never does."""
    writer = store_for(moto, bucket, tmp_path, cache="w")
    blobs = {}
    for _ in range(3):
        data = os.urandom(3000)
        blobs[writer.put_bytes(data)[0]] = data
    workers = [store_for(moto, bucket, tmp_path, cache="shared", artifact_cache_bytes=3000)
               for _ in range(2)]
    order = list(blobs)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def use(i: int) -> None:
        store = workers[i % 2]
        start.wait()
        try:
            for n in range(12):
                digest = order[(i + n) % len(order)]
                with store.hold(digest) as path:
                    time.sleep(0.001)              # a provider between open calls
                    assert path.read_bytes() == blobs[digest]
        except BaseException as exc:               # reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=use, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert list((tmp_path / "shared" / "held").iterdir()) == []


def test_cleanup_removes_held_links_a_dead_process_left(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path)
    digest, _ = store.put_bytes(b"held" * 1000)
    with store.hold(digest) as path:
        stale = path.with_name(f"{digest}.{time.time_ns() - 7200 * 10**9}.deadbeef")
        os.link(path, stale)                       # what a crash inside hold() leaves
        assert store.cleanup_temp(3600) >= 1
        assert path.exists() and not stale.exists()   # the live hold is kept


def test_presigned_download_url(moto, bucket, tmp_path):
    store = store_for(moto, bucket, tmp_path, s3_presign_downloads=True)
    assert store_for(moto, bucket, tmp_path).download_url("a" * 64) is None
    digest, _ = store.put_bytes(b"presigned bytes")
    assert store.presign_expiry_s == 300
    r = requests.get(store.download_url(digest), timeout=10)
    assert r.status_code == 200 and r.content == b"presigned bytes"


def test_migrate_local_to_s3_and_back(moto, bucket, tmp_path, monkeypatch, capsys):
    for k, v in {**CREDENTIALS, "S3_ENDPOINT_URL": moto.url}.items():
        monkeypatch.setenv(k, v)
    local = ArtifactStore(tmp_path / "local")
    blobs = [os.urandom(1000 + i) for i in range(3)]
    digests = {local.put_bytes(b)[0] for b in blobs}
    assert migrate_main([str(tmp_path / "local"), f"s3://{bucket}/moved"]) == 0
    assert "3 copied, 0 already there, 0 failed" in capsys.readouterr().out
    assert migrate_main([str(tmp_path / "local"), f"s3://{bucket}/moved"]) == 0
    assert "0 copied, 3 already there" in capsys.readouterr().out
    assert migrate_main([f"s3://{bucket}/moved", str(tmp_path / "back")]) == 0
    back = ArtifactStore(tmp_path / "back")
    assert set(back.digests()) == digests
    assert migrate_main([f"s3://no-such-bucket-x/p", str(tmp_path / "x")]) == 2


def test_api_upload_and_download_through_s3(moto, bucket, tmp_path, sqlite_template):
    over = dict(data_dir=tmp_path / "d", artifact_root=f"s3://{bucket}/api",
                s3_endpoint_url=moto.url, aws_access_key_id="testing",
                aws_secret_access_key="testing", aws_region="us-east-1")
    from models.onnx_examples import linear_model
    data = linear_model()
    for presign in (False, True):
        fresh_sqlite(sqlite_template, tmp_path / f"d{presign}" / "registry.db")
        app = create_app({**over, "s3_presign_downloads": presign,
                          "data_dir": tmp_path / f"d{presign}"})
        client = app.test_client()
        name = f"m{int(presign)}"
        assert client.post("/api/models/register", json={"name": name}).status_code == 201
        assert client.post(f"/api/models/{name}/versions/register",
                           json={"version": "1.0.0", "provider": "onnx"}).status_code == 201
        r = client.put(f"/api/models/{name}/versions/1.0.0/artifact", data=data,
                       content_type="application/octet-stream")
        assert r.status_code == 201, r.json
        digest = hashlib.sha256(data).hexdigest()
        r = client.get(f"/api/models/{name}/versions/1.0.0/artifact")
        if presign:
            assert r.status_code == 302 and r.headers["Location"].startswith(moto.url)
            assert requests.get(r.headers["Location"], timeout=10).content == data
        else:
            assert r.status_code == 200 and r.data == data and r.headers["ETag"] == f'"{digest}"'
            r.close()   # the streamed file
        r = client.post(f"/api/models/{name}/predict", json={"input": [[1.0, 2.0, 3.0, 4.0]], "version": "1.0.0"})
        assert r.status_code == 200, r.json
        app.extensions[EXTENSION_KEY].close()


def test_api_missing_bucket_is_503_with_the_reason(moto, data_dir):
    app = create_app(dict(data_dir=data_dir, artifact_root="s3://missing-bkt/api",
                          s3_endpoint_url=moto.url, aws_access_key_id="testing",
                          aws_secret_access_key="testing"))
    client = app.test_client()
    client.post("/api/models/register", json={"name": "m"})
    client.post("/api/models/m/versions/register", json={"version": "1.0.0", "provider": "onnx"})
    r = client.put("/api/models/m/versions/1.0.0/artifact", data=b"abc",
                   content_type="application/octet-stream")
    assert r.status_code == 503, r.json
    assert r.json["error"]["code"] == "UNAVAILABLE" and "missing-bkt" in r.json["error"]["message"]
