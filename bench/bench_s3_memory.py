"""Memory of the server while a large artifact goes through S3 (run by hand, issue 20):
``python bench/bench_s3_memory.py [--mb 200]``.

Starts moto's S3 server and a registry server (``python api/app.py``) with
``ARTIFACT_ROOT=s3://…``, uploads an artifact of ``--mb`` MB through the API (streamed from a
file), downloads it (streamed, hashed), and samples the server's RSS every 10 ms. Reports the
growth over the RSS after a small warm-up upload/download. Target: < 50 MB for 200 MB.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import requests  # noqa: E402

from tests.support import LiveServer  # noqa: E402
from tests.moto_s3 import MotoS3  # noqa: E402

MB = 1024 ** 2


class Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)


def transfer(url: str, name: str, version: str, path: Path) -> str:
    http = requests.Session()
    assert http.post(f"{url}/api/models/{name}/versions/register",
                     json={"version": version, "provider": "onnx"}).status_code == 201
    with open(path, "rb") as f:
        r = http.put(f"{url}/api/models/{name}/versions/{version}/artifact", data=f,
                     headers={"Content-Type": "application/octet-stream"}, timeout=600)
    assert r.status_code == 201, r.text
    h = hashlib.sha256()
    with http.get(f"{url}/api/models/{name}/versions/{version}/artifact", stream=True,
                  timeout=600) as r:
        assert r.status_code == 200, r.text
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main(mb: int = 200) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as d, MotoS3(Path(d)) as moto:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        moto.client().create_bucket(Bucket=bucket)
        env = {**moto.server_env(bucket), "DATABASE_URL": "", "MAX_ARTIFACT_BYTES": str(2 ** 31)}
        server = LiveServer(Path(d) / "server", env).start()
        try:
            small, big = Path(d) / "small.bin", Path(d) / "big.bin"
            small.write_bytes(os.urandom(9 * MB))   # above one part: warms the multipart path
            with open(big, "wb") as f:
                for _ in range(mb):
                    f.write(os.urandom(MB))
            requests.post(f"{server.url}/api/models/register", json={"name": "big"})
            transfer(server.url, "big", "0.0.1", small)
            before = psutil.Process(server.proc.pid).memory_info().rss
            peak = Peak(server.proc.pid)
            peak.start()
            t0 = time.perf_counter()
            got = transfer(server.url, "big", "1.0.0", big)
            elapsed = time.perf_counter() - t0
            peak.stop.set()
            peak.join()
            with open(big, "rb") as f:
                assert got == hashlib.file_digest(f, "sha256").hexdigest()
        finally:
            server.stop()
    growth = (peak.peak - before) / MB
    rows = [(f"S3 upload+download of {mb} MB: server RSS growth",
             f"{growth:.1f} MB (RSS {before / MB:.0f} → peak {peak.peak / MB:.0f} MB, "
             f"{elapsed:.1f} s)", "< 50 MB")]
    for row in rows:
        print(" | ".join(row))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    main(parser.parse_args().mb)
