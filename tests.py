"""Run the whole test suite: ``python tests.py`` (extra arguments go to pytest).

Two workers (pytest-xdist), each taking whole files (``--dist loadfile``: a module's shared
server starts once): the end-to-end tests spend most of their time waiting on servers,
processes and sockets, so two workers keep both cores busy. ``python tests.py -n 0`` runs
everything in this one process instead (the last ``-n`` given wins).
"""
import importlib.util
import sys

try:
    import pytest
except ImportError:   # only requirements.txt installed: say what is missing instead of a trace
    sys.exit("The test tools are not installed: pip install -r requirements-dev.txt")
if importlib.util.find_spec("xdist") is None:   # not imported here: pytest loads it (pytest.ini)
    sys.exit("pytest-xdist is not installed: pip install -r requirements-dev.txt")

if __name__ == "__main__":
    sys.exit(pytest.main(["tests", "-n", "2", "--dist", "loadfile", *sys.argv[1:]]))
