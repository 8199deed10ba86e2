"""Spend and budgets across two real server processes sharing one SQLite file (issue 16)."""
from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import LiveServer
from tests.fake_gemini import FakeGemini

FLASH = "gemini-2.5-flash"


@pytest.mark.slow
def test_spend_sums_and_budgets_across_two_server_processes(tmp_path):
    with FakeGemini() as fake:
        fake.set_usage(FLASH, prompt=1000, candidates=200)       # 800 µUSD per call
        env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
               "GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": "test-key",
               "NO_PROXY": "127.0.0.1,localhost", "REGISTRY_ADMIN_TOKEN": "root"}
        servers = [LiveServer(tmp_path / name, env).start() for name in ("a", "b")]
        admin = {"Authorization": "Bearer root"}
        try:
            a, b = servers
            token = requests.post(a.url + "/api/keys", json={"name": "alice", "role": "read"},
                                  headers=admin, timeout=10).json()["token"]
            requests.post(a.url + "/api/models/register", json={"name": "chat"},
                          headers=admin, timeout=10)
            r = requests.post(a.url + "/api/models/chat/versions/register", headers=admin,
                              json={"version": "1.0.0", "status": "stable",
                                    "config": {"model": FLASH}}, timeout=10)
            assert r.status_code == 201, r.text
            costs = []
            for i in range(20):
                server = servers[i % 2]
                who = {"Authorization": f"Bearer {token}"} if i % 4 < 2 else admin
                r = requests.post(server.url + "/api/models/chat/predict",
                                  json={"input": "hi"}, headers=who, timeout=10)
                assert r.status_code == 200, r.text
                costs.append(r.json()["usage"]["cost_micro_usd"])
            assert costs == [800] * 20
            expected = {"alice": 8000, "admin-token": 8000}
            deadline = time.monotonic() + 15
            while True:   # each server flushes its own predictions within a second
                answers = [requests.get(s.url + "/api/spend?group_by=key", headers=admin,
                                        timeout=10).json()["spend"] for s in servers]
                got = [{row["key"]: row["cost_micro_usd"] for row in ans["rows"]}
                       for ans in answers]
                if got == [expected, expected] or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert got == [expected, expected]
            assert [ans["total"]["cost_micro_usd"] for ans in answers] == [16000, 16000]
            # A hard budget set through one server holds on the other within ~1 s.
            r = requests.put(a.url + "/api/budgets/key/alice", headers=admin,
                             json={"period": "month", "hard_limit_usd": 0.008}, timeout=10)
            assert r.status_code == 200 and r.json()["budget"]["spent_micro_usd"] == 8000
            time.sleep(1.5)
            r = requests.post(b.url + "/api/models/chat/predict", json={"input": "hi"},
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["details"]["spent_micro_usd"] == 8000
            r = requests.post(b.url + "/api/models/chat/predict", json={"input": "hi"},
                              headers=admin, timeout=10)
            assert r.status_code == 200
        finally:
            for server in servers:
                server.stop()
