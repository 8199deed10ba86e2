"""The import graph keeps the layering of DESIGN §2, read from the source (no import runs).

api → (wiring) → rollback → deployment → {tracking, models} → registry → storage, with
``config``, ``errors``, ``defaults`` and ``shared/`` below everything; ``main.py`` sits on the
composition root, never on ``api/``. Each rule fails with the offending file and line.
"""
from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT, project_files

# Rank of each layer: an import may only point to a lower rank (or its own layer).
RANKS = {"config": 0, "errors": 0, "defaults": 0, "shared": 0,
         "storage": 1, "webhooks": 1, "registry": 2, "tracking": 3, "models": 3, "deployment": 4,
         "rollback": 5, "wiring": 6, "api": 7, "main": 8, "gunicorn.conf": 8}
SIBLINGS = {frozenset({"tracking", "models"})}
BELOW_API_NO = ("flask", "werkzeug", "spectree", "click")
SQL_NAMES = {"text", "select", "insert", "update", "delete", "exists", "union", "union_all"}
RAW_SQL = re.compile(r"^\s*(SELECT\b.+\bFROM\b|SELECT\s+\d|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|"
                     r"DELETE\s+FROM\b|(CREATE|DROP|ALTER)\s+(TABLE|INDEX|SCHEMA|VIEW)\b|"
                     r"PRAGMA\s+\w+|BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?\s*$)", re.I | re.S)
# The one late-bound lookup: the seed's no-argument constructors find the composition root.
DYNAMIC_IMPORT_ALLOWED = {"defaults"}


@dataclass(frozen=True)
class Import:
    source: str      # importing module, dotted
    target: str      # imported module (or module.name), dotted
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str | None:
    if module == "gunicorn.conf":
        return module
    head = module.split(".")[0]
    return head if head in RANKS else None


