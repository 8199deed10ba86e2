"""MLflow's search filter grammar, as its client sends it, turned into a predicate.

``name LIKE 'fraud%' AND tag.`mlflow.prompt.is_prompt` != 'true'``: clauses joined by ``AND``;
each is ``<key> <op> <value>`` with key ``name``, ``tag.<k>`` / ``tags.<k>`` (the tag key bare,
in backticks or in double quotes) or, for versions, ``version_number``, ``run_id``,
``source_path``; op ``=``, ``!=``, ``LIKE``, ``ILIKE`` or ``IN (...)``; values in single or
double quotes (numbers bare). As in MLflow, ``!=`` on a tag also matches a row without the tag:
that is how ``search_registered_models`` hides prompts from models that never had the tag.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from errors import InvalidArgument

Row = Mapping[str, Any]  # {"name", "tags": {k: v}, and for versions "version_number", ...}
Predicate = Callable[[Row], bool]

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<tick>`[^`]*`)
  | (?P<op>!=|<>|>=|<=|=|<|>|\(|\)|,)
  | (?P<word>[A-Za-z0-9_.\-:/+%@]+)
)""", re.VERBOSE)

MODEL_KEYS = ("name",)
VERSION_KEYS = ("name", "version_number", "run_id", "source_path")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidArgument(f"invalid filter {text!r}: cannot read it from "
                                  f"{text[pos:pos + 20]!r}")
        kind = m.lastgroup or "word"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    quote = token[0]
    body = token[1:-1]
    if quote == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def like_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE as a regular expression: ``%`` any run, ``_`` one character."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _field(token: tuple[str, str], keys: tuple[str, ...],
           follow: tuple[str, str] | None) -> tuple[str, str | None, int]:
    """(attribute, tag key or None, tokens used) for the key at the start of a clause."""
    kind, text = token
    if kind != "word":
        raise InvalidArgument(f"invalid filter: expected a key such as name or tag.`k`, got "
                              f"{text!r}")
    head, dot, rest = text.partition(".")
    if head.lower() in ("tag", "tags") and dot:
        if rest:
            return "tags", rest, 1
        if follow is not None and follow[0] in ("tick", "str"):
            return "tags", follow[1][1:-1], 2
        raise InvalidArgument("invalid filter: tag key missing after 'tag.'")
    if text.lower().startswith("attributes."):
        text = text[len("attributes."):]
    if text.lower() not in keys:
        raise InvalidArgument(f"invalid filter key {text!r}: expected one of "
                              f"{', '.join(keys)} or tag.<key>")
    return text.lower(), None, 1


def exact_name(text: str | None) -> str | None:
    """The model name a filter pins with a ``name = '...'`` clause (clauses are ANDed, so one
    such clause confines the search to that model), else None."""
    if not text:
        return None
    tokens = _tokens(text)
    for i in range(len(tokens) - 2):
        if (tokens[i][0] == "word" and tokens[i][1].lower() in ("name", "attributes.name")
                and tokens[i + 1][1] == "=" and tokens[i + 2][0] == "str"
                and (i == 0 or tokens[i - 1][1].upper() == "AND")):
            return _unquote(tokens[i + 2][1])
    return None


def parse_filter(text: str | None, keys: tuple[str, ...] = MODEL_KEYS) -> Predicate:
    """A predicate for ``text`` (None or empty: everything matches). Bad filters raise
    InvalidArgument, which the MLflow API answers as INVALID_PARAMETER_VALUE (400)."""
    if not text or not text.strip():
        return lambda _row: True
    tokens = _tokens(text)
    clauses: list[Predicate] = []
    i = 0
    while True:
        if i >= len(tokens):
            raise InvalidArgument(f"invalid filter {text!r}: it ends where a clause should be")
        attr, tag, used = _field(tokens[i], keys, tokens[i + 1] if i + 1 < len(tokens) else None)
        i += used
        if i >= len(tokens):
            raise InvalidArgument(f"invalid filter {text!r}: comparison missing")
        op = tokens[i][1].upper()
        i += 1
        if op == "NOT" and i < len(tokens) and tokens[i][1].upper() in ("LIKE", "ILIKE", "IN"):
            op = "NOT " + tokens[i][1].upper()
            i += 1
        if op in ("IN", "NOT IN"):
            values, i = _value_list(tokens, i, text)
            clauses.append(_clause(attr, tag, op, values))
        else:
            if i >= len(tokens) or tokens[i][0] not in ("str", "word"):
                raise InvalidArgument(f"invalid filter {text!r}: value missing after {op}")
            kind, raw = tokens[i]
            i += 1
            clauses.append(_clause(attr, tag, op, _unquote(raw) if kind == "str" else raw))
        if i == len(tokens):
            break
        if tokens[i][1].upper() != "AND":
            raise InvalidArgument(f"invalid filter {text!r}: clauses are joined by AND only "
                                  f"(found {tokens[i][1]!r})")
        i += 1
    return lambda row: all(clause(row) for clause in clauses)


def _value_list(tokens: list[tuple[str, str]], i: int, text: str) -> tuple[list[str], int]:
    if i >= len(tokens) or tokens[i][1] != "(":
        raise InvalidArgument(f"invalid filter {text!r}: IN needs a list such as ('a', 'b')")
    values, i = [], i + 1
    while i < len(tokens) and tokens[i][1] != ")":
        kind, raw = tokens[i]
        if kind == "str":
            values.append(_unquote(raw))
        elif raw != ",":
            values.append(raw)
        i += 1
    if i >= len(tokens):
        raise InvalidArgument(f"invalid filter {text!r}: ')' missing")
    return values, i + 1


def _clause(attr: str, tag: str | None, op: str, value: Any) -> Predicate:
    def get(row: Row) -> str | None:
        if tag is not None:
            return (row.get("tags") or {}).get(tag)
        found = row.get(attr)
        return None if found is None else str(found)

    if attr == "version_number" and op in ("<", ">", "<=", ">=", "=", "!="):
        try:
            wanted = int(value)
        except ValueError:
            raise InvalidArgument(f"version_number must be an integer, got {value!r}") from None
        compare = {"<": int.__lt__, ">": int.__gt__, "<=": int.__le__, ">=": int.__ge__,
                   "=": int.__eq__, "!=": int.__ne__}[op]
        return lambda row: row.get("version_number") is not None and compare(
            int(row["version_number"]), wanted)
    if op == "=":
        return lambda row: get(row) == value
    if op in ("!=", "<>"):
        return lambda row: get(row) != value  # a missing tag is "not equal" too
    if op in ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"):
        pattern = like_pattern(value, ignore_case="ILIKE" in op)
        negate = op.startswith("NOT")

        def like(row: Row) -> bool:
            found = get(row)
            hit = found is not None and pattern.fullmatch(found) is not None
            return hit != negate
        return like
    if op in ("IN", "NOT IN"):
        wanted_set = set(value)
        if op == "IN":
            return lambda row: get(row) in wanted_set
        return lambda row: get(row) not in wanted_set
    raise InvalidArgument(f"unsupported comparison {op!r}: use =, !=, LIKE, ILIKE or IN")
