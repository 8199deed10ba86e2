"""All SQL of prices: appended rows (never updated), so the history explains every past cost.
Rows come back as frozen ``PriceRecord``s (``tracking/records.py``)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from money import Price
from storage.database import Database
from storage.schema import prices, utcnow
from tracking.records import PriceRecord


def price_record(row: Any) -> PriceRecord:
    return PriceRecord(row.id, row.model, row.version or None, row.effective_from,
                       Price(row.input_rate, row.output_rate, row.cached_input_rate,
                             row.thinking_rate), row.source, row.actor, row.created_at)


class PriceStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, model: str, version: str, price: Price, effective_from: datetime,
            source: str, actor: str) -> PriceRecord:
        with self.database.transaction() as conn:
            new_id = conn.execute(insert(prices).values(
                model=model, version=version, effective_from=effective_from,
                input_rate=price.input, output_rate=price.output,
                cached_input_rate=price.cached_input, thinking_rate=price.thinking,
                source=source, actor=actor, created_at=utcnow())).inserted_primary_key[0]
            row = conn.execute(select(prices).where(prices.c.id == new_id)).one()
        return price_record(row)

    def rows(self, model: str, version: str | None = None) -> list[PriceRecord]:
        """Rows of a model (one version's and the model-wide ones when ``version`` is given),
        oldest first."""
        query = select(prices).where(prices.c.model == model)
        if version is not None:
            query = query.where(prices.c.version.in_([version, ""]))
        query = query.order_by(prices.c.effective_from, prices.c.id)
        with self.database.read() as conn:
            return [price_record(row) for row in conn.execute(query)]

    def revision(self) -> tuple[int, int]:
        """Changes whenever a row is added: (count, highest id)."""
        with self.database.read() as conn:
            count, top = conn.execute(select(func.count(), func.max(prices.c.id))).one()
        return int(count), int(top or 0)
