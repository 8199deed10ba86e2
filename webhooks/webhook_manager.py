"""Webhook subscriptions as the API offers them: validated, secrets generated and shown once,
the delivery log paged, tests and redeliveries queued (the background sender sends them)."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from errors import InvalidArgument
from shared.pagination import check_limit, decode_token, encode_token
from storage.schema import utcnow
from webhooks.events import TEST_EVENT, check_patterns
from webhooks.payloads import KINDS, render
from webhooks.records import Delivery, Subscription
from webhooks.url_safety import Destinations
from webhooks.webhook_store import WebhookStore, new_delivery_id

MAX_SECRET = 256
MIN_SECRET = 16
# What each kind subscribes to when ``events`` is not given.
DEFAULT_EVENTS = {"generic": ["*"], "slack": ["*"],
                  "pagerduty": ["alert.*", "rollback.performed"]}


class WebhookManager:
    def __init__(self, store: WebhookStore, destinations: Destinations, *,
                 on_enabled: Callable[[Subscription], Any] | None = None) -> None:
        self.store = store
        self.destinations = destinations
        self.on_enabled = on_enabled

    def create(self, *, url: str, kind: str = "generic", events: list[str] | None = None,
               model: str | None = None, description: str = "", secret: str | None = None,
               enabled: bool = True, actor: str = "system") -> tuple[Subscription, str]:
        """Returns (subscription, secret): the only time the secret is shown. PagerDuty's
        secret is the integration's routing key and must be given."""
        _check_kind(kind)
        self.destinations.check_url(url)
        if secret is None:
            if kind == "pagerduty":
                raise InvalidArgument("a pagerduty webhook needs 'secret': the Events API v2 "
                                      "integration (routing) key")
            secret = "whsec_" + secrets.token_urlsafe(32)
        elif not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
            raise InvalidArgument(f"secret must be {MIN_SECRET}-{MAX_SECRET} characters")
        chosen = check_patterns(events if events is not None else DEFAULT_EVENTS[kind])
        sub = self.store.create(url=url, kind=kind, events=chosen, model=model,
                                description=description, secret=secret, enabled=enabled,
                                actor=actor)
        return sub, secret

    def get(self, subscription_id: str) -> Subscription:
        return self.store.get(subscription_id)

    def list(self, limit: int = 50, page_token: str | None = None
             ) -> tuple[list[Subscription], str | None]:
        limit = check_limit(limit, 50)
        after = decode_token(page_token)
        if after is not None and not isinstance(after, str):
            raise InvalidArgument("page_token is not a token this server issued")
        rows = self.store.list(limit=limit + 1, after=after)
        page = rows[:limit]
        return page, (encode_token(page[-1].id) if len(rows) > limit else None)

    def update(self, subscription_id: str, **changes: Any) -> Subscription:
        """Change url, events, model, description or enabled; enabling clears the failures.
        ``model=None`` widens the subscription to every model."""
        for name in ("url", "events", "description", "enabled"):
            if name in changes and changes[name] is None:
                raise InvalidArgument(f"{name} cannot be null")
        if "url" in changes:
            self.destinations.check_url(changes["url"])
        if "events" in changes:
            changes["events"] = check_patterns(changes["events"])
        sub = self.store.update(subscription_id, changes)
        if changes.get("enabled") is True and self.on_enabled is not None:
            self.on_enabled(sub)
        return sub

    def delete(self, subscription_id: str) -> None:
        self.store.delete(subscription_id)

    def deliveries(self, subscription_id: str, limit: int = 50,
                   page_token: str | None = None) -> tuple[list[Delivery], str | None]:
        limit = check_limit(limit, 50)
        before = decode_token(page_token)
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise InvalidArgument("page_token is not a token this server issued")
        rows = self.store.deliveries(subscription_id, limit=limit + 1, before_seq=before)
        page = rows[:limit]
        token = encode_token(page[-1].seq) if len(rows) > limit else None
        return page, token

    def delivery(self, subscription_id: str, delivery_id: str) -> Delivery:
        return self.store.delivery(subscription_id, delivery_id)

    def test(self, subscription_id: str) -> Delivery:
        """Queue a ``webhook.test`` delivery; the sender sends it within a beat."""
        sub = self.store.get(subscription_id)
        message_id = new_delivery_id()
        data = {"model": None, "version": None, "deployment_id": None, "actor": "system",
                "reason": "", "detail": {"message": "test delivery from the model registry"}}
        body = render(sub.kind, message_id, TEST_EVENT, utcnow(), data)
        assert body is not None     # every kind renders the test event
        return self.store.enqueue(subscription_id, event=TEST_EVENT, body=body,
                                  message_id=message_id)

    def redeliver(self, subscription_id: str, delivery_id: str) -> Delivery:
        """Queue the original body again, with the original delivery id (receivers that
        deduplicate see the same message)."""
        original = self.store.delivery(subscription_id, delivery_id)
        assert original.body is not None     # read in full above
        return self.store.enqueue(subscription_id, event=original.event, body=original.body,
                                  message_id=original.message_id, model=original.model,
                                  redelivery_of=original.id)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {KINDS}, got {kind!r}")
