"""The background sender: delivers the outbox, at least once, each delivery by one process.

``tick()`` runs on the server's background ticker (``api/background.py``). It leases due
deliveries (``WebhookStore.claim``: a guarded UPDATE, so of several processes one wins each) and
hands them to a bounded pool of worker threads; the ticker itself never waits on a receiver. At
most one delivery per subscription is in flight in a process, and a subscription's deliveries go
out in the order their events happened. Each request has a timeout; a slow or hanging receiver
holds one worker until then and delays nothing else.

Outcomes: 2xx is delivered; 5xx, 429 and network errors are retried with exponential backoff and
jitter (429 and 503 honour ``Retry-After``), up to ``webhook_max_attempts``, then the delivery is
failed; any other answer (4xx, a redirect, which is never followed) and a refused destination
fail at once. After ``webhook_disable_after`` consecutive failed deliveries the subscription is
disabled and ``on_disabled`` is told (the server raises an alert). A process killed mid-send
leaves a lease that runs out; the delivery is then sent again with the same delivery id.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from config import Settings
from storage.schema import utcnow
from webhooks.payloads import prepare
from webhooks.url_safety import Destinations, RefusedDestination, guarded_adapter
from webhooks.records import Claimed, Subscription
from webhooks.webhook_store import WebhookStore

log = logging.getLogger(__name__)
EXCERPT_BYTES = 1024
_LEASE_MARGIN_S = 5.0
_DRAIN_BUDGET = 100   # deliveries one worker sends for a subscription before yielding


class WebhookSender:
    def __init__(self, store: WebhookStore, settings: Settings, *,
                 on_disabled: Callable[[Subscription], Any] | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.settings = settings
        self.destinations = Destinations(settings.webhook_allowed_http_hosts,
                                         settings.webhook_allow_private)
        self.on_disabled = on_disabled
        self.clock = clock
        self.jitter = jitter
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.workers = max(1, settings.webhook_workers)
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.trust_env = False       # no proxy from the environment: we checked the host
        adapter = guarded_adapter(self.destinations, self.workers)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @property
    def lease_s(self) -> float:
        """Longer than any one attempt can take, so a live sender never loses its lease."""
        return 2 * self.settings.webhook_timeout_s + _LEASE_MARGIN_S

    # -- driving ---------------------------------------------------------------------------------
    def tick(self) -> int:
        """Lease what is due and start sending it in the pool; returns how many started."""
        with self._lock:
            free = self.workers - len(self._inflight)
            busy = set(self._inflight)
        if free <= 0:
            return 0
        claimed = self.store.claim(owner=self.owner, now=self.clock(), lease_s=self.lease_s,
                                   limit=free, busy=busy)
        if not claimed:
            return 0
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="webhook-sender")
        for item in claimed:
            with self._lock:
                self._inflight.add(item.subscription_id)
            self._pool.submit(self._run, item)
        return len(claimed)

    def run_due(self) -> int:
        """Send what is due now in the calling thread (tests, tools); returns how many."""
        done = 0
        while True:
            claimed = self.store.claim(owner=self.owner, now=self.clock(),
                                       lease_s=self.lease_s, limit=self.workers, busy=set())
            if not claimed:
                return done
            for item in claimed:
                self.attempt(item)
            done += len(claimed)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def _run(self, item: Claimed) -> None:
        """Send ``item``, then the subscription's next due deliveries (up to a budget), without
        waiting for the next beat: a busy subscription drains at the receiver's pace. At the
        budget it yields before leasing another (a leased delivery left unsent would wait for
        its lease to run out)."""
        current: Claimed | None = item
        try:
            for sent in range(1, _DRAIN_BUDGET + 1):
                if current is None or self.attempt(current) == "retry" or sent == _DRAIN_BUDGET:
                    break
                current = next(iter(self.store.claim(
                    owner=self.owner, now=self.clock(), lease_s=self.lease_s, limit=1,
                    busy=set(), subscription_id=item.subscription_id)), None)
        except Exception:   # the lease runs out and another attempt follows
            log.exception("webhook delivery of %s failed unexpectedly", item.subscription_id)
        finally:
            with self._lock:
                self._inflight.discard(item.subscription_id)

    # -- one attempt -------------------------------------------------------------------------------
    def attempt(self, item: Claimed) -> str:
        """Send ``item`` once, log the attempt, and schedule what follows; returns the outcome
        (``succeeded``, ``retry`` or ``failed``)."""
        host = urlsplit(item.url).hostname or "?"
        status: int | None = None
        excerpt = error = ""
        retry_after: float | None = None
        started = time.monotonic()
        try:
            self.destinations.check_url(item.url)
            body, headers = prepare(item.kind, item.body, item.secret, item.message_id,
                                    str(int(time.time())))
            timeout = self.settings.webhook_timeout_s
            with self._session.post(item.url, data=body, headers=headers, timeout=timeout,
                                    allow_redirects=False, stream=True) as response:
                status = response.status_code
                excerpt = _excerpt(response)
                retry_after = _retry_after(response.headers.get("Retry-After"), self.clock())
            if 200 <= status < 300:
                outcome = "succeeded"
            elif status == 429 or status >= 500:
                outcome, error = "retry", f"HTTP {status}"
            else:
                outcome = "failed"
                error = (f"HTTP {status}: redirects are not followed" if 300 <= status < 400
                         else f"HTTP {status}")
        except RefusedDestination as exc:
            outcome, error = "failed", str(exc)
        except (requests.RequestException, ConnectionError, OSError) as exc:
            outcome, error = "retry", _describe(exc, item.url, host)
        latency_ms = (time.monotonic() - started) * 1000
        now = self.clock()
        next_at: datetime | None = None
        if outcome == "retry":
            if item.attempts + 1 >= self.settings.webhook_max_attempts:
                outcome = "failed"
                error = f"{error}; gave up after {item.attempts + 1} attempts"
            else:
                next_at = now + timedelta(seconds=self.delay(item.attempts + 1, retry_after))
        disabled = self.store.finish_attempt(
            item, now=now, outcome=outcome, status_code=status, latency_ms=latency_ms,
            error=error, excerpt=excerpt, next_attempt_at=next_at,
            disable_after=self.settings.webhook_disable_after)
        log.info("webhook delivery %s (%s) to %s: attempt %d %s%s", item.id, item.event, host,
                 item.attempts + 1, outcome, f" ({error})" if error else "")
        if disabled is not None:
            log.warning("webhook %s disabled: %s", disabled.id, disabled.disabled_reason)
            if self.on_disabled is not None:
                self.on_disabled(disabled)
        return outcome

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before the next attempt: base·2^(attempt-1), capped, with jitter (half
        fixed, half random); a receiver's ``Retry-After`` wins when it is longer."""
        cap = self.settings.webhook_backoff_max_s
        step = min(cap, self.settings.webhook_backoff_base_s * 2 ** (attempt - 1))
        wait = step / 2 + step / 2 * self.jitter()
        if retry_after is not None:
            wait = max(wait, min(cap, retry_after))
        return wait


def _excerpt(response: requests.Response) -> str:
    try:
        raw = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
    except Exception:
        return ""
    return raw.decode("utf-8", errors="replace")


def _retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds, or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _describe(exc: BaseException, url: str, host: str) -> str:
    """The error without the URL's path and query (a Slack webhook URL is itself a secret)."""
    text = f"{type(exc).__name__}: {exc}"
    parts = urlsplit(url)
    for secret_part in (url, parts.path, parts.query):
        if secret_part and len(secret_part) > 1:
            text = text.replace(secret_part, "/…" if secret_part != url else host)
    return text[:500]
