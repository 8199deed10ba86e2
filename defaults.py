"""Where the seed's no-argument constructors find their parts.

``ModelRegistry()``, ``PerformanceTracker()``, ``DeploymentManager()``, ``RollbackManager()``
and ``SnapshotManager()`` take whatever they are not given from the composition root
(``wiring.py``): the process's shared services for the configured settings, or, when they are
given a database, a set of services built around that database. The root imports every layer,
so it is looked up here when first asked for rather than imported with this module: this is
the one import that points upwards, and ``tests/test_architecture.py`` allows exactly it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.database import Database
    from wiring import Services

COMPOSITION_ROOT = "wiring"


def parts_for(database: "Database | None") -> "Services":
    """The process's services (``database`` None) or services built around ``database``."""
    root = importlib.import_module(COMPOSITION_ROOT)
    return root.process_services() if database is None else root.Services(database=database)
