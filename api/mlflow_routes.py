"""MLflow's Model Registry REST API (``/api/2.0/mlflow/...``), translated onto the one registry.

``mlflow.MlflowClient`` pointed at this server (``MLFLOW_TRACKING_URI``) works unchanged: GET
arguments come in the query string (repeated fields repeated), every other method sends JSON,
DELETE included. Versions: MLflow's integer ``version`` is the version's ``number`` (1, 2, 3...
per model, never reused); its SemVer is the ``semver`` field and tag. Wherever a version comes
in, all digits is that number, anything else is resolved as this registry resolves a reference
(a SemVer, ``latest``, an alias or a range such as ``^1.2``). Errors have MLflow's shape,
``{"error_code", "message"}``, and bad input is always a 400: MLflow's client retries 5xx.
"""
from __future__ import annotations

import posixpath
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, request, send_file
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from api.errors import describe_validation_error
from api.mlflow_filter import MODEL_KEYS, VERSION_KEYS, exact_name, parse_filter
from api.services import actor, services
from api.spec import EXTRA_OPERATIONS
from errors import AlreadyExists, InvalidArgument, NotFound, RegistryError
from models.mlflow_model import MLMODEL_FILE, ONNX_FILE, mlmodel_descriptor
from registry.metadata_store import VersionKey
from registry.pagination import MAX_PAGE_SIZE, decode_token, encode_token

bp = Blueprint("mlflow", __name__, url_prefix="/api/2.0/mlflow")
artifacts_bp = Blueprint("mlflow_artifacts", __name__,
                         url_prefix="/api/2.0/mlflow-artifacts/artifacts")

SEMVER_TAG = "semver"
ARTIFACT_PREFIX = "registry"
# Our error codes in MLflow's words, with the status MLflow's own server gives them.
MLFLOW_ERRORS: dict[str, tuple[str, int]] = {
    "INVALID_ARGUMENT": ("INVALID_PARAMETER_VALUE", 400),
    "NOT_FOUND": ("RESOURCE_DOES_NOT_EXIST", 404),
    "ALREADY_EXISTS": ("RESOURCE_ALREADY_EXISTS", 400),
    "FAILED_PRECONDITION": ("INVALID_STATE", 400),
    "UNAUTHENTICATED": ("UNAUTHENTICATED", 401),
    "PERMISSION_DENIED": ("PERMISSION_DENIED", 403),
    "TOO_LARGE": ("INVALID_PARAMETER_VALUE", 400),
    "UNSUPPORTED_MEDIA_TYPE": ("BAD_REQUEST", 400),
    "METHOD_NOT_ALLOWED": ("BAD_REQUEST", 400),
    "RESOURCE_EXHAUSTED": ("REQUEST_LIMIT_EXCEEDED", 429),
    "DATA_CORRUPTED": ("DATA_LOSS", 500),
}
_HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "ENDPOINT_NOT_FOUND", 405: "BAD_REQUEST", 413: "INVALID_PARAMETER_VALUE",
               415: "BAD_REQUEST"}


def _error(code: str, message: str, status: int) -> tuple[dict[str, str], int]:
    return {"error_code": code, "message": message}, status


def _registry_error(err: RegistryError) -> tuple[dict[str, str], int]:
    code, status = MLFLOW_ERRORS.get(err.code, ("INTERNAL_ERROR", 500))
    return _error(code, err.message, status)


def _validation_error(err: ValidationError) -> tuple[dict[str, str], int]:
    return _error("INVALID_PARAMETER_VALUE", describe_validation_error(err), 400)


def _http_error(err: HTTPException) -> tuple[dict[str, str], int]:
    status = err.code or 500
    # Anything a client did wrong is a 400 here: a 5xx would make MLflow's client retry.
    return _error(_HTTP_CODES.get(status, "BAD_REQUEST"), err.description or err.name,
                  status if status in (401, 403, 404) else 400)


for _bp in (bp, artifacts_bp):
    _bp.register_error_handler(RegistryError, _registry_error)
    _bp.register_error_handler(ValidationError, _validation_error)
    _bp.register_error_handler(HTTPException, _http_error)


# -- reading the request --------------------------------------------------------------------
def _args() -> dict[str, Any]:
    """GET: the query string (lists for repeated fields); other methods: the JSON body."""
    if request.method == "GET":
        return {k: (v if len(v) > 1 or k in ("order_by", "stages") else v[0])
                for k, v in request.args.to_dict(flat=False).items()}
    body = request.get_json(silent=True) if request.get_data(cache=True) else {}
    if body is None or not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _text(args: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = args.get(field)
    if value is None or value == "":
        if required:
            raise InvalidArgument(f"Missing value for required parameter '{field}'.")
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"Parameter '{field}' must be a string, got {value!r}.")
    return value


