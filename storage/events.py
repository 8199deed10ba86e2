"""The audit trail: every layer appends its events inside its own transaction."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from storage.schema import events, utcnow


def record_event(conn: Connection, kind: str, *, actor: str = "system", model: str | None = None,
                 version: str | None = None, deployment_id: str | None = None,
                 reason: str = "", detail: dict[str, Any] | None = None) -> None:
    """Append one row to the audit trail, inside the caller's transaction."""
    conn.execute(insert(events).values(
        at=utcnow(), actor=actor, kind=kind, model=model, version=version,
        deployment_id=deployment_id, reason=reason, detail=detail or {}))
