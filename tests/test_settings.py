"""Settings: one typed object read once, clear errors, and documentation that cannot drift."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

import config
import wiring
from config import Settings, env_names, get_settings, reset_settings
from errors import ConfigurationError
from registry.model_registry import ModelRegistry
from tests.support import ROOT


def _primary_names() -> set[str]:
    return {f.metadata["env"] for f in dataclasses.fields(Settings)}


def _readme_table_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Configuration\n"):]
    section = section[:section.index("\n## ", 1)]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def _env_example_names() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {m.group(1) for line in lines if (m := re.match(r"#?\s*([A-Z][A-Z0-9_]+)=", line))}


def test_the_readme_table_lists_exactly_the_settings():
    assert _readme_table_names() == _primary_names()


def test_env_example_lists_exactly_the_settings_and_their_aliases():
    assert _env_example_names() == set(env_names())


def test_every_setting_names_its_variable():
    names = [f.metadata["env"] for f in dataclasses.fields(Settings)]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[A-Z][A-Z0-9_]+", n)
                                                 for n in names)


def test_read_once_until_reset(monkeypatch):
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("PORT", "6001")   # conftest forgets the settings on every setenv
    assert get_settings().port == 6001
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_settings().port = 1  # type: ignore[misc]
    reset_settings()
    assert get_settings() is not first


def test_typed_values(monkeypatch):
    for name, value in {"AUTO_ROLLBACK": "off", "AUTO_ROLLBACK_MAX_P95_S": "0.75",
                        "WEB_CONCURRENCY": "3", "GOOGLE_API_KEY": "k",
                        "METRICS_RETENTION_DAYS": "7.5"}.items():
        monkeypatch.setenv(name, value)
    s = get_settings()
    assert (s.auto_rollback, s.auto_rollback_max_p95_s, s.web_concurrency, s.gemini_api_key,
            s.metrics_retention_days) == (False, 0.75, 3, "k", 7.5)
    assert s.database_url.endswith("registry.db") and s.artifact_root.name == "artifacts"


@pytest.mark.parametrize("name, value, says", [
    ("PORT", "x", "PORT='x' is not a whole number; set it to e.g. 5000"),
    ("GUNICORN_THREADS", "0", "GUNICORN_THREADS='0' is not a positive whole number"),
    ("METRICS_RETENTION_DAYS", "-1", "METRICS_RETENTION_DAYS='-1' is not a positive number"),
    ("PROVIDER_TIMEOUT_S", "inf", "PROVIDER_TIMEOUT_S='inf' is not a positive number"),
    ("AUTO_ROLLBACK", "maybe", "accepted: on, 1, true, yes, off, 0, false, no"),
])
def test_a_bad_value_is_a_configuration_error_naming_it(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    assert says in info.value.message and info.value.variable == name
    assert not isinstance(info.value, SystemExit)


def test_overrides_and_defaults(tmp_path):
    s = Settings.from_env({"data_dir": tmp_path}, defaults={"auto_rollback_window_s": 10.0})
    assert s.database_url == f"sqlite:///{tmp_path / 'registry.db'}"
    assert s.artifact_root == tmp_path / "artifacts" and s.auto_rollback_window_s == 10.0


def test_a_default_gives_way_to_the_environment(monkeypatch):
    monkeypatch.setenv("AUTO_ROLLBACK_WINDOW_S", "42")
    assert Settings.from_env(defaults={"auto_rollback_window_s": 10.0}).auto_rollback_window_s \
        == 42


def test_seed_constructors_share_the_process_services(monkeypatch, tmp_path):
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "seed"))
    a, b = ModelRegistry(), ModelRegistry()
    root = wiring.process_services()
    assert a.db is b.db is root.database
    assert root.database.url == f"sqlite:///{tmp_path / 'seed' / 'registry.db'}"
    root.close()
    assert wiring.process_services() is not root


def test_a_detached_set_is_left_open_by_the_reset(monkeypatch, tmp_path):
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "kept"))
    kept = wiring.process_services()
    kept.detach()
    assert wiring.process_services() is not kept   # the process builds a set of its own
    wiring.reset_process_services()
    assert not kept.closed   # closed by whoever detached it, not by the reset
    kept.close()
    assert kept.closed


@pytest.mark.slow   # a child process
def test_gunicorn_conf_reports_a_bad_setting_without_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "GUNICORN_THREADS": "many",
           "REGISTRY_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import runpy; runpy.run_path('gunicorn.conf.py')"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "configuration error: GUNICORN_THREADS='many' is not a positive whole number" \
        in out.stderr and "Traceback" not in out.stderr


def test_only_config_reads_the_environment():
    """`os.environ` and `getenv` appear only in config.py (tests and benchmarks aside)."""
    bad = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "bench", ".git") or rel.name == "config.py" \
                or any(p.startswith(".") for p in rel.parts):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.environ|getenv", line):
                bad.append(f"{rel}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)
    assert config.export_prometheus_dir   # the one write, for prometheus-client
