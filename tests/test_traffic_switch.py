"""The one way traffic moves (``deployment/traffic_switch.py``), on SQLite and PostgreSQL: its
effects commit together or not at all, the process-local ones only after the commit, and no
other module writes the traffic table, the ``rolled_back`` marks or the rollback records."""
from __future__ import annotations

import ast

import pytest

from deployment.deployment_store import DeploymentStore
from deployment.traffic_store import TrafficStore
from deployment.traffic_switch import TrafficSwitch
from storage.database import Database
from storage.schema import utcnow
from tests.support import ROOT, project_files

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane

SWITCH_ONLY = {"set", "mark_rolled_back", "insert_rollback"}


class SpyRouter:
    def __init__(self) -> None:
        self.invalidated: list[str] = []

    def invalidate(self, model: str | None = None) -> None:
        self.invalidated.append(model)


class SpyLoader:
    def __init__(self) -> None:
        self.retained: list[tuple[str, set[str]]] = []

    def retain(self, model: str, keep) -> list[str]:
        self.retained.append((model, set(keep)))
        return []


@pytest.fixture
def parts(database: Database):
    router, loader = SpyRouter(), SpyLoader()
    return TrafficSwitch(database, router=router, loader=loader), router, loader


def test_a_switch_commits_table_and_rollback_record_then_tells_router_and_loader(parts, database):
    switch, router, loader = parts
    with switch.transaction() as tx:
        tx.switch("m", {"1.0.0": 100}, "1.0.0", actor="t", reason="first", now=utcnow())
        assert router.invalidated == []                 # nothing before the commit
    with switch.transaction() as tx:
        record = tx.switch("m", {"1.1.0": 100}, "1.1.0", actor="t", reason="back", now=utcnow(),
                           roll_back=True, release=True, keep={"1.0.0"},
                           rollback=dict(from_version="1.0.0", to_version="1.1.0",
                                         trigger="manual", evidence={"why": "test"}))
    assert router.invalidated == ["m", "m"]
    assert loader.retained == [("m", {"1.0.0", "1.1.0"})]
    assert TrafficStore(database).get("m").weights == {"1.1.0": 100}
    [stored], _ = DeploymentStore(database).list_rollbacks("m")
    assert stored.id == record.id and stored.evidence == {"why": "test"}


def test_a_failed_transaction_changes_nothing_and_tells_nobody(parts, database):
    switch, router, loader = parts
    with pytest.raises(RuntimeError):
        with switch.transaction() as tx:
            tx.switch("m", {"1.0.0": 100}, "1.0.0", actor="t", reason="x", now=utcnow(),
                      release=True)
            raise RuntimeError("the caller's own write failed")
    assert TrafficStore(database).get("m") is None
    assert router.invalidated == [] and loader.retained == []


def test_no_other_module_writes_traffic_or_rollback_records():
    """TrafficStore.set, DeploymentStore.mark_rolled_back and insert_rollback are called only
    by the switch (benchmarks seeding data and tests excepted)."""
    offenders = []
    for path in project_files():   # the application's modules (never a virtualenv inside)
        rel = path.relative_to(ROOT)
        if rel.as_posix() == "deployment/traffic_switch.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in SWITCH_ONLY and "traffic" in ast.unparse(node.func.value) \
                    or isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("mark_rolled_back", "insert_rollback"):
                offenders.append(f"{rel}:{node.lineno} {ast.unparse(node.func)}")
    assert offenders == []
