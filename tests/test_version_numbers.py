"""MLflow numbers in the registry itself (issue 17), on SQLite and PostgreSQL: one integer
sequence per model, never reused, kept when given; renames, one-tag edits, version deletes."""
from __future__ import annotations

import pytest

from errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from registry.model_registry import ModelRegistry
from storage.database import Database

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane


@pytest.fixture
def registry(database: Database) -> ModelRegistry:
    reg = ModelRegistry(database)
    reg.register_model("m")
    return reg


def test_numbers_follow_registration_and_are_never_reused(registry: ModelRegistry) -> None:
    for v in ("2.0.0", "1.0.0", "1.1.0"):
        registry.register_version("m", v, provider="onnx")
    assert {v["version"]: v["number"] for v in registry.iter_versions("m")} == \
        {"2.0.0": 1, "1.0.0": 2, "1.1.0": 3}
    registry.delete_version("m", "1.1.0")
    assert registry.register_version("m", "3.0.0", provider="onnx")["number"] == 4
    assert registry.version_by_key("m", registry.resolve_number("m", 2))["version"] == "1.0.0"
    with pytest.raises(NotFound):
        registry.resolve_number("m", 3)
    assert registry.newest_number("m").text == "3.0.0"
    assert registry.next_patch("m") == "3.0.1"


def test_an_explicit_number_is_kept_and_later_ones_count_on(registry: ModelRegistry) -> None:
    assert registry.register_version("m", "1.0.0", provider="onnx", number=7)["number"] == 7
    assert registry.register_version("m", "1.0.1", provider="onnx")["number"] == 8
    with pytest.raises(AlreadyExists):
        registry.register_version("m", "1.0.2", provider="onnx", number=7)
    with pytest.raises(InvalidArgument):
        registry.register_version("m", "1.0.3", provider="onnx", number=0)


def test_next_patch_rules(registry: ModelRegistry) -> None:
    assert registry.next_patch("m") == "1.0.0"
    registry.register_version("m", "1.3.0-rc.1", provider="onnx")
    assert registry.next_patch("m") == "1.3.0"


def test_rename_tags_and_refusals(registry: ModelRegistry, database: Database) -> None:
    registry.register_version("m", "1.0.0", provider="onnx")
    registry.set_model_tag("m", "team", "risk")
    registry.set_version_tag("m", "1.0.0", "q", "gold")
    registry.rename_model("m", "n")
    assert registry.get_model("n")["tags"] == {"team": "risk"}
    registry.delete_model_tag("n", "team")
    registry.delete_version_tag("n", "1.0.0", "q")
    assert registry.get_version("n", "1.0.0")["tags"] == {}
    with pytest.raises(NotFound):
        registry.delete_model_tag("n", "team")
    registry.register_model("o")
    with pytest.raises(AlreadyExists):
        registry.rename_model("o", "n")
    from deployment.traffic_store import TrafficStore
    with database.transaction() as conn:
        TrafficStore(database).set(conn, "n", {"1.0.0": 100}, stable_version="1.0.0",
                                   actor="test", reason="deployed")
    with pytest.raises(FailedPrecondition):
        registry.delete_version("n", "1.0.0")
    with pytest.raises(FailedPrecondition):
        registry.rename_model("n", "p")