def _int(args: dict[str, Any], field: str, default: int, high: int) -> int:
    value = args.get(field, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"Parameter '{field}' must be an integer, got {value!r}.") from None
    if not 1 <= number <= high:
        raise InvalidArgument(f"Parameter '{field}' must be between 1 and {high}, got {number}.")
    return number


def _description(args: dict[str, Any]) -> str | None:
    """An update's description: absent leaves it as it is, "" clears it."""
    if "description" not in args:
        return None
    return _text(args, "description", required=False) or ""


def _tag_list(args: dict[str, Any]) -> dict[str, str]:
    tags = args.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str)
                                             for t in tags):
        raise InvalidArgument("tags must be a list of {\"key\", \"value\"} objects")
    return {t["key"]: "" if t.get("value") is None else str(t["value"]) for t in tags}


def _key(name: str, version: str) -> VersionKey:
    """MLflow's version string: all digits is the number, else any reference of ours."""
    registry = services().registry
    if version.isascii() and version.isdigit():
        return registry.resolve_number(name, int(version))
    return registry.resolve(name, version)


def _ref(name: str, version: str) -> str:
    """The exact SemVer a version string names (what the registry's own calls take)."""
    return _key(name, version).text


# -- writing the answer ---------------------------------------------------------------------
def _ms(iso: str | None) -> int | None:
    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _version_json(v: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": v["model"], "version": str(v["number"]), "semver": v["version"],
        "creation_timestamp": _ms(v["created_at"]),
        "last_updated_timestamp": _ms(v["updated_at"]),
        "current_stage": "None", "description": v["description"],
        "source": v["source"] or _download_uri(v), "run_id": v["run_id"] or "",
        "status": "READY", "status_message": v["status"],
        "tags": _tags({**v["tags"], SEMVER_TAG: v["version"]}),
        "aliases": v["aliases"],
    }


def _model_json(m: dict[str, Any]) -> dict[str, Any]:
    registry = services().registry
    aliases = registry.aliases(m["name"])
    out = {"name": m["name"], "creation_timestamp": _ms(m["created_at"]),
           "last_updated_timestamp": _ms(m["updated_at"]),
           "description": m["description"], "tags": _tags(m["tags"]),
           "aliases": [{"alias": a["alias"], "version": str(a["number"])} for a in aliases]}
    newest = registry.newest_number(m["name"])
    if newest is not None:
        out["latest_versions"] = [_version_json(registry.version_by_key(m["name"], newest))]
    return out


def _download_uri(v: dict[str, Any]) -> str:
    return f"mlflow-artifacts:/{ARTIFACT_PREFIX}/{v['model']}/{v['number']}"


def _page(rows: list[Any], args: dict[str, Any], default: int,
          high: int = MAX_PAGE_SIZE) -> tuple[list[Any], str | None]:
    limit = _int(args, "max_results", default, high)
    offset = decode_token(args.get("page_token")) or 0
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgument("page_token is not a token this server issued")
    page = rows[offset:offset + limit]
    return page, encode_token(offset + limit) if offset + limit < len(rows) else None


def _sort(rows: list[dict[str, Any]], order_by: Any, allowed: dict[str, str],
          default: list[str]) -> list[dict[str, Any]]:
    """Sort by MLflow's ``order_by`` clauses ("name ASC", "version_number DESC", ...)."""
    clauses = order_by if isinstance(order_by, list) else [order_by] if order_by else []
    for clause in reversed(clauses + default):
        if not isinstance(clause, str):
            raise InvalidArgument(f"invalid order_by clause {clause!r}")
        parts = clause.split()
        field = parts[0] if parts else ""
        field = field[len("attributes."):] if field.startswith("attributes.") else field
        direction = parts[1].upper() if len(parts) > 1 else "ASC"
        if field not in allowed or direction not in ("ASC", "DESC") or len(parts) > 2:
            raise InvalidArgument(f"invalid order_by clause {clause!r}: use one of "
                                  f"{', '.join(allowed)} with ASC or DESC")
        rows.sort(key=lambda r, f=allowed[field]: r[f], reverse=direction == "DESC")
    return rows


