"""API keys (admin role): create (the token is shown once), list, revoke."""
from __future__ import annotations

from flask import Blueprint
from spectree import Response

from api.schemas import CreateKeyBody, ErrorOut, KeyEnvelope, KeyList
from api.services import actor, authenticator, services
from api.spec import spec

bp = Blueprint("keys", __name__, url_prefix="/api/keys")
TAGS = ["keys"]


@bp.post("")
@spec.validate(json=CreateKeyBody, resp=Response(HTTP_201=KeyEnvelope, HTTP_400=ErrorOut),
               tags=TAGS)
def create_key(json: CreateKeyBody):
    """Create a key; the response carries the token, which is never shown again."""
    key, token = services().keys.create(json.name, json.role, actor=actor())
    authenticator().invalidate()
    return {"key": key.as_dict(), "token": token}, 201


@bp.get("")
@spec.validate(resp=Response(HTTP_200=KeyList), tags=TAGS)
def list_keys():
    """Every key, without tokens."""
    return {"keys": [key.as_dict() for key in services().keys.list()]}


@bp.delete("/<int:key_id>")
@spec.validate(resp=Response(HTTP_200=KeyEnvelope, HTTP_404=ErrorOut, HTTP_409=ErrorOut),
               tags=TAGS)
def revoke_key(key_id: int):
    """Revoke a key (it stops working within 5 seconds on every worker). The last active
    admin key cannot be revoked (409): create another admin key first. Revoking keys never
    turns authentication off."""
    key = services().keys.revoke(key_id, actor=actor())
    authenticator().invalidate()
    return {"key": key.as_dict()}
