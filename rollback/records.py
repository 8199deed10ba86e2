"""What the snapshot store returns: frozen, typed records (the house convention, see
``registry/records.py`` and the README's "What stores return").

``SnapshotRecord`` is a whole snapshot with the serving state it recorded; ``SnapshotSummary``
is a list item, which carries a short summary instead of the state (a global snapshot of many
models is megabytes; issue 21). ``as_dict()`` is the wire shape, called by ``SnapshotManager``
(the public API) at its edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.schema import iso


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    model: str | None          # None: a snapshot of every model
    automatic: bool            # taken before a deployment, not by hand
    state: dict[str, Any]      # {"models": {name: {statuses, aliases, traffic, active_deployment}}}
    reason: str
    actor: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "automatic": self.automatic,
                "state": self.state, "reason": self.reason, "actor": self.actor,
                "created_at": iso(self.created_at)}


@dataclass(frozen=True)
class SnapshotSummary:
    id: str
    model: str | None
    automatic: bool
    summary: dict[str, Any]    # {"model_count": n, "models": {name: weights}} (first few)
    reason: str
    actor: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "automatic": self.automatic,
                "summary": self.summary, "reason": self.reason, "actor": self.actor,
                "created_at": iso(self.created_at)}
