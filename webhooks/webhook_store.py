"""All SQL of webhooks: subscriptions, the delivery outbox, and the attempt log.

``enqueue_event`` runs inside the transaction of the change that produced the event (called by
``registry.metadata_store.record_event``): the deliveries commit or vanish with the change, so
an event is never sent for a change that rolled back, and never lost for one that committed.
Every other method is one transaction of its own.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from errors import NotFound
from storage.database import Database
from storage.schema import (utcnow, webhook_attempts, webhook_deliveries,
                            webhook_subscriptions as subs)
from webhooks import events as public
from webhooks.payloads import render
from webhooks.records import Attempt, Claimed, Delivery, Subscription

_CLAIM_SCAN = 1000   # pending rows read per claim round (the heads of their subscriptions)


def new_delivery_id() -> str:
    return f"whd_{uuid.uuid4().hex}"


def new_subscription_id() -> str:
    return f"wh_{secrets.token_hex(8)}"


# Built once (every recorded event runs them): building a statement and its cache key anew costs
# more CPU than SQLite's execution of it (issue 14, as in storage/events.py).
_ENABLED_SUBSCRIPTIONS = select(subs.c.id, subs.c.kind, subs.c.events, subs.c.model) \
    .where(subs.c.enabled.is_(True))
_INSERT_DELIVERY = insert(webhook_deliveries)
# How many subscriptions are enabled, asked by the event's own INSERT (``RETURNING``, see
# storage/events.py): with none, the usual case, an event costs one statement instead of two.
ENABLED_COUNT = select(func.count()).select_from(subs).where(subs.c.enabled.is_(True)) \
    .scalar_subquery()


def delivers(kind: str) -> bool:
    """Whether events of ``kind`` are ever delivered (internal kinds have no public name)."""
    return public.public_name(kind) is not None


def enqueue_event(conn: Connection, *, event_id: int | None, kind: str, at: datetime,
                  actor: str, model: str | None, version: str | None,
                  deployment_id: str | None, reason: str, detail: dict[str, Any],
                  enabled: int | None = None) -> int:
    """Queue one delivery per enabled subscription that wants this event (in ``conn``'s
    transaction); returns how many. Internal kinds without a public name queue nothing.
    ``enabled``: the number of enabled subscriptions when the caller read it in this
    transaction (``ENABLED_COUNT``); 0 skips the query."""
    event = public.public_name(kind)
    if event is None or enabled == 0:
        return 0
    rows = conn.execute(_ENABLED_SUBSCRIPTIONS).all()
    data = {"model": model, "version": version, "deployment_id": deployment_id, "actor": actor,
            "reason": reason, "detail": detail}
    queued: list[dict[str, Any]] = []
    for row in rows:
        if row.model is not None and row.model != model:
            continue
        if not public.matches(row.events, event):
            continue
        message_id = new_delivery_id()
        body = render(row.kind, message_id, event, at, data)
        if body is not None:
            queued.append(_delivery_row(id=message_id, message_id=message_id,
                                        subscription_id=row.id, event=event,
                                        event_id=event_id, model=model, body=body, now=at))
    if queued:      # one executemany: an event costs one statement, however many subscribers
        conn.execute(_INSERT_DELIVERY, queued)
    return len(queued)


def _delivery_row(*, id: str, message_id: str, subscription_id: str, event: str,
                  event_id: int | None, model: str | None, body: str, now: datetime,
                  redelivery_of: str | None = None) -> dict[str, Any]:
    return dict(id=id, message_id=message_id, subscription_id=subscription_id, event=event,
                event_id=event_id, model=model, body=body, state="pending", attempts=0,
                next_attempt_at=now, lease_until=None, lease_owner=None, revision=1,
                last_status=None, last_error="", redelivery_of=redelivery_of, created_at=now,
                finished_at=None)


def subscription_record(row: Any) -> Subscription:
    """A subscription row without its secret (``secret_of`` reads that)."""
    return Subscription(row.id, row.url, row.kind, tuple(row.events), row.model,
                        row.description, bool(row.enabled), row.consecutive_failures,
                        row.disabled_reason, row.actor, row.created_at, row.updated_at)


def delivery_record(row: Any, *, body: str | None = None,
                    attempt_log: tuple[Attempt, ...] | None = None) -> Delivery:
    return Delivery(row.id, row.message_id, row.subscription_id, row.event, row.event_id,
                    row.model, row.state, row.attempts, row.last_status, row.last_error,
                    row.redelivery_of, row.seq, row.created_at, row.finished_at,
                    row.next_attempt_at, body, attempt_log)


def attempt_record(row: Any) -> Attempt:
    return Attempt(row.number, row.at, row.status_code, row.latency_ms, row.outcome, row.error,
                   row.response_excerpt)


class WebhookStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    # -- subscriptions ---------------------------------------------------------------------
    def create(self, *, url: str, kind: str, events: list[str], model: str | None,
               description: str, secret: str, enabled: bool, actor: str) -> Subscription:
        now = utcnow()
        values = dict(id=new_subscription_id(), url=url, kind=kind, events=events, model=model,
                      description=description, secret=secret, enabled=enabled,
                      consecutive_failures=0, disabled_reason="", actor=actor, created_at=now,
                      updated_at=now)
        with self.db.transaction() as conn:
            conn.execute(insert(subs).values(**values))
            return subscription_record(self._row(conn, values["id"]))

    def get(self, subscription_id: str) -> Subscription:
        with self.db.read() as conn:
            return subscription_record(self._row(conn, subscription_id))

    def secret_of(self, subscription_id: str) -> str:
        with self.db.read() as conn:
            return self._row(conn, subscription_id).secret

    def list(self, *, limit: int, after: str | None) -> list[Subscription]:
        query = select(subs).order_by(subs.c.id).limit(limit)
        if after is not None:
            query = query.where(subs.c.id > after)
        with self.db.read() as conn:
            return [subscription_record(r) for r in conn.execute(query)]

    def update(self, subscription_id: str, changes: dict[str, Any]) -> Subscription:
        """Apply ``changes``; enabling a subscription clears its failure count and reason."""
        values = dict(changes, updated_at=utcnow())
        if changes.get("enabled") is True:
            values.update(consecutive_failures=0, disabled_reason="")
        with self.db.transaction() as conn:
            self._row(conn, subscription_id)
            conn.execute(update(subs).where(subs.c.id == subscription_id).values(**values))
            return subscription_record(self._row(conn, subscription_id))

    def delete(self, subscription_id: str) -> None:
        """The subscription, its queued deliveries and its log."""
        with self.db.transaction() as conn:
            self._row(conn, subscription_id)
            ids = select(webhook_deliveries.c.id).where(
                webhook_deliveries.c.subscription_id == subscription_id)
            conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(ids)))
            conn.execute(delete(webhook_deliveries).where(
                webhook_deliveries.c.subscription_id == subscription_id))
            conn.execute(delete(subs).where(subs.c.id == subscription_id))

    @staticmethod
    def _row(conn: Connection, subscription_id: str) -> Any:
        row = conn.execute(select(subs).where(subs.c.id == subscription_id)).first()
        if row is None:
            raise NotFound(f"webhook '{subscription_id}' does not exist")
        return row

    # -- deliveries ------------------------------------------------------------------------
    def enqueue(self, subscription_id: str, *, event: str, body: str, message_id: str,
                model: str | None = None, redelivery_of: str | None = None) -> Delivery:
        """Queue one delivery outside any event (a test, a redelivery)."""
        delivery_id = new_delivery_id()
        with self.db.transaction() as conn:
            self._row(conn, subscription_id)
            conn.execute(insert(webhook_deliveries), [_delivery_row(
                id=delivery_id, message_id=message_id, subscription_id=subscription_id,
                event=event, event_id=None, model=model, body=body, now=utcnow(),
                redelivery_of=redelivery_of)])
            return self._delivery(conn, subscription_id, delivery_id)

    def deliveries(self, subscription_id: str, *, limit: int,
                   before_seq: int | None) -> list[Delivery]:
        """Newest first (``seq`` is the keyset cursor); without bodies and attempts."""
        query = (select(webhook_deliveries)
                 .where(webhook_deliveries.c.subscription_id == subscription_id)
                 .order_by(webhook_deliveries.c.seq.desc()).limit(limit))
        if before_seq is not None:
            query = query.where(webhook_deliveries.c.seq < before_seq)
        with self.db.read() as conn:
            self._row(conn, subscription_id)
            return [delivery_record(r) for r in conn.execute(query)]

    def delivery(self, subscription_id: str, delivery_id: str, *,
                 with_body: bool = True) -> Delivery:
        with self.db.read() as conn:
            return self._delivery(conn, subscription_id, delivery_id, with_body=with_body)

    def _delivery(self, conn: Connection, subscription_id: str, delivery_id: str, *,
                  with_body: bool = True) -> Delivery:
        row = conn.execute(select(webhook_deliveries).where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.subscription_id == subscription_id)).first()
        if row is None:
            raise NotFound(f"delivery '{delivery_id}' of webhook '{subscription_id}' does not "
                           "exist")
        log = tuple(attempt_record(a) for a in conn.execute(
            select(webhook_attempts).where(webhook_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_attempts.c.number, webhook_attempts.c.id)))
        return delivery_record(row, body=row.body if with_body else None, attempt_log=log)

    def claim(self, *, owner: str, now: datetime, lease_s: float, limit: int,
              busy: set[str], subscription_id: str | None = None) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries: only the oldest pending delivery of each
        enabled subscription (so each subscription receives its events in order), none of a
        subscription in ``busy``; with ``subscription_id``, only that one's. Each lease is an
        UPDATE guarded by the row's revision: of two processes claiming the same row, one
        wins."""
        d = webhook_deliveries
        query = (select(d.c.id, d.c.subscription_id, d.c.revision, d.c.next_attempt_at,
                        d.c.lease_until)
                 .join(subs, subs.c.id == d.c.subscription_id)
                 .where(d.c.state == "pending", subs.c.enabled.is_(True))
                 .order_by(d.c.seq).limit(_CLAIM_SCAN if subscription_id is None else 1))
        if subscription_id is not None:
            query = query.where(d.c.subscription_id == subscription_id)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        heads: dict[str, Any] = {}
        for row in rows:
            heads.setdefault(row.subscription_id, row)
        claimed: list[Claimed] = []
        until = now + timedelta(seconds=lease_s)
        for sub_id, row in heads.items():
            if len(claimed) >= limit:
                break
            if sub_id in busy or _aware(row.next_attempt_at) > now:
                continue
            if row.lease_until is not None and _aware(row.lease_until) > now:
                continue
            with self.db.transaction() as conn:
                won = conn.execute(update(d).where(d.c.id == row.id,
                                                   d.c.revision == row.revision,
                                                   d.c.state == "pending")
                                   .values(lease_until=until, lease_owner=owner,
                                           revision=row.revision + 1)).rowcount
                if not won:
                    continue
                full = conn.execute(select(d, subs.c.url, subs.c.kind, subs.c.secret)
                                    .join(subs, subs.c.id == d.c.subscription_id)
                                    .where(d.c.id == row.id)).one()
            claimed.append(Claimed(id=full.id, message_id=full.message_id,
                                   subscription_id=sub_id, event=full.event, body=full.body,
                                   attempts=full.attempts, url=full.url, kind=full.kind,
                                   secret=full.secret, owner=owner))
        return claimed

    def finish_attempt(self, claimed: Claimed, *, now: datetime, outcome: str,
                       status_code: int | None, latency_ms: float, error: str, excerpt: str,
                       next_attempt_at: datetime | None,
                       disable_after: int) -> Subscription | None:
        """Log one attempt and move the delivery on (``succeeded``: done; ``retry``: pending
        again at ``next_attempt_at``; ``failed``: done). A final outcome updates the
        subscription's run of consecutive failures; returns the subscription when this attempt
        disabled it."""
        d = webhook_deliveries
        state = {"succeeded": "succeeded", "failed": "failed"}.get(outcome, "pending")
        done = state != "pending"
        with self.db.transaction() as conn:
            current = conn.execute(select(d.c.attempts, d.c.lease_owner)
                                   .where(d.c.id == claimed.id)).first()
            if current is None:             # the subscription was deleted meanwhile
                return None
            number = current.attempts + 1
            conn.execute(insert(webhook_attempts).values(
                delivery_id=claimed.id, number=number, at=now, status_code=status_code,
                latency_ms=latency_ms, outcome=outcome, error=error[:2000],
                response_excerpt=excerpt))
            moved = conn.execute(update(d).where(d.c.id == claimed.id,
                                                 d.c.lease_owner == claimed.owner).values(
                attempts=number, state=state, next_attempt_at=next_attempt_at,
                lease_until=None, lease_owner=None, revision=d.c.revision + 1,
                last_status=status_code, last_error=error[:2000],
                finished_at=now if done else None)).rowcount
            if not moved or not done:
                return None
            if state == "succeeded":
                conn.execute(update(subs).where(subs.c.id == claimed.subscription_id)
                             .values(consecutive_failures=0))
                return None
            conn.execute(update(subs).where(subs.c.id == claimed.subscription_id)
                         .values(consecutive_failures=subs.c.consecutive_failures + 1))
            row = self._row(conn, claimed.subscription_id)
            if row.enabled and row.consecutive_failures >= disable_after:
                reason = (f"disabled after {row.consecutive_failures} consecutive failed "
                          f"deliveries (last: {error[:200] or status_code})")
                conn.execute(update(subs).where(subs.c.id == row.id, subs.c.enabled.is_(True))
                             .values(enabled=False, disabled_reason=reason, updated_at=now))
                return subscription_record(self._row(conn, row.id))
            return None

    def pending_count(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(webhook_deliveries)
                                .where(webhook_deliveries.c.state == "pending")).scalar_one()


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


__all__ = ["Claimed", "WebhookStore", "enqueue_event"]
