"""What the webhook store returns: frozen, typed records, as the registry store does
(``registry/records.py``, the README's "What stores return"). The REST views serialise them with
``as_dict()``; the secret of a subscription is never in a record (only ``Claimed``, which the
sender needs to sign, holds it, and it has no ``as_dict``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from storage.schema import iso


def shown_url(kind: str, url: str) -> str:
    """A Slack incoming-webhook URL is itself the credential: only its host and last
    characters are shown."""
    if kind != "slack":
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…{parts.path[-4:]}"


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str                  # the full URL (``as_dict`` shortens a Slack one)
    kind: str
    events: tuple[str, ...]
    model: str | None
    description: str
    enabled: bool
    consecutive_failures: int
    disabled_reason: str
    actor: str
    created_at: datetime
    updated_at: datetime

    @property
    def public_url(self) -> str:
        """The URL as responses and logs may show it (a Slack one shortened)."""
        return shown_url(self.kind, self.url)

    def as_dict(self) -> dict[str, Any]:
        """The public view: never the secret, a Slack URL shortened."""
        return {"id": self.id, "url": self.public_url, "kind": self.kind,
                "events": list(self.events), "model": self.model,
                "description": self.description, "enabled": self.enabled,
                "consecutive_failures": self.consecutive_failures,
                "disabled_reason": self.disabled_reason, "actor": self.actor,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at)}


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery, as the delivery log shows it."""

    number: int
    at: datetime
    status_code: int | None
    latency_ms: float
    outcome: str              # succeeded | retry | failed
    error: str
    response_excerpt: str

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "at": iso(self.at), "status_code": self.status_code,
                "latency_ms": round(self.latency_ms, 3), "outcome": self.outcome,
                "error": self.error, "response_excerpt": self.response_excerpt}


@dataclass(frozen=True)
class Delivery:
    """One queued message to one subscription. ``body`` and ``attempt_log`` are filled when
    one delivery is read in full (None in lists)."""

    id: str
    message_id: str           # the id receivers deduplicate by (kept by redeliveries)
    subscription_id: str
    event: str
    event_id: int | None
    model: str | None
    state: str                # pending | succeeded | failed
    attempts: int
    last_status: int | None
    last_error: str
    redelivery_of: str | None
    seq: int                  # the outbox order, the delivery log's keyset cursor
    created_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime | None
    body: str | None = None
    attempt_log: tuple[Attempt, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "message_id": self.message_id,
            "subscription_id": self.subscription_id, "event": self.event,
            "event_id": self.event_id, "model": self.model, "state": self.state,
            "attempts": self.attempts, "last_status": self.last_status,
            "last_error": self.last_error, "redelivery_of": self.redelivery_of,
            "created_at": iso(self.created_at), "finished_at": iso(self.finished_at),
            "next_attempt_at": iso(self.next_attempt_at)}
        if self.body is not None:
            out["body"] = self.body
        if self.attempt_log is not None:
            out["attempt_log"] = [a.as_dict() for a in self.attempt_log]
        return out


@dataclass(frozen=True)
class Claimed:
    """A delivery this process holds the lease of, with what it needs to send it."""

    id: str
    message_id: str
    subscription_id: str
    event: str
    body: str
    attempts: int
    url: str
    kind: str
    secret: str
    owner: str
