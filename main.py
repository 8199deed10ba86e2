"""Demonstrations of the Model Registry: ``python main.py`` runs every section,
``python main.py --help`` lists them, ``python main.py registry`` runs one.

No API key and no network needed: the database is a fresh SQLite file in a temporary folder
(or ``--data-dir``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SECTIONS: dict[str, tuple[str, Callable[["Demo"], None]]] = {}


def section(name: str, title: str):
    def register(fn: Callable[["Demo"], None]) -> Callable[["Demo"], None]:
        SECTIONS[name] = (title, fn)
        return fn
    return register


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join("    " + x for x in out)


class Demo:
    """What the sections share: one database, one registry."""

    def __init__(self, data_dir: Path) -> None:
        os.environ["REGISTRY_DATA_DIR"] = str(data_dir)
        from registry.model_registry import ModelRegistry
        from storage.database import default_database
        self.data_dir = data_dir
        self.database = default_database()
        self.registry = ModelRegistry(self.database)


@section("registry", "Register models and versions, search, aliases")
def demo_registry(d: Demo) -> None:
    reg = d.registry
    reg.register_model("sentiment-analyzer", "Classifies text sentiment",
                       tags={"team": "nlp", "tier": "gold"})
    reg.register_model("fraud-scorer", "Scores card transactions", tags={"team": "risk"})
    for version, status in [("1.0.0", "stable"), ("1.1.0", "stable"), ("1.2.0-rc.1", "beta"),
                            ("2.0.0-alpha", "experimental")]:
        reg.register_version("sentiment-analyzer", version, status,
                             config={"model": "gemini-2.5-flash", "temperature": 0.0})
    models, _ = reg.list_models(tag="team:nlp")
    print(f"  models tagged team:nlp: {[m['name'] for m in models]}")
    versions, _ = reg.list_versions("sentiment-analyzer")
    print("  versions, newest first by SemVer precedence:")
    print(table(versions, ["version", "status", "provider", "created_at"]))
    reg.set_alias("sentiment-analyzer", "production", "1.1.0")
    for ref in ("latest", "production", "^1.0", "~1.0"):
        print(f"  resolve {ref!r:14} -> {reg.get_version('sentiment-analyzer', ref)['version']}")
    from errors import RegistryError
    for bad in ("1.0", "v1.0.0", "1.0.0+build.7"):
        try:
            reg.register_version("sentiment-analyzer", bad)
        except RegistryError as exc:
            print(f"  register {bad!r:16} -> {exc.code}: {exc.message[:70]}")


@section("semver", "SemVer 2.0.0: precedence, compatibility, ranges")
def demo_semver(_: Demo) -> None:
    from registry.version_manager import VersionManager
    vm = VersionManager()
    print(f"  is_newer('1.1.0', '1.0.0')            = {vm.is_newer('1.1.0', '1.0.0')}")
    print(f"  is_newer('1.0.0-rc.1', '1.0.0')       = {vm.is_newer('1.0.0-rc.1', '1.0.0')}")
    print(f"  is_compatible('1.0.0', '1.5.0')       = {vm.is_compatible('1.0.0', '1.5.0')}")
    print(f"  is_compatible('0.1.0', '0.2.0')       = {vm.is_compatible('0.1.0', '0.2.0')}")
    print(f"  increment_version('1.4.2', 'minor')   = {vm.increment_version('1.4.2', 'minor')}")
    versions = ["1.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.11", "1.0.0-beta.2",
                "2.0.0", "1.10.0", "1.9.0"]
    print(f"  get_latest_version({len(versions)} versions)     = {vm.get_latest_version(versions)}")
    print(f"  sorted: {vm.sort(versions)}")
    for rng in ("^1.0.0", "~1.9", "1.0.0 - 1.9.x", ">=2.0.0 || <1.0.0"):
        print(f"  {rng!r:22} matches {[v for v in versions if vm.matches(v, rng)]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Model Registry demonstrations (no key, no network).",
        epilog="sections:\n" + "\n".join(f"  {k:12} {t}" for k, (t, _) in SECTIONS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", choices=[[], *SECTIONS], metavar="section",
                        help="sections to run (default: all)")
    parser.add_argument("--data-dir", type=Path, help="keep the database here (default: a "
                        "temporary folder)")
    args = parser.parse_args(argv)
    chosen = args.sections or list(SECTIONS)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="model-registry-demo-"))
    demo = Demo(data_dir)
    started = time.perf_counter()
    for name in chosen:
        title, fn = SECTIONS[name]
        print(f"\n== {name}: {title}")
        fn(demo)
    print(f"\nall {len(chosen)} sections done in {time.perf_counter() - started:.1f}s "
          f"(data in {data_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
