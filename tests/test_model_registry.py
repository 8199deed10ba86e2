"""registry.model_registry on SQLite and PostgreSQL."""
from __future__ import annotations

import gc
import weakref

import pytest

from errors import AlreadyExists, InvalidArgument, NotFound
from registry.model_registry import ModelRegistry
from storage.database import Database

pytestmark = pytest.mark.storage   # the PostgreSQL cases stay in the fast lane


@pytest.fixture
def registry(database):
    return ModelRegistry(database)


def test_register_and_get_model(registry):
    m = registry.register_model("sentiment", "Sentiment model", {"team": "nlp"}, {"owner": "a"})
    assert m["name"] == "sentiment" and m["tags"] == {"team": "nlp"}
    assert m["metadata"] == {"owner": "a"} and m["created_at"].endswith("Z")
    assert registry.get_model("sentiment") == m


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "../etc", "x" * 129, None, 5, "é"])
def test_bad_model_names_are_refused(registry, name):
    with pytest.raises(InvalidArgument):
        registry.register_model(name)


def test_duplicate_model_is_already_exists(registry):
    registry.register_model("m")
    with pytest.raises(AlreadyExists, match="already exists"):
        registry.register_model("m")


def test_unknown_model(registry):
    with pytest.raises(NotFound, match="model 'nope' does not exist"):
        registry.get_model("nope")
    with pytest.raises(NotFound):
        registry.register_version("nope", "1.0.0")


def test_list_models_filters_and_pages(registry):
    for i in range(7):
        registry.register_model(f"model-{i}", tags={"team": "a" if i % 2 else "b"})
    registry.register_model("other")
    page, token = registry.list_models(q="MODEL", limit=3)
    assert [m["name"] for m in page] == ["model-0", "model-1", "model-2"] and token
    page2, token2 = registry.list_models(q="model", limit=3, page_token=token)
    assert [m["name"] for m in page2] == ["model-3", "model-4", "model-5"]
    page3, token3 = registry.list_models(q="model", limit=3, page_token=token2)
    assert [m["name"] for m in page3] == ["model-6"] and token3 is None
    tagged, _ = registry.list_models(tag="team:a")
    assert [m["name"] for m in tagged] == ["model-1", "model-3", "model-5"]
    with pytest.raises(InvalidArgument):
        registry.list_models(tag="nocolon")
    with pytest.raises(InvalidArgument):
        registry.list_models(page_token="garbage!!")


def test_like_metacharacters_are_literal(registry):
    registry.register_model("a_b")
    registry.register_model("axb")
    assert [m["name"] for m in registry.list_models(q="a_b")[0]] == ["a_b"]


def test_versions_sorted_by_precedence_and_paged(registry):
    registry.register_model("m")
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1", "10.0.0"]
    for v in reversed(order[::2] + order[1::2]):
        registry.register_version("m", v)
    seen, token = [], None
    while True:
        page, token = registry.list_versions_page("m", limit=5, page_token=token)
        seen += [v["version"] for v in page]
        if token is None:
            break
    assert seen == list(reversed(order))


def test_version_fields_and_defaults(registry):
    registry.register_model("m")
    v = registry.register_version("m", "1.2.3-rc.1+build.5", config={"model": "gemini-2.5-flash"})
    assert (v["major"], v["minor"], v["patch"]) == (1, 2, 3)
    assert v["prerelease"] == "rc.1" and v["build"] == "build.5"
    assert v["status"] == "experimental" and v["provider"] == "gemini"
    assert v["artifact"] is None and v["aliases"] == []


@pytest.mark.parametrize("bad", ["1.0", "01.0.0", "v1.0.0", "1.0.0-", "", "latest"])
def test_bad_versions_are_refused_with_the_valid_form(registry, bad):
    registry.register_model("m")
    with pytest.raises(InvalidArgument, match="1.0.0"):
        registry.register_version("m", bad)


def test_build_metadata_only_difference_is_a_duplicate(registry):
    registry.register_model("m")
    registry.register_version("m", "1.0.0+a")
    with pytest.raises(AlreadyExists):
        registry.register_version("m", "1.0.0+b")


def test_status_filter_and_range(registry):
    registry.register_model("m")
    for v, s in [("1.0.0", "stable"), ("1.2.0", "beta"), ("1.9.9", "stable"), ("2.0.0", "stable")]:
        registry.register_version("m", v, status=s)
    assert [v["version"] for v in registry.list_versions_page("m", status="stable")[0]] == [
        "2.0.0", "1.9.9", "1.0.0"]
    assert [v["version"] for v in registry.list_versions_page("m", range="^1.2")[0]] == [
        "1.9.9", "1.2.0"]
    page, token = registry.list_versions_page("m", range=">=1.0.0", limit=2)
    assert [v["version"] for v in page] == ["2.0.0", "1.9.9"]
    assert [v["version"] for v in registry.list_versions_page("m", range=">=1.0.0", limit=2,
                                                         page_token=token)[0]] == [
        "1.2.0", "1.0.0"]
    with pytest.raises(InvalidArgument):
        registry.list_versions_page("m", status="bogus")
    with pytest.raises(InvalidArgument):
        registry.list_versions_page("m", range="^^nonsense")