def _imports(path: Path, tree: ast.AST) -> list[Import]:
    source = _module_name(path)
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(source, a.name, child.lineno, in_function)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append(Import(source, child.module, child.lineno, in_function))
                found.extend(Import(source, f"{child.module}.{a.name}", child.lineno,
                                    in_function) for a in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines under ``if TYPE_CHECKING:`` (annotations only: not executed)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


PARSED = {path: ast.parse(path.read_text(), str(path)) for path in project_files()}
MODULES = {_module_name(path) for path in PARSED}


def _project_target(target: str) -> str | None:
    """The project module an import names (``from storage import events`` → storage.events)."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


@functools.cache
def all_imports(include_type_checking: bool = False) -> list[tuple[Path, Import]]:
    """Every import of the project's modules (walked once: each rule below reads the list)."""
    out = []
    for path, tree in PARSED.items():
        skip = set() if include_type_checking else _type_checking_lines(tree)
        out += [(path, imp) for imp in _imports(path, tree) if imp.line not in skip]
    return out


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_graph_was_read():
    assert len(PARSED) > 60 and {"wiring", "config", "storage.database", "api.app"} <= MODULES


def test_no_upward_import():
    bad = []
    for path, imp in all_imports():
        target = _project_target(imp.target)
        src, dst = _layer(imp.source), _layer(target or "")
        if target is None or src is None or dst is None or src == dst:
            continue
        if frozenset({src, dst}) in SIBLINGS:
            bad.append(f"{_where(path, imp.line)}: {imp.source} imports its sibling {target}")
        elif RANKS[dst] > RANKS[src]:
            bad.append(f"{_where(path, imp.line)}: {imp.source} ({src}) imports {target} ({dst})")
    assert not bad, "imports pointing upwards:\n" + "\n".join(sorted(set(bad)))


def test_main_does_not_import_api():
    bad = [_where(p, i.line) for p, i in all_imports()
           if i.source == "main" and i.target.split(".")[0] == "api"]
    assert not bad, f"main.py imports from api/: {bad}"


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for _, imp in all_imports():
        target = _project_target(imp.target)
        if target and target != imp.source and not imp.source.startswith(target + "."):
            graph[imp.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:   # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            strongconnect(module)
    assert not cycles, f"import cycles: {cycles}"


def test_no_imports_inside_functions_in_the_layers():
    """An import inside a function is how a cycle hides; the layers import at the top."""
    bad = [f"{_where(p, i.line)}: {i.target}" for p, i in all_imports()
           if i.in_function and _project_target(i.target)
           and _layer(i.source) not in ("main", "gunicorn.conf")]
    assert not bad, "imports inside functions:\n" + "\n".join(bad)


def test_only_the_composition_root_lookup_is_dynamic():
    """``importlib.import_module`` only in defaults.py; ``__import__`` only of third-party
    packages (an optional dependency), never of a project module."""
    bad = []
    for path, tree in PARSED.items():
        if _module_name(path) in DYNAMIC_IMPORT_ALLOWED:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            literal = node.args[0].value if node.args and isinstance(
                node.args[0], ast.Constant) else None
            if name == "import_module" or (name == "__import__" and isinstance(literal, str)
                                           and _project_target(literal)):
                bad.append(_where(path, node.lineno))
    assert not bad, f"dynamic imports outside defaults.py: {bad}"


def test_flask_only_in_api():
    bad = [f"{_where(p, i.line)}: {i.target}" for p, i in all_imports(include_type_checking=True)
           if i.target.split(".")[0] in BELOW_API_NO and _layer(i.source) != "api"]
    assert not bad, "web framework imported below api/:\n" + "\n".join(bad)


def _sql_allowed(path: Path) -> bool:
    rel = path.relative_to(ROOT)
    return rel.parts[0] == "storage" or rel.name.endswith("_store.py")


def test_sql_only_in_storage_and_store_modules():
    bad = []
    for path, tree in PARSED.items():
        if _sql_allowed(path):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                names = {a.name for a in node.names} & SQL_NAMES
                if names:
                    bad.append(f"{_where(path, node.lineno)}: sqlalchemy {sorted(names)}")
            elif isinstance(node, ast.Attribute) and node.attr == "exec_driver_sql":
                bad.append(f"{_where(path, node.lineno)}: exec_driver_sql")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and RAW_SQL.match(node.value):
                bad.append(f"{_where(path, node.lineno)}: raw SQL {node.value[:40]!r}")
    assert not bad, "SQL outside storage/ and *_store.py:\n" + "\n".join(bad)


@pytest.mark.parametrize("text, is_sql", [
    ("SELECT 1", True), ("  insert into t values (1)", True), ("select name from models", True),
    ("UPDATE traffic SET revision = 2", True), ("PRAGMA journal_mode = WAL", True),
    ("Create a key; its token is printed once.", False), ("Drop the session.", False),
    ("Selected from the table", False), ("the update", False)])
def test_the_raw_sql_pattern(text: str, is_sql: bool):
    """The SQL rule can fail: it knows a statement from prose that starts like one."""
    assert bool(RAW_SQL.match(text)) is is_sql


def test_starting_a_server_does_not_import_what_only_some_processes_use(tmp_path):
    """google.genai (~0.4 s) and scipy.stats (~1 s) are imported on first use
    (``shared/lazy_import.py``): a server, worker or script that never serves Gemini or judges
    a canary statistically does not pay for them at start-up. Nor does it generate the JSON
    schemas of the OpenAPI document (~0.5 s) until the document is first asked for."""
    probe = ("import sys, api.app; from api.spec import spec; "
             "app = api.app.create_app({'TESTING': True, 'data_dir': sys.argv[1]}); "
             "print(sorted(m for m in ('google.genai.types', 'scipy.stats._stats_py') "
             "if m in sys.modules), len(spec.models), end=' '); "
             "doc = app.test_client().get('/openapi.json').get_json(); "
             "print(len(spec.models) > 50, any(name.startswith('DeployBody.') "
             "for name in doc['components']['schemas']))")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["[]", "0", "True", "True"]
