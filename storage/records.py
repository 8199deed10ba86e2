"""What the storage-layer stores return: frozen, typed records (the house convention, see
``registry/records.py`` and the README's "What stores return").

``KeyStore`` returns ``ApiKeyRecord`` (never the token or its digest) and, for a verified
token, the caller's ``Principal``. ``ApiKeyRecord.as_dict()`` is the wire shape, called by the
keys endpoints and the ``flask keys`` CLI at their edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.schema import iso

ROLES = ("read", "write", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and role."""

    name: str
    role: str

    def allows(self, needed: str) -> bool:
        return _RANK[self.role] >= _RANK[needed]


@dataclass(frozen=True)
class ApiKeyRecord:
    """One API key as stored, without its secret."""

    id: int
    name: str
    prefix: str                # the token's public part, which finds the row
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "role": self.role,
                "created_at": iso(self.created_at), "revoked_at": iso(self.revoked_at),
                "active": self.active}
