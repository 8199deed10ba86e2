"""Spend reports: exact integer sums of what predictions cost, grouped as asked.

The resolution is one hour (``spend`` rows): ``from`` is rounded down and ``to`` up to whole
UTC hours. Stored rows and this process's unflushed aggregates are read together (read your
writes), then grouped; the sums are integers of micro-USD, so they add up exactly however they
are grouped.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from errors import InvalidArgument
from money import micro_to_usd
from shared.pagination import decode_token, encode_token
from storage.database import Database
from tracking.aggregates import Key
from tracking.metrics_collector import MetricsCollector
from tracking.spend_store import (DAY, GROUPS, HOUR, SPEND_FIELDS, SpendStore, spend_model,
                                  spend_rows)

MAX_ROWS = 10_000


def parse_group_by(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"model,version"`` → ("model", "version"); unknown names are refused."""
    if value is None or value == "":
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise InvalidArgument(f"group_by: unknown {unknown}; use a comma-separated list of "
                              f"{', '.join(GROUPS)}")
    return tuple(dict.fromkeys(names))


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class SpendReports:
    def __init__(self, database: Database, collector: MetricsCollector) -> None:
        self.store = SpendStore(database)
        self.collector = collector

    def report(self, group_by: str | Sequence[str] | None = None,
               start: datetime | None = None, end: datetime | None = None, *,
               model: str | None = None, api_key: str | None = None,
               limit: int = 1000, page_token: str | None = None) -> dict[str, Any]:
        """``{"from", "to", "group_by", "rows", "total", "next_page_token"}``; ``from`` defaults
        to the start of the current UTC month, ``to`` to now. ``api_key`` "" selects requests
        made without a key."""
        groups = parse_group_by(group_by)
        now = time.time()
        t_end = now if end is None else end.timestamp()
        if start is None:
            today = datetime.fromtimestamp(now, tz=timezone.utc)
            t_start = datetime(today.year, today.month, 1, tzinfo=timezone.utc).timestamp()
        else:
            t_start = start.timestamp()
        if t_start >= t_end:
            raise InvalidArgument("'from' must be before 'to'")
        if not 1 <= limit <= MAX_ROWS:
            raise InvalidArgument(f"limit must be between 1 and {MAX_ROWS}")
        lo = int(t_start // HOUR * HOUR)
        hi = int(math.ceil(t_end / HOUR) * HOUR)

        def wanted(k: Key) -> bool:
            return lo <= k[2] < hi and (model is None or spend_model(k[0]) == model)

        stored, memory = self.collector.read_consistent(
            lambda: self.store.totals(groups, lo, hi, model=model, api_key=api_key), wanted)
        sums: dict[tuple[Any, ...], list[int]] = {}
        for row in stored:
            sums[row.group] = row.values()
        for (m, v, k, hour), values in spend_rows(memory).items():
            if api_key is not None and k != api_key:
                continue
            fields = {"model": m, "version": v, "key": k, "day": hour // DAY * DAY,
                      "hour": hour}
            mine = sums.setdefault(tuple(fields[g] for g in groups), [0, 0, 0, 0])
            for i, n in enumerate(values):
                mine[i] += n
        rows = [self._row(groups, key, values) for key, values in sorted(sums.items())]
        total = [sum(values[i] for values in sums.values()) for i in range(len(SPEND_FIELDS))]
        offset = decode_token(page_token) or 0
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument("page_token is not a token this server issued")
        page = rows[offset:offset + limit]
        return {"from": _utc(lo), "to": _utc(hi), "group_by": list(groups), "rows": page,
                "total": self._row((), (), total),
                "next_page_token": (encode_token(offset + limit)
                                    if offset + limit < len(rows) else None)}

    @staticmethod
    def _row(groups: Sequence[str], key: tuple[Any, ...], values: list[int]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, value in zip(groups, key):
            if name in ("day", "hour"):
                row[name] = _utc(value)[:10] if name == "day" else _utc(value)
            elif name == "key":
                row[name] = value or None
            else:
                row[name] = value
        row.update(zip(SPEND_FIELDS, values))
        row["cost_usd"] = micro_to_usd(row["cost_micro_usd"])
        return row
