"""What one prediction costs: the price in force for (model, version) at the call's time.

Where a price comes from, first match wins (each source keeps its history):

1. a stored price of this version (``PUT /api/models/{name}/prices`` with ``"version"``);
2. the version's ``config.prices`` (immutable, like the rest of the version);
3. a stored model-wide price (``PUT /api/models/{name}/prices`` without ``"version"``);
4. the built-in table ``tracking/prices.json`` for the version's Gemini model id (longest
   prefix match, so ``gemini-2.5-flash-001`` uses ``gemini-2.5-flash``);
5. none: the prediction costs nothing (``cost_usd`` null in its usage), e.g. ONNX versions.

Within a source the entry with the latest ``effective_from`` at or before the call is used, so
a price stored with ``effective_from`` T changes the cost of calls after T only, and past costs
stay as they were (stored costs are never recomputed). A source's earliest entry also covers
the time before it (the built-in table starts at the first dated price we know).

The hot path asks ``cost()`` once per prediction: the sources of a version are cached in
memory and revalidated at most every ``refresh_s`` seconds with one cheap read (the count and
highest id of the stored prices), so a price stored by any process is used by every process
within that time (to be exact at a time T, store it with ``effective_from`` a second ahead).
"""
from __future__ import annotations

import bisect
import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from config import get_settings
from errors import InvalidArgument, NotFound
from money import Price, micro_to_usd, parse_price
from registry.model_registry import ModelRegistry
from storage.database import Database
from tracking.price_store import PriceStore
from tracking.records import PriceRecord

BUILTIN_PATH = Path(__file__).resolve().parent / "prices.json"
_NEVER = -math.inf