# -- registered models ----------------------------------------------------------------------
@bp.post("/registered-models/create")
def create_registered_model():
    args = _args()
    model = services().registry.register_model(
        _text(args, "name"), _text(args, "description", required=False) or "",
        _tag_list(args), actor=actor())
    return {"registered_model": _model_json(model)}


@bp.get("/registered-models/get")
def get_registered_model():
    name = _text(_args(), "name")
    return {"registered_model": _model_json(services().registry.get_model(name))}


@bp.patch("/registered-models/update")
def update_registered_model():
    args = _args()
    model = services().registry.update_model(_text(args, "name"),
                                             description=_description(args), actor=actor())
    return {"registered_model": _model_json(model)}


@bp.post("/registered-models/rename")
def rename_registered_model():
    args = _args()
    model = services().registry.rename_model(_text(args, "name"), _text(args, "new_name"),
                                             actor=actor())
    return {"registered_model": _model_json(model)}


@bp.delete("/registered-models/delete")
def delete_registered_model():
    services().registry.delete_model(_text(_args(), "name"), actor=actor())
    return {}


def _all_models() -> list[dict[str, Any]]:
    registry, token, out = services().registry, None, []
    while True:
        page, token = registry.list_models(limit=MAX_PAGE_SIZE, page_token=token)
        out.extend(page)
        if token is None:
            return out


@bp.get("/registered-models/search")
def search_registered_models():
    args = _args()
    matches = parse_filter(_text(args, "filter", required=False), MODEL_KEYS)
    rows = [dict(m, created_ms=_ms(m["created_at"]), updated_ms=_ms(m["updated_at"]))
            for m in _all_models() if matches(m)]
    rows = _sort(rows, args.get("order_by"),
                 {"name": "name", "timestamp": "created_ms", "creation_timestamp": "created_ms",
                  "last_updated_timestamp": "updated_ms"}, ["name ASC"])
    page, token = _page(rows, args, 100)
    out: dict[str, Any] = {"registered_models": [_model_json(m) for m in page]}
    if token:
        out["next_page_token"] = token
    return out


@bp.route("/registered-models/get-latest-versions", methods=["GET", "POST"])
def get_latest_versions():
    """The latest version per stage. Stages are not used here (every version is in stage
    "None"), so a requested "stage" that is a SemVer, ``latest``, an alias or a range is
    resolved instead: that is how ``models:/fraud/^1.2`` reaches this registry."""
    args = _args()
    name = _text(args, "name")
    stages = args.get("stages") or []
    stages = [stages] if isinstance(stages, str) else stages
    if not isinstance(stages, list):
        raise InvalidArgument(f"Parameter 'stages' must be a list of strings, got {stages!r}.")
    registry = services().registry
    keys: list[VersionKey] = []
    for stage in stages or ["None"]:
        if not isinstance(stage, str):
            raise InvalidArgument(f"invalid stage {stage!r}")
        if stage.lower() == "none":
            newest = registry.newest_number(name)
            keys += [newest] if newest is not None else []
            continue
        try:
            keys.append(registry.resolve(name, stage))
        except NotFound:
            registry.get_model(name)  # an unknown model is still RESOURCE_DOES_NOT_EXIST
    unique = list(dict.fromkeys(keys))
    return {"model_versions": [_version_json(registry.version_by_key(name, k)) for k in unique]}


@bp.post("/registered-models/set-tag")
def set_registered_model_tag():
    args = _args()
    services().registry.set_model_tag(_text(args, "name"), _text(args, "key"),
                                      str(args.get("value", "")), actor=actor())
    return {}


@bp.delete("/registered-models/delete-tag")
def delete_registered_model_tag():
    args = _args()
    services().registry.delete_model_tag(_text(args, "name"), _text(args, "key"), actor=actor())
    return {}


@bp.post("/registered-models/alias")
def set_registered_model_alias():
    args = _args()
    name = _text(args, "name")
    services().registry.set_alias(name, _text(args, "alias"), _ref(name, _text(args, "version")),
                                  actor=actor())
    return {}


@bp.delete("/registered-models/alias")
def delete_registered_model_alias():
    args = _args()
    services().registry.delete_alias(_text(args, "name"), _text(args, "alias"), actor=actor())
    return {}


@bp.get("/registered-models/alias")
def get_model_version_by_alias():
    args = _args()
    name, alias = _text(args, "name"), _text(args, "alias")
    registry = services().registry
    return {"model_version": _version_json(registry.version_by_key(
        name, registry.resolve(name, alias)))}


