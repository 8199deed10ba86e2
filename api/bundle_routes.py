"""Admin export and import of the whole registry as one bundle file (see registry/bundle.py)."""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

from flask import Blueprint, Response as FlaskResponse, request
from spectree import Response

from api.schemas import ErrorOut, ImportQuery, ImportReport
from api.services import services
from api.spec import EXTRA_OPERATIONS, spec
from registry.bundle import export_bundle, import_bundle

bp = Blueprint("bundle", __name__, url_prefix="/api")
TAGS = ["bundle"]

EXTRA_OPERATIONS["/api/export"] = {"get": {
    "summary": "Export the whole registry as one bundle file (admin).",
    "operationId": "export_bundle", "tags": TAGS,
    "responses": {"200": {"description": "a zip: manifest.json and artifacts/<sha256>",
                          "content": {"application/zip": {"schema": {
                              "type": "string", "format": "binary"}}}}}}}


@bp.get("/export")
def export():
    """Export the whole registry as one bundle file (admin)."""
    svc = services()
    # A temporary file, not memory: artifacts can be large.
    tmp = tempfile.TemporaryFile()
    try:
        export_bundle(svc.database, svc.artifacts, tmp)
    except BaseException:
        tmp.close()
        raise
    size = tmp.tell()
    tmp.seek(0)
    return FlaskResponse(_stream(tmp), mimetype="application/zip", headers={
        "Content-Length": str(size),
        "Content-Disposition": "attachment; filename=registry-bundle.zip"})


def _stream(tmp: IO[bytes]) -> Iterator[bytes]:
    """The file's bytes; the file is closed (and so deleted) once sent or when the answer is
    closed early, not left to the garbage collector."""
    with tmp:
        while chunk := tmp.read(1 << 20):
            yield chunk


@bp.post("/import")
@spec.validate(query=ImportQuery, resp=Response(HTTP_200=ImportReport, HTTP_400=ErrorOut,
                                                HTTP_409=ErrorOut, HTTP_413=ErrorOut),
               tags=TAGS)
def import_(query: ImportQuery):
    """Import a bundle (the raw zip as the body) all or nothing (admin); `?dry_run=true`
    checks and reports without changing anything. A damaged artifact or a clash with what
    exists answers 409 with every problem in `details.problems`."""
    svc = services()
    request.max_content_length = svc.settings.max_bundle_bytes
    with tempfile.TemporaryFile() as tmp:
        while chunk := request.stream.read(1 << 20):
            tmp.write(chunk)
        tmp.seek(0)
        report = import_bundle(svc.database, svc.artifacts, tmp, dry_run=query.dry_run)
    return {"import": report}
