"""Run the whole test suite: ``python tests.py`` (extra arguments go to pytest).

Two workers (pytest-xdist), each taking whole files (``--dist loadfile``: a module's shared
server starts once): the end-to-end tests spend most of their time waiting on servers,
processes and sockets, so two workers keep both cores busy. Files are handed out in the order
``tests/conftest.py`` gives them (``--no-loadscope-reorder``; pytest-xdist would otherwise
hand out the files with the most tests first, and the long end-to-end files, which have few,
last). ``python tests.py -n 0`` runs
everything in this one process instead (the last ``-n`` given wins). Files or tests named on
the command line (``python tests.py tests/test_auth.py``) are all that is collected.
"""
import importlib.util
import sys
from pathlib import Path

try:
    import pytest
except ImportError:   # only requirements.txt installed: say what is missing instead of a trace
    sys.exit("The test tools are not installed: pip install -r requirements-dev.txt")
if importlib.util.find_spec("xdist") is None:   # not imported here: pytest loads it (pytest.ini)
    sys.exit("pytest-xdist is not installed: pip install -r requirements-dev.txt")


def _names_tests(arg: str) -> bool:
    """Whether a command-line argument names test files or tests (``tests/test_x.py::name``)."""
    return not arg.startswith("-") and Path(arg.split("::")[0]).exists()


if __name__ == "__main__":
    args = sys.argv[1:]
    where = [] if any(_names_tests(arg) for arg in args) else ["tests"]
    sys.exit(pytest.main([*where, "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder",
                          *args]))