@dataclass(frozen=True)
class Quote:
    """A price with where it came from."""

    price: Price
    source: str            # version | config | model | builtin
    note: str              # the price's own source text (a URL, a ticket, who set it)
    effective_from: float  # epoch seconds; -inf for a version's config

    def as_dict(self) -> dict[str, Any]:
        since = None if self.effective_from == _NEVER else datetime.fromtimestamp(
            self.effective_from, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        return {**self.price.as_usd(), "source": self.source, "note": self.note,
                "effective_from": since}


class _Schedule:
    """One source's dated prices, oldest first."""

    __slots__ = ("starts", "quotes")

    def __init__(self, quotes: list[Quote]) -> None:
        self.quotes = sorted(quotes, key=lambda q: q.effective_from)
        self.starts = [q.effective_from for q in self.quotes]

    def at(self, t: float) -> Quote | None:
        if not self.quotes:
            return None
        i = bisect.bisect_right(self.starts, t) - 1
        return self.quotes[max(i, 0)]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def load_builtin(path: Path = BUILTIN_PATH) -> dict[str, _Schedule]:
    """The built-in table: {Gemini model id: its dated prices}."""
    data = json.loads(path.read_text())
    by_model: dict[str, list[Quote]] = {}
    for entry in data["prices"]:
        rates = {k: v for k, v in entry.items() if k.endswith("_per_1m")}
        by_model.setdefault(entry["model"], []).append(Quote(
            parse_price(rates, f"prices.json {entry['model']}"), "builtin", entry["source"],
            _epoch(entry["effective_from"])))
    return {model: _Schedule(quotes) for model, quotes in by_model.items()}


def _builtin_for(table: dict[str, _Schedule], model_id: str) -> _Schedule | None:
    model_id = model_id.removeprefix("models/")
    best = max((m for m in table if model_id.startswith(m)), key=len, default=None)
    return None if best is None else table[best]


class PriceBook:
    """Prices of every (model, version), cached per process; ``cost()`` is the hot path."""

    def __init__(self, database: Database, registry: ModelRegistry | None = None, *,
                 refresh_s: float = 1.0, builtin: dict[str, _Schedule] | None = None,
                 default_gemini_model: str | None = None) -> None:
        self.store = PriceStore(database)
        self.registry = registry or ModelRegistry(database)
        self.refresh_s = refresh_s
        self.builtin = load_builtin() if builtin is None else builtin
        self.default_gemini_model = default_gemini_model or get_settings().gemini_model
        self._cache: dict[tuple[str, str], list[_Schedule]] = {}
        self._unregistered: set[tuple[str, str]] = set()   # looked up again at each refresh
        self._revision: tuple[int, int] | None = None
        self._checked = -math.inf
        self._lock = threading.Lock()

    # --- the hot path -----------------------------------------------------------------------

    def quote(self, model: str, version: str, at: float | None = None) -> Quote | None:
        """The price in force for ``model@version`` at ``at`` (epoch s; default now)."""
        if time.monotonic() - self._checked > self.refresh_s:
            self._revalidate()
        sources = self._cache.get((model, version))
        if sources is None:
            sources = self._load(model, version)
        t = time.time() if at is None else at
        for schedule in sources:
            found = schedule.at(t)
            if found is not None:
                return found
        return None

    def cost(self, model: str, version: str, input_tokens: int = 0, output_tokens: int = 0,
             total_tokens: int | None = None, cached_tokens: int = 0, thinking_tokens: int = 0,
             at: float | None = None) -> int | None:
        """Micro-USD of one prediction, or None when the version has no price. Tokens of
        ``total_tokens`` beyond input + output (a total without a split) are priced as input."""
        quote = self.quote(model, version, at)
        if quote is None:
            return None
        unsplit = 0 if total_tokens is None else max(total_tokens - input_tokens
                                                     - output_tokens, 0)
        return quote.price.cost(input_tokens, output_tokens, cached_tokens, thinking_tokens,
                                unsplit)

    # --- changing prices --------------------------------------------------------------------

    def set_price(self, model: str, price: Price | dict[str, Any], *,
                  version: str | None = None, effective_from: datetime | None = None,
                  source: str = "", actor: str = "system") -> PriceRecord:
        """Store a price of a model (or of one exact version) from ``effective_from``
        (default now). Earlier prices stay in the history and keep pricing earlier calls."""
        self.registry.get_model(model)
        if version is not None:
            version = self.registry.resolve(model, version).text
        if not isinstance(price, Price):
            price = parse_price(price)
        if not isinstance(source, str) or len(source) > 1000:
            raise InvalidArgument("source must be a text of at most 1000 characters")
        when = effective_from or datetime.now(timezone.utc)
        if when.tzinfo is None:
            raise InvalidArgument("effective_from needs a time zone, e.g. 2026-01-01T00:00:00Z")
        row = self.store.add(model, version or "", price, when, source, actor)
        self.invalidate()
        return row

    def history(self, model: str, version: str | None = None) -> list[PriceRecord]:
        """Stored prices of a model, newest first (one version's and the model-wide ones
        when ``version`` is given)."""
        self.registry.get_model(model)
        rows = self.store.rows(model, version)
        return list(reversed(rows))

    def invalidate(self) -> None:
        with self._lock:
            self._cache = {}
            self._unregistered = set()
            self._checked = -math.inf

    # --- internals --------------------------------------------------------------------------

    def _revalidate(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked <= self.refresh_s:
                return
            revision = self.store.revision()
            if revision != self._revision:
                self._cache = {}
                self._revision = revision
            for key in self._unregistered:   # a version registered since has a config now
                self._cache.pop(key, None)
            self._unregistered = set()
            self._checked = time.monotonic()

    def _load(self, model: str, version: str) -> list[_Schedule]:
        stored = self.store.rows(model, version)
        mine = [Quote(r.price, "version", r.source, _aware(r.effective_from))
                for r in stored if r.version == version]
        wide = [Quote(r.price, "model", r.source, _aware(r.effective_from))
                for r in stored if r.version is None]
        sources = [_Schedule(mine)]
        try:
            row = self.registry.get_version(model, version)
        except (NotFound, InvalidArgument):
            row = None
        if row is not None and isinstance(row["config"].get("prices"), dict):
            sources.append(_Schedule([Quote(parse_price(row["config"]["prices"]), "config",
                                            f"config of {model}@{version}", _NEVER)]))
        sources.append(_Schedule(wide))
        if row is not None and row["provider"] == "gemini":
            builtin = _builtin_for(self.builtin,
                                   row["config"].get("model") or self.default_gemini_model)
            if builtin is not None:
                sources.append(builtin)
        sources = [s for s in sources if s.quotes]
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[(model, version)] = sources
            if row is None:
                self._unregistered.add((model, version))
        return sources


def _aware(value: datetime) -> float:
    if value.tzinfo is None:   # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def cost_fields(micro: int | None) -> dict[str, Any]:
    """The cost of one answer, as integer micro-USD and as USD for display."""
    return {"cost_micro_usd": micro, "cost_usd": micro_to_usd(micro)}
