"""Webhooks against real server processes: a server SIGKILLed mid-delivery delivers after a
restart, and two servers on one PostgreSQL database deliver each event once."""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.support import PG_URL, LiveServer
from tests.webhook_receiver import Receiver

ENV = {"WEBHOOK_ALLOWED_HTTP_HOSTS": "127.0.0.1", "WEBHOOK_ALLOW_PRIVATE": "true",
       "WEBHOOK_TIMEOUT_S": "1", "WEBHOOK_BACKOFF_BASE_S": "0.05",
       "WEBHOOK_BACKOFF_MAX_S": "0.2"}


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def subscribe(server: LiveServer, url: str, events: list[str]) -> str:
    response = requests.post(f"{server.url}/api/webhooks", json={"url": url, "events": events},
                             timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["webhook"]["id"]


def register(server: LiveServer, name: str) -> None:
    response = requests.post(f"{server.url}/api/models/register", json={"name": name},
                             timeout=10)
    assert response.status_code == 201, response.text


def log_of(server: LiveServer, hook: str) -> list[dict]:
    return requests.get(f"{server.url}/api/webhooks/{hook}/deliveries?limit=1000",
                        timeout=10).json()["deliveries"]


@pytest.mark.slow
def test_a_server_killed_mid_delivery_delivers_after_restart(tmp_path: Path):
    release = threading.Event()
    with Receiver() as receiver:
        url = receiver.script("/ci", 200, hang=release)
        server = LiveServer(tmp_path / "data", env=ENV).start()
        try:
            hook = subscribe(server, url, ["model.created"])
            register(server, "m1")
            wait_for(lambda: receiver.at("/ci"), 10, "the first attempt")
            server.kill()                                  # SIGKILL while the receiver holds it
        finally:
            server.stop()
        receiver.script("/ci", 200)                        # answers at once from now on
        release.set()
        restarted = LiveServer(tmp_path / "data", env=ENV).start()
        try:
            [pending] = log_of(restarted, hook)
            assert pending["state"] == "pending" and pending["attempts"] == 0
            done = wait_for(lambda: [d for d in log_of(restarted, hook)
                                     if d["state"] == "succeeded"], 20, "the redelivery")
            got = receiver.at("/ci")
            assert len(got) == 2                           # at least once: the same delivery
            assert got[0].headers["X-MLflow-Delivery-Id"] == got[1].headers[
                "X-MLflow-Delivery-Id"] == done[0]["message_id"]
            assert got[0].body == got[1].body
        finally:
            restarted.stop()


@pytest.mark.slow
@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set")
def test_two_servers_deliver_each_event_once(tmp_path: Path, pg_schema_url: str):
    env = {**ENV, "DATABASE_URL": pg_schema_url}
    with Receiver() as receiver:
        url = receiver.script("/ci", 200)
        servers = [LiveServer(tmp_path / f"s{i}", env=env).start() for i in range(2)]
        try:
            hook = subscribe(servers[0], url, ["model.created"])
            for i in range(30):
                register(servers[i % 2], f"m{i}")
            wait_for(lambda: all(d["state"] == "succeeded" for d in log_of(servers[1], hook))
                     and len(log_of(servers[1], hook)) == 30, 60, "30 deliveries")
            time.sleep(1.0)                                # a duplicate would arrive by now
            ids = Counter(r.headers["X-MLflow-Delivery-Id"] for r in receiver.at("/ci"))
            assert len(ids) == 30 and set(ids.values()) == {1}
            names = sorted(r.json()["data"]["model"] for r in receiver.at("/ci"))
            assert names == sorted(f"m{i}" for i in range(30))
        finally:
            for server in servers:
                server.stop()
