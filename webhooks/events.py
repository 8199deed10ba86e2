"""The public event names webhooks carry, and the subscription patterns that select them.

Internal event kinds (the ``events`` audit rows) are mapped to a small, stable public vocabulary;
kinds without a public name (traffic changes, API keys, ...) are never sent.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from errors import InvalidArgument

# internal kind -> public event name
PUBLIC_NAMES: dict[str, str] = {
    "model.registered": "model.created",
    "model.updated": "model.updated",
    "model.deleted": "model.deleted",
    "version.registered": "version.created",
    "version.updated": "version.updated",
    "version.artifact": "version.updated",
    "alias.set": "alias.set",
    "alias.deleted": "alias.deleted",
    "deployment.created": "deployment.started",
    "deployment.step": "deployment.step",
    "deployment.succeeded": "deployment.succeeded",
    "deployment.aborted": "deployment.aborted",
    "deployment.failed": "deployment.failed",
    "deployment.superseded": "deployment.superseded",   # a forced deploy replaced a rollout
    "rollback.recorded": "rollback.performed",
    "alert.raised": "alert.raised",
    "alert.resolved": "alert.resolved",
    # issue 16's budgets: once per budget, UTC period and threshold, written by the metrics
    # flush that stored the spend crossing the limit (tracking.spend_store)
    "budget.soft_limit_reached": "budget.soft_limit_reached",
    "budget.hard_limit_reached": "budget.hard_limit_reached",
}
PUBLIC_EVENTS: tuple[str, ...] = tuple(dict.fromkeys(PUBLIC_NAMES.values()))
TEST_EVENT = "webhook.test"
MAX_PATTERNS = 50


def public_name(kind: str) -> str | None:
    return PUBLIC_NAMES.get(kind)


def matches(patterns: Iterable[str], event: str) -> bool:
    """``*`` matches everything, ``deployment.*`` every deployment event, else exact names."""
    for pattern in patterns:
        if pattern == "*" or pattern == event:
            return True
        if pattern.endswith(".*") and event.startswith(pattern[:-1]):
            return True
    return False


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """The patterns, deduplicated; each must select at least one public event."""
    if not patterns:
        raise InvalidArgument("events must name at least one event or pattern, e.g. "
                              "['deployment.*', 'alert.raised']")
    if len(patterns) > MAX_PATTERNS:
        raise InvalidArgument(f"at most {MAX_PATTERNS} event patterns")
    for pattern in patterns:
        if not any(matches([pattern], event) for event in PUBLIC_EVENTS):
            raise InvalidArgument(f"event pattern {pattern!r} matches no event; events are "
                                  f"{', '.join(PUBLIC_EVENTS)} (wildcards: '*', 'alert.*')")
    return list(dict.fromkeys(patterns))
