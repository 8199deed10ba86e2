"""Version artifacts: raw bytes in and out, streamed, content-addressed by sha256."""
from __future__ import annotations

from flask import Blueprint, redirect, request, send_file
from spectree import Response

from api.schemas import ErrorOut, VersionEnvelope
from api.services import actor, services
from api.spec import EXTRA_OPERATIONS, spec
from errors import InvalidArgument, NotFound

bp = Blueprint("artifacts", __name__, url_prefix="/api/models")
TAGS = ["artifacts"]


@bp.put("/<name>/versions/<version>/artifact")
@spec.validate(resp=Response(HTTP_201=VersionEnvelope, HTTP_400=ErrorOut, HTTP_404=ErrorOut,
                             HTTP_409=ErrorOut, HTTP_413=ErrorOut), tags=TAGS)
def put_artifact(name: str, version: str):
    """Upload a version's artifact (e.g. an .onnx file) as the raw request body.

    Stored by sha256 (the ETag); the same bytes again is a no-op, other bytes 409: a version's
    content is immutable."""
    svc = services()
    svc.registry.get_version(name, version)  # 404 before reading a large body
    request.max_content_length = svc.settings.max_artifact_bytes
    digest, size = svc.artifacts.put_stream(request.stream, svc.settings.max_artifact_bytes)
    if size == 0:
        raise InvalidArgument("the artifact is empty: send the file as the request body, e.g. "
                              "curl --data-binary @model.onnx")
    updated = svc.registry.attach_artifact(name, version, digest, size, actor=actor())
    return {"version": updated}, 201, {"ETag": f'"{digest}"'}


EXTRA_OPERATIONS["/api/models/{name}/versions/{version}/artifact"] = {"get": {
    "summary": "Download a version's artifact (verified against its digest first).",
    "operationId": "get_artifact", "tags": TAGS,
    "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                   for p in ("name", "version")],
    "responses": {
        "200": {"description": "the bytes; ETag is the sha256",
                "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                    "format": "binary"}}}},
        "302": {"description": "redirect to a presigned S3 URL (S3_PRESIGN_DOWNLOADS=true)"},
        "304": {"description": "not modified (If-None-Match matched)"},
        **{code: {"description": "error", "content": {"application/json": {"schema": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object"}}}}}} for code in ("404", "409")},
    }}}


@bp.get("/<name>/versions/<version>/artifact")
def get_artifact(name: str, version: str):
    """Download a version's artifact (verified against its digest first)."""
    svc = services()
    found = svc.registry.get_version(name, version)
    if not found["artifact"]:
        raise NotFound(f"version '{found['version']}' of model '{name}' has no artifact")
    digest = found["artifact"]["digest"]
    url = svc.artifacts.download_url(digest)  # S3_PRESIGN_DOWNLOADS (issue 20)
    if url is not None:
        return redirect(url, 302), {"ETag": f'"{digest}"'}
    return send_file(svc.artifacts.open(digest), mimetype="application/octet-stream",
                     as_attachment=True, etag=digest, conditional=True,
                     download_name=f"{name}-{found['version']}.bin")
