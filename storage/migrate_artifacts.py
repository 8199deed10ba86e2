"""Copy every artifact from one store to another: ``python -m storage.migrate_artifacts SRC DST``.

SRC and DST are each a directory or an ``s3://bucket/prefix`` URL (credentials, region and
endpoint come from the usual settings: AWS_*, S3_ENDPOINT_URL). Each artifact is streamed and
verified against its digest on the way; one already in DST is skipped. The registry's rows name
artifacts by digest only, so after the copy, point ARTIFACT_ROOT at DST and restart: nothing in
the database changes. Exit status 1 if any artifact failed (the others are still copied).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from config import Settings, get_settings
from errors import RegistryError
from storage.artifacts import open_artifact_store


def migrate(src_url: str, dst_url: str, settings: Settings, out=None) -> dict[str, int]:
    """Copy what SRC has and DST lacks; return counts of copied, skipped and failed."""
    counts = {"copied": 0, "skipped": 0, "failed": 0}
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="migrate-cache-") as cache:
        # Artifacts read from S3 pass through a private cache holding about one at a time.
        src = open_artifact_store(settings, src_url, cache_root=Path(cache) / "src")
        dst = open_artifact_store(settings, dst_url, cache_root=Path(cache) / "dst")
        if hasattr(src, "cache_bytes"):
            src.cache_bytes = 0
        for digest in src.digests():
            if dst.exists(digest):
                counts["skipped"] += 1
                continue
            try:
                with src.open(digest, verify=True) as f:
                    copied, size = dst.put_stream(f, 1 << 62)
                if copied != digest:  # the file changed under us between hash and copy
                    raise RuntimeError(f"copied bytes hash to sha256:{copied}")
                counts["copied"] += 1
                print(f"copied sha256:{digest} ({size} bytes)", file=out)
            except (RegistryError, RuntimeError, OSError) as exc:
                counts["failed"] += 1
                print(f"FAILED sha256:{digest}: {exc}", file=out)
    print(f"{counts['copied']} copied, {counts['skipped']} already there, "
          f"{counts['failed']} failed", file=out)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage.migrate_artifacts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="a directory or s3://bucket/prefix")
    parser.add_argument("dst", help="a directory or s3://bucket/prefix")
    args = parser.parse_args(argv)
    try:
        counts = migrate(args.src, args.dst, get_settings())
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