# -- model versions -------------------------------------------------------------------------
def check_source(source: str | None, artifact_root: Path) -> str | None:
    """Refuse a source with a ``..`` segment, or a local path outside the artifact root."""
    if source is None:
        return None
    parsed = urlparse(source)
    if ".." in source.replace("\\", "/").split("/"):
        raise InvalidArgument(f"source {source!r} contains '..': give the location itself")
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a path, or C:\ on Windows
        path = Path(parsed.path if parsed.scheme == "file" else source)
        root = artifact_root.resolve()
        try:
            resolved = path.resolve()
        except (ValueError, UnicodeError, OSError):   # a NUL, a lone surrogate, a bad path
            raise InvalidArgument(f"source {source!r} is not a usable path") from None
        if not resolved.is_relative_to(root):
            raise InvalidArgument(f"source {source!r} is a local path outside the artifact root "
                                  f"{str(root)!r}: refused")
    return source


@bp.post("/model-versions/create")
def create_model_version():
    """A new version. Its SemVer is the ``semver`` tag if given, else the next patch of the
    model's highest version (``1.0.0`` for the first)."""
    args = _args()
    svc = services()
    name = _text(args, "name")
    tags = _tag_list(args)
    semver = tags.pop(SEMVER_TAG, None)
    source = check_source(_text(args, "source", required=False), svc.settings.artifact_root)
    for attempt in range(5):
        try:
            created = svc.registry.register_version(
                name, semver or svc.registry.next_patch(name), status="experimental",
                description=_text(args, "description", required=False) or "", tags=tags,
                provider="onnx", source=source, run_id=_text(args, "run_id", required=False),
                actor=actor())
            break
        except AlreadyExists:
            if semver is not None or attempt == 4:  # a named SemVer that exists is a conflict
                raise
    return {"model_version": _version_json(created)}


@bp.get("/model-versions/get")
def get_model_version():
    args = _args()
    name = _text(args, "name")
    key = _key(name, _text(args, "version"))
    return {"model_version": _version_json(services().registry.version_by_key(name, key))}


@bp.patch("/model-versions/update")
def update_model_version():
    args = _args()
    name = _text(args, "name")
    updated = services().registry.update_version(
        name, _ref(name, _text(args, "version")), description=_description(args),
        actor=actor())
    return {"model_version": _version_json(updated)}


@bp.delete("/model-versions/delete")
def delete_model_version():
    args = _args()
    name = _text(args, "name")
    services().registry.delete_version(name, _ref(name, _text(args, "version")), actor=actor())
    return {}


@bp.post("/model-versions/transition-stage")
def transition_model_version_stage():
    raise InvalidArgument("stages are not supported (MLflow deprecated them): use aliases, "
                          "e.g. client.set_registered_model_alias(name, 'production', version)")


@bp.get("/model-versions/search")
def search_model_versions():
    args = _args()
    text = _text(args, "filter", required=False)
    matches = parse_filter(text, VERSION_KEYS)
    registry = services().registry
    pinned = exact_name(text)  # the usual "name='m'": read that model's versions only
    if pinned is not None:
        try:
            names = [registry.get_model(pinned)["name"]]
        except NotFound:
            names = []
    else:
        names = [m["name"] for m in _all_models()]
    rows = []
    for name in names:
        for v in registry.iter_versions(name):
            row = {"name": name, "version_number": v["number"], "run_id": v["run_id"],
                   "source_path": v["source"], "tags": {**v["tags"], SEMVER_TAG: v["version"]},
                   "created_ms": _ms(v["created_at"]), "updated_ms": _ms(v["updated_at"]),
                   "v": v}
            if matches(row):
                rows.append(row)
    rows = _sort(rows, args.get("order_by"),
                 {"name": "name", "version_number": "version_number",
                  "creation_timestamp": "created_ms", "timestamp": "created_ms",
                  "last_updated_timestamp": "updated_ms"},
                 ["last_updated_timestamp DESC", "name ASC", "version_number DESC"])
    # MLflow's client asks for 10,000 versions a page by default; its server allows 200,000.
    page, token = _page(rows, args, 10_000, 200_000)
    out: dict[str, Any] = {"model_versions": [_version_json(r["v"]) for r in page]}
    if token:
        out["next_page_token"] = token
    return out


