"""Admin export and import of the whole registry as one bundle file (see registry/bundle.py)."""
from __future__ import annotations

import tempfile

from flask import Blueprint, request, send_file
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
    # A temporary file, not memory: artifacts can be large. Deleted when the answer is sent.
    tmp = tempfile.TemporaryFile()
    export_bundle(svc.database, svc.artifacts, tmp)
    tmp.seek(0)
    return send_file(tmp, mimetype="application/zip", as_attachment=True,
                     download_name="registry-bundle.zip")


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
