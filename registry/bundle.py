"""Export and import the whole registry as one file; import from an MLflow server.

    python -m registry.bundle export registry.bundle.zip
    python -m registry.bundle import registry.bundle.zip [--dry-run]
    python -m registry.bundle import-mlflow http://mlflow:5000 [--dry-run] [--semver-rule R]

A bundle is a zip: ``manifest.json`` (every table's rows: models, versions with their SemVer
and MLflow numbers, aliases, tags, metadata, statuses, traffic, deployments, rollbacks,
snapshots, events, metrics...; API keys are never exported) and ``artifacts/<sha256>``, one
entry per artifact. Import is all or nothing: every artifact is re-hashed and every conflict
with what exists is looked for before anything is written, and the rows go in in one
transaction; a failure leaves the registry and the artifact store as they were.
``--dry-run`` does the same checks and the same inserts, then rolls back.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from defaults import parts_for
from errors import AlreadyExists, DataCorrupted, InvalidArgument, RegistryError
from registry.mlflow_import import import_from_mlflow
from storage.bundle_store import BundleStore
from storage.database import Database
from storage.model_store import ArtifactStore, check_digest

FORMAT = "model-registry-bundle/1"
MANIFEST = "manifest.json"
ARTIFACT_DIR = "artifacts/"


def export_bundle(database: Database, artifacts: ArtifactStore, out: Path | IO[bytes]
                  ) -> dict[str, Any]:
    """Write the bundle to ``out``; return its summary (rows per table, artifacts)."""
    tables = BundleStore(database).dump()
    digests = sorted({r["artifact_digest"] for r in tables.get("model_versions", [])
                      if r.get("artifact_digest")})
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        for digest in digests:
            with artifacts.open(digest) as src, z.open(ARTIFACT_DIR + digest, "w",
                                                       force_zip64=True) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                sizes[digest] = src.tell()
        summary = {"format": FORMAT, "created_at": datetime.now(timezone.utc).isoformat(),
                   "counts": {t: len(rows) for t, rows in tables.items() if rows},
                   "artifacts": sizes}
        z.writestr(MANIFEST, json.dumps({**summary, "tables": tables}))
    return summary


def _read_manifest(z: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(z.read(MANIFEST))
    except (KeyError, ValueError):
        raise InvalidArgument(f"not a registry bundle: {MANIFEST} is missing or not JSON") \
            from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidArgument(f"not a registry bundle of format {FORMAT!r}")
    return manifest


def _verify_artifacts(z: zipfile.ZipFile, manifest: dict[str, Any],
                      artifacts: ArtifactStore) -> list[str]:
    """Problems with the bundle's artifacts: each entry must hash to its name, and every
    digest a version refers to must be in the bundle or already in the store."""
    problems = []
    present = {n[len(ARTIFACT_DIR):] for n in z.namelist() if n.startswith(ARTIFACT_DIR)}
    for digest in sorted(present):
        h = hashlib.sha256()
        with z.open(ARTIFACT_DIR + digest) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != digest:
            problems.append(f"artifact {digest} is tampered with or damaged: its bytes hash to "
                            f"{h.hexdigest()}")
    for row in manifest["tables"].get("model_versions", []):
        digest = row.get("artifact_digest")
        if digest and digest not in present and not artifacts.exists(digest):
            problems.append(f"artifact {digest} of version {row.get('version')} is missing "
                            "from the bundle")
    return problems


def import_bundle(database: Database, artifacts: ArtifactStore, source: Path | IO[bytes], *,
                  dry_run: bool = False) -> dict[str, Any]:
    """Import a bundle all or nothing; return the report (rows per table, artifacts added).

    A damaged artifact raises DataCorrupted, a clash with what exists AlreadyExists, each with
    every problem found listed in ``details["problems"]``; nothing is changed then."""
    try:
        z = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise InvalidArgument("not a registry bundle: the file is not a zip archive") from None
    with z:
        manifest = _read_manifest(z)
        store = BundleStore(database)
        problems = _verify_artifacts(z, manifest, artifacts)
        if problems:
            raise DataCorrupted("the bundle's artifacts do not check out; nothing was imported",
                                details={"problems": problems})
        conflicts = store.conflicts(manifest["tables"])
        if conflicts:
            raise AlreadyExists(f"the bundle conflicts with what exists here ({len(conflicts)} "
                                "clash(es)); nothing was imported",
                                details={"problems": conflicts})
        names = [n for n in z.namelist() if n.startswith(ARTIFACT_DIR)]
        new = [n[len(ARTIFACT_DIR):] for n in names
               if not artifacts.exists(n[len(ARTIFACT_DIR):])]
        if dry_run:
            counts = store.load(manifest["tables"], dry_run=True)
        else:
            written = []
            try:
                for digest in new:
                    with z.open(ARTIFACT_DIR + digest) as f:
                        got, _size = artifacts.put_stream(f, max_bytes=1 << 62)
                    written.append(got)
                    if got != check_digest(digest):  # the zip changed under us
                        raise DataCorrupted(f"artifact {digest} changed while importing")
                counts = store.load(manifest["tables"])
            except BaseException:
                for digest in written:
                    artifacts.delete(digest)
                raise
    return {"dry_run": dry_run, "rows": counts, "artifacts_added": len(new),
            "models": sorted(r["name"] for r in manifest["tables"].get("models", []))}


# -- command line -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registry.bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write the whole registry to one file")
    p.add_argument("file", type=Path)
    p = sub.add_parser("import", help="import a bundle, all or nothing")
    p.add_argument("file", type=Path)
    p.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
    p = sub.add_parser("import-mlflow", help="copy models from an MLflow server (re-runnable)")
    p.add_argument("url")
    p.add_argument("--dry-run", action="store_true", help="report what would be added")
    p.add_argument("--semver-rule", default="major",
                   help="how MLflow version N becomes a SemVer: 'major' (N.0.0, the default), "
                        "'minor' (1.N.0), 'patch' (1.0.N), or a template such as '2.{n}.0'")
    p.add_argument("--token", help="bearer token for the MLflow server "
                                   "(default: MLFLOW_TRACKING_TOKEN)")
    args = parser.parse_args(argv)
    services = None
    try:
        # The composition root's parts for the configured settings (REGISTRY_DATA_DIR,
        # DATABASE_URL, ARTIFACT_ROOT as the server reads them).
        services = parts_for(None)
        database, artifacts = services.database, services.artifacts
        if args.command == "export":
            with tempfile.NamedTemporaryFile(dir=args.file.parent or ".", delete=False) as tmp:
                summary = export_bundle(database, artifacts, tmp)
            Path(tmp.name).replace(args.file)
            print(json.dumps({"file": str(args.file), **summary}, indent=2))
        elif args.command == "import":
            with args.file.open("rb") as f:
                report = import_bundle(database, artifacts, f, dry_run=args.dry_run)
            print(json.dumps(report, indent=2))
        else:
            report = import_from_mlflow(services.registry, artifacts, args.url,
                                        rule=args.semver_rule,
                                        token=args.token or services.settings.mlflow_tracking_token,
                                        dry_run=args.dry_run)
            print(json.dumps(report, indent=2))
    except RegistryError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        for problem in err.details.get("problems", []):
            print(f"  - {problem}", file=sys.stderr)
        return 1
    finally:
        if services is not None:
            services.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