@bp.get("/model-versions/get-download-uri")
def get_model_version_download_uri():
    """Where MLflow's client downloads the model from: this server's ``mlflow-artifacts``
    endpoints when the version has an artifact, else the ``source`` it was registered with."""
    args = _args()
    name = _text(args, "name")
    v = services().registry.version_by_key(name, _key(name, _text(args, "version")))
    if v["artifact"] is None and not v["source"]:
        raise NotFound(f"version {v['number']} ({v['version']}) of model '{name}' has no "
                       "artifact: upload one with PUT /api/models/{name}/versions/{version}/"
                       "artifact")
    return {"artifact_uri": _download_uri(v) if v["artifact"] else v["source"]}


@bp.post("/model-versions/set-tag")
def set_model_version_tag():
    args = _args()
    name, key = _text(args, "name"), _text(args, "key")
    if key == SEMVER_TAG:
        raise InvalidArgument("the 'semver' tag is the version's SemVer and cannot change")
    services().registry.set_version_tag(name, _ref(name, _text(args, "version")), key,
                                        str(args.get("value", "")), actor=actor())
    return {}


@bp.delete("/model-versions/delete-tag")
def delete_model_version_tag():
    args = _args()
    name, key = _text(args, "name"), _text(args, "key")
    if key == SEMVER_TAG:
        raise InvalidArgument("the 'semver' tag is the version's SemVer and cannot be deleted")
    services().registry.delete_version_tag(name, _ref(name, _text(args, "version")), key,
                                           actor=actor())
    return {}


