"""moto's standalone server: a separate process speaking the S3 protocol over HTTP (issue 20).

Tests reach it as a user reaches MinIO or R2: ``ARTIFACT_ROOT=s3://bucket/prefix`` plus
``S3_ENDPOINT_URL``; no boto call is patched in-process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3

from tests.support import free_port, stop_process, wait_ready

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}


class MotoS3:
    """``python -m moto.server`` on a free loopback port; ``env`` adds to its environment
    (``INITIAL_NO_AUTH_ACTION_COUNT=0`` makes it enforce IAM)."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **CREDENTIALS, **(env or {})}
        self.log_path = Path(log_dir) / f"moto-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "MotoS3":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(self.url + "/moto-api/", self.proc, 30, what="moto",
                   log=lambda: self.log_path.read_text(errors="replace"), ready=lambda r: True)
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.proc)

    def client(self, **credentials):
        kw = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", **credentials}
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **kw)

    def server_env(self, bucket: str, prefix: str = "artifacts") -> dict[str, str]:
        """What a registry server needs to keep its artifacts in ``bucket`` on this moto."""
        return {**CREDENTIALS, "S3_ENDPOINT_URL": self.url,
                "ARTIFACT_ROOT": f"s3://{bucket}/{prefix}", "NO_PROXY": "127.0.0.1,localhost"}