def test_resolve_latest_alias_and_range(registry):
    registry.register_model("m")
    registry.register_version("m", "1.0.0", status="stable")
    registry.register_version("m", "1.5.0", status="stable")
    registry.register_version("m", "2.0.0-rc.1")
    registry.register_version("m", "1.6.0", status="archived")
    assert registry.get_version("m", "latest")["version"] == "1.5.0"
    assert registry.get_version("m", "^1.0")["version"] == "1.5.0"
    assert registry.get_version("m", "1.0.0")["version"] == "1.0.0"
    registry.set_alias("m", "production", "1.0.0")
    assert registry.get_version("m", "production")["aliases"] == ["production"]
    registry.set_alias("m", "production", "1.5.0")
    assert registry.get_version("m", "production")["version"] == "1.5.0"
    registry.delete_alias("m", "production")
    with pytest.raises(NotFound):
        registry.get_version("m", "production")
    with pytest.raises(NotFound):
        registry.delete_alias("m", "production")
    with pytest.raises(InvalidArgument):
        registry.set_alias("m", "1.0.0", "1.0.0")
    with pytest.raises(NotFound):
        registry.get_version("m", "3.0.0")


def test_version_content_is_immutable_but_status_editable(registry):
    registry.register_model("m")
    registry.register_version("m", "1.0.0", provider="onnx", config={"a": 1})
    v = registry.update_version("m", "1.0.0", status="stable", description="ok",
                                tags={"k": "v"})
    assert v["status"] == "stable" and v["description"] == "ok" and v["tags"] == {"k": "v"}
    assert v["config"] == {"a": 1} and v["provider"] == "onnx"
    with pytest.raises(TypeError):
        registry.update_version("m", "1.0.0", config={"a": 2})  # not an editable field
    with pytest.raises(InvalidArgument):
        registry.update_version("m", "1.0.0", status="gone")


def test_artifact_attaches_once(registry):
    registry.register_model("m")
    registry.register_version("m", "1.0.0")
    digest = "a" * 64
    assert registry.attach_artifact("m", "1.0.0", digest, 10)["artifact"] == {
        "digest": digest, "size": 10}
    registry.attach_artifact("m", "1.0.0", digest, 10)  # same bytes: no-op
    with pytest.raises(AlreadyExists, match="immutable"):
        registry.attach_artifact("m", "1.0.0", "b" * 64, 10)


def test_update_and_delete_model(registry):
    registry.register_model("m", tags={"a": "1"})
    m = registry.update_model("m", description="new", tags={"b": "2"})
    assert m["description"] == "new" and m["tags"] == {"b": "2"}
    registry.register_version("m", "1.0.0")
    registry.delete_model("m")
    with pytest.raises(NotFound):
        registry.get_model("m")
    registry.register_model("m")  # the name is free again, without old versions
    assert registry.list_versions_page("m")[0] == []


def test_seed_usage_runs_as_written(monkeypatch, tmp_path):
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path / "seed"))
    registry = ModelRegistry()
    registry.register_model("sentiment-analyzer", "Analyzes sentiment")
    registry.register_version("sentiment-analyzer", "1.0.0", "stable")
    registry.register_version("sentiment-analyzer", "1.1.0", "beta")
    assert [v["version"] for v in registry.list_versions_page("sentiment-analyzer")[0]] == [
        "1.1.0", "1.0.0"]
    assert (tmp_path / "seed" / "registry.db").exists()


def test_highest_stable_for_many_models_in_one_call(registry):
    registry.register_model("a")
    registry.register_model("b")
    registry.register_model("c")
    for v, status in [("1.0.0", "stable"), ("1.10.0", "stable"), ("2.0.0", "beta"),
                      ("1.9.0", "stable")]:
        registry.register_version("a", v, status=status)
    registry.register_version("b", "0.1.0", status="experimental")
    assert registry.highest_stable(["a", "b", "c", "ghost"]) == {"a": "1.10.0"}
    assert registry.highest_stable([]) == {}


def test_a_disposed_database_is_freed_with_its_registry(tmp_path):
    """The registry's read cache, shared per Database, must not keep its Database (engine,
    pool, compiled statements) alive once nothing else refers to it."""
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    registry = ModelRegistry(db)
    registry.register_model("m")
    registry.get_model("m")                      # through the read cache
    gone = weakref.ref(db)
    db.dispose()
    del db, registry
    gc.collect()
    assert gone() is None
