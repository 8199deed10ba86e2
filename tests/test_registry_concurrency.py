"""Threads racing on one model: no lost writes, exactly one winner, no 'database is locked'."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from errors import AlreadyExists
from registry.model_registry import ModelRegistry

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane


def test_32_threads_register_different_versions(database):
    registry = ModelRegistry(database)
    registry.register_model("m")
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: registry.register_version("m", f"1.{i}.0"), range(32)))
    assert len(results) == 32
    versions, _ = registry.list_versions_page("m", limit=100)
    assert len(versions) == 32
    assert versions[0]["version"] == "1.31.0" and versions[-1]["version"] == "1.0.0"


def test_16_threads_register_the_same_version(database):
    registry = ModelRegistry(database)
    registry.register_model("m")

    def attempt(_: int) -> str:
        try:
            registry.register_version("m", "2.0.0")
            return "ok"
        except AlreadyExists:
            return "exists"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    assert outcomes.count("ok") == 1 and outcomes.count("exists") == 15


@pytest.mark.slow   # a real server process
def test_same_version_over_http_gives_one_201_and_clean_409s(live_server):
    url = live_server.url
    assert requests.post(f"{url}/api/models/register", json={"name": "m"}).status_code == 201

    def attempt(_: int) -> requests.Response:
        return requests.post(f"{url}/api/models/m/versions/register", json={"version": "1.0.0"},
                             timeout=30)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(attempt, range(16)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 15
    assert all(r.json()["error"]["code"] == "ALREADY_EXISTS" for r in responses
               if r.status_code == 409)
