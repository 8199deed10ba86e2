"""A per-process cache of registry answers, revalidated by each model's revision (issue 14).

The same coherence promise as the traffic table (deployment/router.py): every model's entry is
revalidated with one indexed read of ``models.revision`` at most every ``ttl_s`` (0.5 s by
default), so a change made by any process is seen by all within a second; the process that
writes drops its own entry at once, so it reads its own writes. Between revalidations a read is
a dict lookup.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")


def _refuse(self: Any, *_args: Any, **_kwargs: Any) -> None:
    raise TypeError("this answer is shared by the registry's read cache and is read-only: "
                    "copy it first (dict(answer), copy.deepcopy(answer))")


class FrozenDict(dict):
    """A dict that refuses changes: what the cache hands out is shared by every caller."""

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (dict, (thaw(self),))


class FrozenList(list):
    """A list that refuses changes (see ``FrozenDict``)."""

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = clear = extend = insert = pop = remove = reverse = sort = _refuse

    def __copy__(self) -> list:
        return list(self)

    def __deepcopy__(self, memo: dict) -> list:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (list, (thaw(self),))


def freeze(value: Any) -> Any:
    """``value`` with every dict and list made read-only, recursively: inside tuples and
    inside the fields of a frozen dataclass (the store's records are frozen, but the dicts
    they hold, such as a version's config, are not)."""
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: freeze(getattr(value, f.name)) for f in fields(value)
                                 if f.init})
    if isinstance(value, dict):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, tuple):
        items = tuple(freeze(v) for v in value)
        return type(value)(*items) if hasattr(value, "_fields") else items  # NamedTuples too
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of a frozen answer."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


class _Entry:
    __slots__ = ("revision", "checked", "answers", "generation")

    def __init__(self, revision: int | None, checked: float) -> None:
        self.revision = revision
        self.checked = checked
        self.answers: OrderedDict[Hashable, Any] = OrderedDict()
        self.generation = 0


class ReadCache:
    """``get(model, question, compute)``: the cached answer, or ``compute()``'s, remembered.

    ``revision_of(model)`` reads the model's current revision (None: no such model). Answers
    (the store's frozen records) are shared by every caller, so the dicts and lists inside
    them are frozen too (``FrozenDict``/``FrozenList``: a change raises TypeError instead of
    corrupting what other requests see). At most ``per_model`` answers are kept per model
    and ``models`` models (least recently used go first), so memory stays bounded.
    """

    def __init__(self, revision_of: Callable[[str], int | None], ttl_s: float = 0.5,
                 per_model: int = 256, models: int = 10_000) -> None:
        self.revision_of = revision_of
        self.ttl_s = ttl_s
        self.per_model = per_model
        self.models = models
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: str, question: Hashable, compute: Callable[[], T]) -> T:
        if self.ttl_s <= 0:
            return freeze(compute())
        entry = self._fresh(model)
        try:
            return entry.answers[question]
        except KeyError:
            pass
        generation = entry.generation
        answer = freeze(compute())
        with self._lock:
            # Not if a write of this process (or a new revision) came in meanwhile: the answer
            # may predate it.
            if entry.generation == generation and self._entries.get(model) is entry:
                entry.answers[question] = answer
                if len(entry.answers) > self.per_model:
                    entry.answers.popitem(last=False)
        return answer

    def invalidate(self, model: str) -> None:
        """This process changed ``model``: forget what it knew, at once."""
        with self._lock:
            entry = self._entries.pop(model, None)
            if entry is not None:
                entry.generation += 1

    def _fresh(self, model: str) -> _Entry:
        now = time.monotonic()
        entry = self._entries.get(model)
        if entry is not None and now - entry.checked < self.ttl_s:
            return entry
        revision = self.revision_of(model)  # outside the lock: other models keep being served
        with self._lock:
            current = self._entries.get(model)
            if current is not None and current is entry and current.revision == revision:
                current.checked = now
                self._entries.move_to_end(model)
                return current
            if current is not None:
                current.generation += 1
            fresh = _Entry(revision, now)
            self._entries[model] = fresh
            if len(self._entries) > self.models:
                self._entries.popitem(last=False)
            return fresh
