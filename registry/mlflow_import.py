"""Copy registered models from an MLflow server into this registry (issue 17).

``python -m registry.bundle import-mlflow URL`` reads the server's Model Registry REST API
(``/api/2.0/mlflow``) with plain HTTP, so nothing of MLflow needs installing here. It copies
models (description, tags), versions (description, tags, source, run id, and MLflow's own
number, kept as the version's number), aliases, and each version's ONNX file when the server
serves it (``mlflow-artifacts:/`` locations; other stores such as s3:// are left where they
are: the version keeps its ``source``). Running it again only adds what is new.

The SemVer of a copied version is, in order: its ``semver`` tag when that is a valid SemVer;
else the rule: ``major`` (the default) makes MLflow version N ``N.0.0``, ``minor`` ``1.N.0``,
``patch`` ``1.0.N``, and a template such as ``2.{n}.0`` puts N where ``{n}`` stands.
"""
from __future__ import annotations

import posixpath
from urllib.parse import urlparse
from typing import Any

import requests

from errors import AlreadyExists, InvalidArgument, RegistryError
from registry.model_registry import ModelRegistry
from registry.version_manager import parse_version
from storage.model_store import ArtifactStore

RULES = {"major": "{n}.0.0", "minor": "1.{n}.0", "patch": "1.0.{n}"}
ACTOR = "import-mlflow"
PAGE = 1000


def semver_for(number: int, tags: dict[str, str], rule: str) -> str:
    """The SemVer a copied MLflow version gets (see the module's docstring)."""
    tagged = tags.get("semver")
    if tagged:
        try:
            return str(parse_version(tagged))
        except InvalidArgument:
            pass
    template = RULES.get(rule, rule)
    if "{n}" not in template:
        raise InvalidArgument(f"semver rule {rule!r}: use major, minor, patch or a template "
                              "with {n}, such as '2.{n}.0'")
    return str(parse_version(template.replace("{n}", str(number))))


class MlflowReader:
    """The few calls of MLflow's REST API an import needs."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        r = self.session.get(f"{self.url}/api/2.0/{endpoint}", params=params,
                             timeout=self.timeout)
        if r.status_code != 200:
            raise InvalidArgument(f"MLflow server at {self.url} answered {r.status_code} to "
                                  f"{endpoint}: {r.text[:300]}")
        return r.json()

    def _pages(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        out, token = [], None
        while True:
            body = self._get(path, max_results=PAGE, **params,
                             **({"page_token": token} if token else {}))
            out += body.get(key, [])
            token = body.get("next_page_token")
            if not token:
                return out

    def models(self) -> list[dict[str, Any]]:
        return self._pages("mlflow/registered-models/search", "registered_models")

    def versions(self, name: str) -> list[dict[str, Any]]:
        quoted = name.replace("'", "\\'")
        return self._pages("mlflow/model-versions/search", "model_versions",
                           filter=f"name='{quoted}'")

    def download_uri(self, name: str, version: str) -> str:
        return self._get("mlflow/model-versions/get-download-uri", name=name,
                         version=version).get("artifact_uri", "")

    def onnx_file(self, uri: str) -> bytes | None:
        """The bytes of the ONNX file at an ``mlflow-artifacts:`` location (the file itself,
        or the ``*.onnx`` of a model directory); None when there is none to fetch."""
        if not uri.startswith("mlflow-artifacts:"):
            return None
        root = urlparse(uri).path.lstrip("/")  # mlflow-artifacts:/p or mlflow-artifacts://host/p
        if root.endswith(".onnx"):
            return self._download(root)
        listing = self._get("mlflow-artifacts/artifacts", path=root).get("files", [])
        names = [f["path"] for f in listing if not f.get("is_dir")
                 and f["path"].endswith(".onnx")]
        return self._download(posixpath.join(root, names[0])) if names else None

    def _download(self, path: str) -> bytes:
        r = self.session.get(f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{path}",
                             timeout=self.timeout)
        if r.status_code != 200:
            raise InvalidArgument(f"MLflow server could not send artifact {path}: "
                                  f"{r.status_code}")
        return r.content


def _tags(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {t["key"]: t.get("value") or "" for t in items or []}


def import_from_mlflow(registry: ModelRegistry, artifacts: ArtifactStore, url: str, *,
                       rule: str = "major", token: str | None = None,
                       dry_run: bool = False) -> dict[str, Any]:
    """Copy what is new on the MLflow server at ``url``; return what was (or would be) added
    and what was skipped, with the reason."""
    semver_for(1, {}, rule)  # a bad rule fails before anything is read or written
    mlflow = MlflowReader(url, token)
    added: dict[str, list[str]] = {"models": [], "versions": [], "aliases": [], "tags": [],
                                   "artifacts": []}
    skipped: list[str] = []
    for m in mlflow.models():
        name = m["name"]
        try:
            _copy_model(registry, artifacts, mlflow, m, rule, dry_run, added)
        except RegistryError as err:
            skipped.append(f"model '{name}': {err.message}")
    return {"dry_run": dry_run, "added": added, "skipped": skipped,
            "counts": {k: len(v) for k, v in added.items()}}


def _copy_model(registry: ModelRegistry, artifacts: ArtifactStore, mlflow: MlflowReader,
                m: dict[str, Any], rule: str, dry_run: bool,
                added: dict[str, list[str]]) -> None:
    name = m["name"]
    tags = _tags(m.get("tags"))
    try:
        existing = registry.get_model(name)
    except RegistryError:
        existing = None
    if existing is None:
        added["models"].append(name)
        if not dry_run:
            registry.register_model(name, m.get("description") or "", tags, actor=ACTOR)
    else:
        for key, value in tags.items():
            if key not in existing["tags"]:
                added["tags"].append(f"{name}:{key}")
                if not dry_run:
                    registry.set_model_tag(name, key, value, actor=ACTOR)
    have = set() if existing is None else {
        v["number"] for v in registry.iter_versions(name)}
    semvers: dict[str, str] = {}
    for v in sorted(mlflow.versions(name), key=lambda v: int(v["version"])):
        number = int(v["version"])
        vtags = _tags(v.get("tags"))
        semver = semver_for(number, vtags, rule)
        semvers[v["version"]] = semver
        if number in have:
            continue
        added["versions"].append(f"{name}/{number} as {semver}")
        if dry_run:
            continue
        vtags.pop("semver", None)
        try:
            registry.register_version(
                name, semver, description=v.get("description") or "", tags=vtags,
                provider="onnx", source=v.get("source") or None,
                run_id=v.get("run_id") or None, number=number, actor=ACTOR)
        except AlreadyExists as err:
            raise AlreadyExists(f"version {number} → {semver}: {err.message} (choose another "
                                "--semver-rule)") from None
        data = mlflow.onnx_file(mlflow.download_uri(name, v["version"]))
        if data is not None:
            digest, size = artifacts.put_bytes(data)
            registry.attach_artifact(name, semver, digest, size, actor=ACTOR)
            added["artifacts"].append(f"{name}/{number} sha256:{digest}")
    current = {} if existing is None else {a["alias"]: a["number"]
                                           for a in registry.aliases(name)}
    for alias in m.get("aliases") or []:
        if alias["alias"] in current or alias["version"] not in semvers:
            continue
        added["aliases"].append(f"{name}@{alias['alias']}")
        if not dry_run:
            registry.set_alias(name, alias["alias"], semvers[alias["version"]], actor=ACTOR)
