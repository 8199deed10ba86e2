"""API keys: random tokens shown once, stored hashed, checked in constant time.

A token looks like ``mr_<prefix>_<secret>``: the prefix finds the row, the sha256 of the whole
token is compared with ``hmac.compare_digest``.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import func, insert, select, update

from errors import FailedPrecondition, InvalidArgument, NotFound
from storage.database import Database
from storage.events import record_event
from storage.records import ROLES, ApiKeyRecord, Principal
from storage.schema import api_keys, auth_state, utcnow


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(id=row.id, name=row.name, prefix=row.prefix, role=row.role,
                        created_at=row.created_at, revoked_at=row.revoked_at)


class KeyStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    def create(self, name: str, role: str, actor: str = "system") -> tuple[ApiKeyRecord, str]:
        """Create a key; returns (key, token). The token is shown this once and never stored."""
        if role not in ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(ROLES)}")
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidArgument("key name must be 1-128 characters")
        prefix = secrets.token_hex(6)
        token = f"mr_{prefix}_{secrets.token_urlsafe(32)}"
        with self.db.transaction() as conn:
            key_id = conn.execute(insert(api_keys).values(
                name=name, prefix=prefix, digest=_digest(token), role=role,
                created_at=utcnow())).inserted_primary_key[0]
            record_event(conn, "key.created", actor=actor, detail={"key": name, "role": role})
            # The first key switches authentication on for good (revoking keys never turns it
            # off again): one transaction with the key itself.
            conn.execute(update(auth_state).where(auth_state.c.id == 1,
                                                  auth_state.c.keys_required.is_(False))
                         .values(keys_required=True, since=utcnow()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
        return _key(row), token

    def list(self) -> list[ApiKeyRecord]:
        with self.db.read() as conn:
            return [_key(r) for r in conn.execute(select(api_keys).order_by(api_keys.c.id))]

    def revoke(self, key_id: int, actor: str = "system") -> ApiKeyRecord:
        if not 0 < key_id < 2**63:  # beyond any id the database can hold
            raise NotFound(f"api key {key_id} does not exist")
        with self.db.transaction() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise NotFound(f"api key {key_id} does not exist")
            # FOR UPDATE: two admins revoking each other at once cannot both succeed.
            if row.revoked_at is None and row.role == "admin" and len(conn.execute(
                    select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None),
                                                api_keys.c.role == "admin")
                    .with_for_update()).all()) <= 1:
                raise FailedPrecondition(
                    f"api key {key_id} is the last active admin key: revoking it would leave "
                    "nobody able to manage keys; create another admin key first",
                    details={"reason": "last_admin_key"})
            if row.revoked_at is None:
                conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                             .values(revoked_at=utcnow()))
                record_event(conn, "key.revoked", actor=actor, detail={"key": row.name})
            return _key(conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one())

    def active_count(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(api_keys)
                                .where(api_keys.c.revoked_at.is_(None))).scalar_one()

    def keys_required(self) -> bool:
        """Whether authentication is on for good (a key was ever created)."""
        with self.db.read() as conn:
            return bool(conn.execute(select(auth_state.c.keys_required)
                                     .where(auth_state.c.id == 1)).scalar())

    def verify(self, token: str) -> Principal | None:
        """The key's principal, or None for an unknown, malformed or revoked token."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "mr" or len(parts[1]) != 12:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.prefix == parts[1])).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.digest, _digest(token)):
            return None
        return Principal(row.name, row.role)