@bp.route("/<path:rest>", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
def not_implemented(rest: str):
    """Any other MLflow endpoint (experiments, runs, logged models...): MLflow's own answer."""
    return _error("ENDPOINT_NOT_FOUND", f"{request.method} /api/2.0/mlflow/{rest} is not served "
                  "here: this server implements MLflow's Model Registry API only", 404)


# -- artifacts: a version as an MLflow model directory ----------------------------------------
def _version_for_path(path: str) -> tuple[dict[str, Any], str]:
    """(version, file name or "") for ``registry/<model>/<number>[/<file>]``."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    if len(parts) not in (3, 4) or parts[0] != ARTIFACT_PREFIX or not parts[2].isdigit():
        raise NotFound(f"no artifact at {path!r}: paths look like "
                       f"{ARTIFACT_PREFIX}/<model>/<version number>/<file>")
    registry = services().registry
    v = registry.version_by_key(parts[1], registry.resolve_number(parts[1], int(parts[2])))
    if v["artifact"] is None:
        raise NotFound(f"version {v['number']} of model '{parts[1]}' has no artifact")
    return v, parts[3] if len(parts) == 4 else ""


def _files(v: dict[str, Any]) -> dict[str, int | None]:
    """The directory MLflow sees: ONNX versions as an MLflow model, others as the raw file."""
    if v["provider"] == "onnx":
        return {MLMODEL_FILE: len(_mlmodel(v).encode()), ONNX_FILE: v["artifact"]["size"]}
    return {"artifact.bin": v["artifact"]["size"]}


def _mlmodel(v: dict[str, Any]) -> str:
    with services().artifacts.hold(v["artifact"]["digest"], verify=False) as path:
        return mlmodel_descriptor(path, model_name=v["model"], number=v["number"],
                                  created_at=v["created_at"])


@artifacts_bp.get("")
def list_artifacts():
    path = request.args.get("path", "")
    try:
        v, file = _version_for_path(path)
    except NotFound:
        return {}
    files = _files(v)
    shown = {file: files[file]} if file else files
    return {"files": [{"path": f, "is_dir": False, "file_size": size}
                      for f, size in shown.items() if f in files]}


@artifacts_bp.get("/<path:path>")
def download_artifact(path: str):
    v, file = _version_for_path(path)
    if file == MLMODEL_FILE and v["provider"] == "onnx":
        return Response(_mlmodel(v), mimetype="text/yaml")
    if file not in _files(v):
        raise NotFound(f"no file {file!r} in version {v['number']} of model '{v['model']}'")
    digest = v["artifact"]["digest"]
    return send_file(services().artifacts.open(digest), mimetype="application/octet-stream",
                     etag=digest, conditional=True, download_name=file)


# -- OpenAPI: MLflow's own protocol, described by hand (its shapes are MLflow's, not ours) ----
_MLFLOW_ERROR = {"description": "MLflow's error shape", "content": {"application/json": {
    "schema": {"type": "object", "required": ["error_code", "message"],
               "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}}}}
_OPERATIONS = [  # (path under /api/2.0/mlflow, method, summary, required fields, other fields)
    ("/registered-models/create", "post", "Create a registered model.", ["name"],
     ["tags", "description"]),
    ("/registered-models/get", "get", "Get a registered model.", ["name"], []),
    ("/registered-models/update", "patch", "Update a model's description.", ["name"],
     ["description"]),
    ("/registered-models/rename", "post", "Rename a model (refused while deployed).",
     ["name", "new_name"], []),
    ("/registered-models/delete", "delete", "Delete a model.", ["name"], []),
    ("/registered-models/search", "get", "Search models (filter, order_by, paging).", [],
     ["filter", "max_results", "order_by", "page_token"]),
    ("/registered-models/get-latest-versions", "post",
     "Latest version per stage; a stage may be a SemVer, alias or range.", ["name"],
     ["stages"]),
    ("/registered-models/set-tag", "post", "Set a model tag.", ["name", "key", "value"], []),
    ("/registered-models/delete-tag", "delete", "Delete a model tag.", ["name", "key"], []),
    ("/registered-models/alias", "post", "Point an alias at a version.",
     ["name", "alias", "version"], []),
    ("/registered-models/alias", "delete", "Delete an alias.", ["name", "alias"], []),
    ("/registered-models/alias", "get", "The version an alias points at.", ["name", "alias"],
     []),
    ("/model-versions/create", "post", "Create a version (SemVer from the semver tag, else "
     "the next patch).", ["name"], ["source", "run_id", "tags", "description"]),
    ("/model-versions/get", "get", "Get a version (number, SemVer, alias, range).",
     ["name", "version"], []),
    ("/model-versions/update", "patch", "Update a version's description.",
     ["name", "version"], ["description"]),
    ("/model-versions/delete", "delete", "Delete a version.", ["name", "version"], []),
    ("/model-versions/search", "get", "Search versions.", [],
     ["filter", "max_results", "order_by", "page_token"]),
    ("/model-versions/get-download-uri", "get", "Where the client downloads a version from.",
     ["name", "version"], []),
    ("/model-versions/set-tag", "post", "Set a version tag.",
     ["name", "version", "key", "value"], []),
    ("/model-versions/delete-tag", "delete", "Delete a version tag.",
     ["name", "version", "key"], []),
    ("/model-versions/transition-stage", "post", "Refused: stages are not supported.",
     ["name", "version", "stage"], []),
]


def _describe(method: str, summary: str, required: list[str],
              optional: list[str]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary, "tags": ["mlflow"],
        "responses": {"200": {"description": "MLflow's answer",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **{code: _MLFLOW_ERROR for code in ("400", "401", "403", "404")}}}
    fields = {f: {"type": "array", "items": {"type": "object"}} if f == "tags" else
              {"type": "string"} for f in required + optional}
    if method == "get":
        op["parameters"] = [{"name": f, "in": "query", "required": f in required,
                             "schema": schema} for f, schema in fields.items()]
    else:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": required, "properties": fields}}}}
    return op


for _path, _method, _summary, _required, _optional in _OPERATIONS:
    EXTRA_OPERATIONS.setdefault(bp.url_prefix + _path, {})[_method] = _describe(
        _method, _summary, _required, _optional)
EXTRA_OPERATIONS[artifacts_bp.url_prefix] = {"get": {
    "summary": "List a version's files as an MLflow model directory (?path=registry/m/N).",
    "tags": ["mlflow"], "parameters": [{"name": "path", "in": "query", "required": False,
                                        "schema": {"type": "string"}}],
    "responses": {"200": {"description": "{\"files\": [{path, is_dir, file_size}]}",
                          "content": {"application/json": {"schema": {"type": "object"}}}}}}}
EXTRA_OPERATIONS[artifacts_bp.url_prefix + "/{path}"] = {"get": {
    "summary": "Download MLmodel (generated) or model.onnx of registry/<model>/<number>.",
    "tags": ["mlflow"], "parameters": [{"name": "path", "in": "path", "required": True,
                                        "schema": {"type": "string"}}],
    "responses": {"200": {"description": "the file", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "text/yaml": {"schema": {"type": "string"}}}},
        "400": _MLFLOW_ERROR,
        # a path this server never routes (e.g. empty) is answered by the app's own 404
        "404": {"description": "no such file", "content": {"application/json": {"schema": {
            "anyOf": [_MLFLOW_ERROR["content"]["application/json"]["schema"],
                      {"type": "object", "required": ["error"]}]}}}}}}}
