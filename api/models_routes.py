"""Models, versions and aliases: parse, call the registry once, serialise."""
from __future__ import annotations

from flask import Blueprint
from spectree import Response

from api.schemas import (AliasBody, AliasEnvelope, ErrorOut, ListModelsQuery, ListVersionsQuery,
                         ModelEnvelope, ModelList, PatchModelBody, PatchVersionBody,
                         RegisterModelBody, RegisterVersionBody, VersionEnvelope, VersionList)
from api.services import actor, services
from api.spec import spec

bp = Blueprint("models", __name__, url_prefix="/api/models")
TAGS = ["models"]
E = {"HTTP_400": ErrorOut, "HTTP_404": ErrorOut}


@bp.post("/register")
@spec.validate(json=RegisterModelBody, resp=Response(HTTP_201=ModelEnvelope, HTTP_409=ErrorOut,
                                                      **E), tags=TAGS)
def register_model(json: RegisterModelBody):
    """Register a model."""
    model = services().registry.register_model(json.name, json.description, json.tags,
                                               json.metadata, actor=actor())
    return {"model": model}, 201


@bp.get("")
@spec.validate(query=ListModelsQuery, resp=Response(HTTP_200=ModelList, **E), tags=TAGS)
def list_models(query: ListModelsQuery):
    """List models by name: `q` name substring, `tag=key:value`, keyset pagination."""
    models, token = services().registry.list_models(query.q, query.tag, query.limit,
                                                    query.page_token)
    return {"models": models, "next_page_token": token}


@bp.get("/<name>")
@spec.validate(resp=Response(HTTP_200=ModelEnvelope, **E), tags=TAGS)
def get_model(name: str):
    """One model."""
    return {"model": services().registry.get_model(name)}


@bp.patch("/<name>")
@spec.validate(json=PatchModelBody, resp=Response(HTTP_200=ModelEnvelope, **E), tags=TAGS)
def patch_model(name: str, json: PatchModelBody):
    """Change a model's description, tags or metadata."""
    model = services().registry.update_model(name, description=json.description, tags=json.tags,
                                             metadata=json.metadata, actor=actor())
    return {"model": model}


@bp.delete("/<name>")
@spec.validate(resp=Response("HTTP_204", HTTP_409=ErrorOut, **E), tags=TAGS)
def delete_model(name: str):
    """Delete a model and its versions (refused while it serves traffic)."""
    services().registry.delete_model(name, actor=actor())
    return "", 204


@bp.post("/<name>/versions/register")
@spec.validate(json=RegisterVersionBody, resp=Response(HTTP_201=VersionEnvelope,
                                                        HTTP_409=ErrorOut, **E), tags=TAGS)
def register_version(name: str, json: RegisterVersionBody):
    """Register a version (SemVer 2.0.0). Its provider, config and artifact are immutable."""
    version = services().registry.register_version(
        name, json.version, json.status, json.description, json.tags, json.metadata,
        json.provider, json.config, actor=actor())
    return {"version": version}, 201


@bp.get("/<name>/versions")
@spec.validate(query=ListVersionsQuery, resp=Response(HTTP_200=VersionList, **E), tags=TAGS)
def list_versions(name: str, query: ListVersionsQuery):
    """Versions newest first by SemVer precedence; filters `status` and `range` (npm syntax)."""
    versions, token = services().registry.list_versions_page(
        name, query.status, query.range, query.limit, query.page_token)
    return {"versions": versions, "next_page_token": token}


@bp.get("/<name>/versions/<path:ref>")
@spec.validate(resp=Response(HTTP_200=VersionEnvelope, **E), tags=TAGS)
def get_version(name: str, ref: str):
    """One version by exact version, `latest`, alias or range (the highest match)."""
    return {"version": services().registry.get_version(name, ref)}


@bp.patch("/<name>/versions/<path:ref>")
@spec.validate(json=PatchVersionBody, resp=Response(HTTP_200=VersionEnvelope, **E), tags=TAGS)
def patch_version(name: str, ref: str, json: PatchVersionBody):
    """Change a version's status, description, tags or metadata."""
    version = services().registry.update_version(
        name, ref, status=json.status, description=json.description, tags=json.tags,
        metadata=json.metadata, actor=actor())
    return {"version": version}


@bp.put("/<name>/aliases/<alias>")
@spec.validate(json=AliasBody, resp=Response(HTTP_200=AliasEnvelope, **E), tags=TAGS)
def put_alias(name: str, alias: str, json: AliasBody):
    """Point an alias (e.g. `production`) at a version."""
    return {"alias": services().registry.set_alias(name, alias, json.version, actor=actor())}


@bp.delete("/<name>/aliases/<alias>")
@spec.validate(resp=Response("HTTP_204", **E), tags=TAGS)
def delete_alias(name: str, alias: str):
    """Remove an alias."""
    services().registry.delete_alias(name, alias, actor=actor())
    return "", 204
