"""Stores return frozen records (README, "What stores return"; issue 13).

Checked on every public method of every ``*Store`` class of every ``*_store.py`` module, from
its resolved type hints (``typing.get_type_hints``, so an alias or a string annotation cannot
hide a dict):

1. the method declares what it returns (an unannotated method would escape rules 2 and 3);
2. the return type holds no row-shaped dict: no bare ``dict``/``Mapping``, no ``dict`` or
   ``Mapping`` with ``Any`` (or ``object``) anywhere inside it, no ``Any`` as the whole type
   or as the item of a ``list``/``tuple``, and no SQLAlchemy type (a ``Row`` is a row too). A
   lookup of records or plain values (``dict[str, TrafficTable]``, ``dict[str, int]``) is
   fine: it is a collection, not a row;
3. every project class it names is a frozen dataclass from its package's ``records`` module
   (``NOT_DATACLASSES`` lists the exceptions, each with its reason).

"""
from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from deployment.records import Deployment
from tests.support import ROOT
from tracking.aggregates import Aggregate

# Public methods whose dicts are not rows, with the reason.
NOT_ROWS = {
    "storage.bundle_store.BundleStore.dump":
        "every table's rows, generic over storage.schema: the export bundle's own JSON shape "
        "(registry/bundle.py writes it as is), not a kind of row a caller reads fields of",
}

# Project classes a store may return that are not frozen dataclasses in a records module,
# with the reason.
NOT_DATACLASSES = {
    "tracking.records.BucketRow":
        "a NamedTuple: built once per stored metric bucket on the metrics read path, where a "
        "frozen dataclass costs ~4.5x as much to build; just as typed and immutable",
    "registry.metadata_store.VersionKey":
        "not a row but a key, (precedence, version), that callers pass back to the store",
}

PROJECT = {"config", "errors", "defaults", "wiring", "shared", "storage", "webhooks", "registry",
           "tracking", "models", "deployment", "rollback", "api"}
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterator,
              collections.abc.Iterable)


def store_modules() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*_store.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in PROJECT:
            found.append(".".join(rel.with_suffix("").parts))
    return found


def store_classes(module: str) -> list[type]:
    mod = importlib.import_module(module)
    return [cls for name, cls in vars(mod).items()
            if inspect.isclass(cls) and cls.__module__ == module and name.endswith("Store")]


def _mentions(tp: Any, targets: tuple[Any, ...]) -> bool:
    return tp in targets or any(_mentions(arg, targets) for arg in typing.get_args(tp))


def type_problems(tp: Any) -> list[str]:
    """What in the return type ``tp`` breaks rule 2 or 3 (empty: it is fine)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return ["an untyped value (Any)"]
    if tp in _MAPPINGS or tp is typing.Dict:
        return ["a bare dict"]
    if origin in _MAPPINGS:
        if _mentions(tp, (Any, object)):
            return [f"a row-shaped dict ({_name(tp)})"]
        return [p for arg in args for p in type_problems(arg)]
    if origin in _SEQUENCES and any(arg is Any or arg is object for arg in args):
        return [f"untyped items ({_name(tp)})"]
    if origin is not None or isinstance(tp, types.UnionType):
        return [p for arg in args if arg is not Ellipsis for p in type_problems(arg)]
    if not inspect.isclass(tp):
        return []
    module = tp.__module__
    if module.split(".")[0] == "sqlalchemy":
        return [f"a SQLAlchemy type ({tp.__name__})"]
    if module.split(".")[0] not in PROJECT:
        return []
    qualified = f"{module}.{tp.__qualname__}"
    if qualified in NOT_DATACLASSES:
        return []
    if not module.endswith(".records"):
        return [f"{qualified}, defined outside a records module"]
    if not (dataclasses.is_dataclass(tp) and tp.__dataclass_params__.frozen):
        return [f"{qualified}, not a frozen dataclass"]
    return []


def _name(tp: Any) -> str:
    return str(tp).replace("typing.", "")


def method_problems(cls: type) -> list[str]:
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if not inspect.isfunction(func):
            continue
        where = f"{cls.__module__}.{cls.__qualname__}.{name}"
        if where in NOT_ROWS:
            continue
        hints = typing.get_type_hints(func)
        if "return" not in hints:
            out.append(f"{where}: no return annotation")
            continue
        out += [f"{where} returns {p}" for p in type_problems(hints["return"])]
    return out


def module_problems(module: str) -> list[str]:
    return [p for cls in store_classes(module) for p in method_problems(cls)]


def test_the_stores_were_found():
    modules = store_modules()
    for expected in ("registry.metadata_store", "deployment.deployment_store",
                     "deployment.traffic_store", "rollback.snapshot_store", "storage.key_store",
                     "tracking.metrics_store", "tracking.ops_store"):
        assert expected in modules
    assert all(store_classes(m) for m in modules), "a *_store.py module without a *Store class"
    for dotted in [*NOT_ROWS, *NOT_DATACLASSES]:   # every exception still names something
        assert _resolve(dotted) is not None, dotted


def _resolve(dotted: str) -> Any:
    """The object a dotted name names (module, then attributes), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


@pytest.mark.parametrize("module", store_modules())
def test_stores_return_frozen_records(module: str):
    assert module_problems(module) == []


def test_the_readme_example_runs_as_written():
    """The README's example of a store's record against the public API's dict (the isolated
    environment of conftest gives it a fresh data directory)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**What stores return: frozen records.**"):]
    code = section[section.index("```python\n") + 10:section.index("```", section.index(
        "```python\n") + 10)]
    scope: dict[str, Any] = {}
    try:
        exec(compile(code, "README.md", "exec"), scope)   # noqa: S102 - our own README
        assert isinstance(scope["record"].created_at, datetime)
    finally:
        if "svc" in scope:
            scope["svc"].close()


@dataclasses.dataclass
class Mutable:
    x: int


class PlantedStore:
    """One method per rule (and some that pass), for the test of the check itself."""

    def row(self) -> dict[str, Any]: ...
    def rows(self) -> tuple[list[dict[str, Any]], str | None]: ...
    def bare(self) -> dict: ...
    def maybe(self) -> Any | None: ...
    def items(self) -> list[Any]: ...
    def untyped(self): ...
    def elsewhere(self) -> Aggregate: ...
    def mutable(self) -> Mutable: ...
    def fine(self) -> tuple[list[Deployment], str | None]: ...
    def lookup(self) -> dict[str, Deployment]: ...
    def counts(self) -> dict[tuple[str, str], int]: ...
    def _private(self) -> dict[str, Any]: ...


def test_the_check_catches_what_it_should(monkeypatch):
    """Each rule, planted."""
    def flagged() -> set[str]:
        return {p.split(" ")[0].rsplit(".", 1)[-1].rstrip(":")
                for p in method_problems(PlantedStore)}

    assert flagged() == {"row", "rows", "bare", "maybe", "items", "untyped", "elsewhere"}
    monkeypatch.setattr(Mutable, "__module__", "deployment.records")  # as if a record
    assert flagged() == {"row", "rows", "bare", "maybe", "items", "untyped", "elsewhere",
                         "mutable"}
    assert any("Mutable, not a frozen dataclass" in p for p in method_problems(PlantedStore))
