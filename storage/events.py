"""The audit trail: every layer appends its events inside its own transaction, and each event
queues its webhook deliveries in that same transaction (the outbox: every producer of events
gets webhooks through this one path)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from storage.schema import events, utcnow
from webhooks.webhook_store import ENABLED_COUNT, delivers, enqueue_event

# Built once, values bound per call: building ``insert(...).values(...)`` anew and computing its
# cache key cost more CPU than SQLite's execution of it (issue 14).
_INSERT_EVENT = insert(events)
# An event that webhooks may deliver also asks, in the same statement, whether any
# subscription is enabled: one round trip fewer per write when none is (issue 14). The count
# is read inside the writer's transaction, as the subscriptions themselves would be.
_INSERT_EVENT_COUNTING = insert(events).returning(events.c.id, ENABLED_COUNT)


def record_event(conn: Connection, kind: str, *, actor: str = "system", model: str | None = None,
                 version: str | None = None, deployment_id: str | None = None,
                 reason: str = "", detail: dict[str, Any] | None = None) -> None:
    """Append one row to the audit trail, inside the caller's transaction, and queue its
    webhook deliveries."""
    at = utcnow()
    values = {"at": at, "actor": actor, "kind": kind, "model": model, "version": version,
              "deployment_id": deployment_id, "reason": reason, "detail": detail or {}}
    if not delivers(kind):
        conn.execute(_INSERT_EVENT, values)
        return
    event_id, enabled = conn.execute(_INSERT_EVENT_COUNTING, values).one()
    enqueue_event(conn, event_id=event_id, kind=kind, at=at, actor=actor, model=model,
                  version=version, deployment_id=deployment_id, reason=reason,
                  detail=detail or {}, enabled=enabled)
