"""End to end with ARTIFACT_ROOT=s3://… on moto's S3 server (issue 20): the seed flow
(``python main.py``), and two server processes sharing one bucket and one PostgreSQL database
through a canary rollout under load."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import LATENCY_TOLERANT, PG_URL, ROOT
from tests.moto_s3 import MotoS3
from tests.test_rollout_e2e import CLEAN_ENV, X, Api, Load, failed, serve

pytestmark = pytest.mark.slow


# ``moto`` (one S3 server per session) and ``bucket`` (a fresh one per test): conftest.py


def stored(moto: MotoS3, bucket: str) -> list[str]:
    listed = moto.client().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_seed_flow_runs_with_artifacts_in_s3(moto, bucket, tmp_path: Path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "DATABASE_URL")}
    env.update(moto.server_env(bucket, "seed"))
    result = subprocess.run([sys.executable, "main.py", "--data-dir", str(tmp_path)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"all \d+ sections done", result.stdout) and "0 failed" in result.stdout
    keys = stored(moto, bucket)
    assert keys and all(k.startswith("seed/sha256/") for k in keys), keys
    assert not (tmp_path / "artifacts").exists()   # nothing went to the local store


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set")
def test_two_servers_share_one_bucket_and_one_database_through_a_canary(
        moto, bucket, tmp_path: Path, pg_schema_url: str):
    env = {**moto.server_env(bucket), "DATABASE_URL": pg_schema_url}
    a = serve(tmp_path / "a", {**CLEAN_ENV, **env})
    b = serve(tmp_path / "b", {**CLEAN_ENV, **env})
    try:
        api_a, api_b = Api(a.url), Api(b.url)
        api_a.onnx_model("m", ["1.0.0", "1.1.0"])      # uploaded through A only
        api_a.wait_state(api_a.deploy("m", "1.0.0"), "succeeded")
        first = api_b.post("/api/models/m/predict", {"input": X})   # B loads from the bucket
        assert first["version"] == "1.0.0"
        loads = [Load(s.url, "m", X, threads=2).start() for s in (a, b)]
        try:
            canary = api_a.deploy("m", "1.1.0", "canary",
                                  analysis={"min_requests": 20, "interval_s": 2,
                                            "deadline_s": 40, **LATENCY_TOLERANT})
            done = api_b.wait_state(canary, "succeeded", 60)   # B sees A's rollout
        finally:
            answers = [x for load in loads for x in load.stop()]
        assert not failed(answers), failed(answers)[:3]
        assert {x.version for x in answers} == {"1.0.0", "1.1.0"}
        assert done["state"] == "succeeded"
        assert list((tmp_path / "b" / "artifact-cache" / "sha256").glob("*/*"))
        assert not (tmp_path / "a" / "artifacts").exists()
        assert len(stored(moto, bucket)) == 1   # both versions have the same bytes: dedupe
    finally:
        a.stop()
        b.stop()
