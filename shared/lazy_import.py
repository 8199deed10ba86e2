"""Modules imported when first used, not when the importing module loads.

Some libraries cost a large part of a process's start-up and only some processes use them:
``google.genai`` (~0.4 s: only a process that serves a Gemini version calls it) and
``scipy.stats`` (~1 s: only the statistical judge and experiments' verdicts). Every process
that starts (a server, a worker, the CLI, a script using the seed's classes) would pay for
them otherwise.
"""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name`` as a module object that imports itself on its first attribute access (the
    standard library's ``LazyLoader``); the module itself if it is already imported."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
