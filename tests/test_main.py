"""``python main.py``: every demonstration runs on a fresh machine with no key and no network."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # runs main.py in a child process

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "DATABASE_URL")}
    return subprocess.run([sys.executable, "main.py", *args, "--data-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_every_section_runs_and_prints_real_results(tmp_path):
    result = run(tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "resolve 'latest'       -> 1.1.0" in out
    assert "90%" in out and "50%" in out and "[succeeded" in out       # the canary moved
    assert "0 failed" in out                                             # no request failed
    assert "automatic rollback 2.0.0 -> 1.0.0" in out
    assert "rollback again -> FAILED_PRECONDITION" in out
    assert "trigger snapshot" in out and "p95" in out
    assert "skipped: GEMINI_API_KEY is not set" in out
    assert "canary 1.1.0 with max_cost_ratio 2 -> aborted" in out and "cost_ratio" in out
    assert "$ per 1k requests" in out and "team-b over its daily budget -> " in out
    assert "all 10 sections done" in out


def test_help_lists_sections_and_one_section_runs_alone(tmp_path):
    assert "autorollback" in subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT,
                                            capture_output=True, text=True).stdout
    result = run("rollback", tmp_path=tmp_path)
    assert result.returncode == 0 and "all 1 sections done" in result.stdout
