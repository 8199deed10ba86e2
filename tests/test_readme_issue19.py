"""The README's Python examples of issue 19 (statistical canary analysis, shadows,
experiments) run as written, each on a fresh data directory holding fraud-scorer 1.0.0
(stable, deployed), 1.1.0 and 1.2.0 as ONNX versions."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_readme_python import ROOT, readme_block

SETUP = """
from wiring import build_services
from config import Settings
from models.onnx_examples import linear_model
_s = build_services(Settings.from_env())
_s.database.migrate()
_s.registry.register_model("fraud-scorer")
_d, _n = _s.artifacts.put_bytes(linear_model())
for _v, _st in (("1.0.0", "stable"), ("1.1.0", "beta"), ("1.2.0", "beta")):
    _s.registry.register_version("fraud-scorer", _v, _st, provider="onnx")
    _s.registry.attach_artifact("fraud-scorer", _v, _d, _n)
_s.deployments.deploy("fraud-scorer", "1.0.0")
_s.deployments.tick()
_s.close()
"""


@pytest.mark.slow
@pytest.mark.parametrize("heading", ["### Statistical canary analysis",
                                     "### Shadow deployments", "### A/B experiments"])
def test_issue_19_python_examples_run_as_written(tmp_path, heading):
    code = SETUP + readme_block(heading) + "\nprint('example ran')"
    env = {**os.environ, "REGISTRY_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "example ran" in result.stdout
