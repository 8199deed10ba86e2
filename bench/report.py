"""How every benchmark prints its summary rows: (benchmark, result, target)."""
from __future__ import annotations

Row = tuple[str, str, str]


def print_rows(rows: list[Row]) -> list[Row]:
    for name, result, target in rows:
        print(f"  {name:48} {result:>12} {target}")
    return rows
