"""The README's Python API example runs as written (against the fake Gemini server, since its
versions are Gemini versions and deployments health-check them)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # runs the README examples in a child process

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs_as_written(tmp_path, gemini):
    code = readme_block("## Python API") + (
        "\nassert vm.increment_version('1.0.0', 'minor') == '1.1.0'"
        "\nassert tracker.get_metrics('sentiment-analyzer', '1.0.0')['avg_latency'] == 0.234"
        "\nprint('README example ran')")
    env = {**os.environ, "REGISTRY_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "README example ran" in result.stdout


def test_cost_python_example_runs_as_written(tmp_path, gemini):
    code = readme_block("### Cost: prices, spend, budgets") + (
        "\nassert tracker.get_metrics('support-bot', '1.0.0')['cost_micro_usd'] == 650 + "
        "answer['usage']['cost_micro_usd']"
        "\nassert tracker.get_metrics('support-bot', '1.1.0')['cost_micro_usd'] == 300"
        "\nassert answer['usage']['cost_micro_usd'] is not None"
        "\nrows = svc.spend.report('key', model='support-bot')['rows']"
        "\nassert {r['key']: r['cost_micro_usd'] for r in rows}['team-a'] == 650 + "
        "answer['usage']['cost_micro_usd']"
        "\nprint('README cost example ran')")
    env = {**os.environ, "REGISTRY_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "README cost example ran" in result.stdout
