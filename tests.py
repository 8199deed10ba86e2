"""Run the whole test suite: ``python tests.py`` (extra arguments go to pytest)."""
import sys

try:
    import pytest
except ImportError:   # only requirements.txt installed: say what is missing instead of a trace
    sys.exit("The test tools are not installed: pip install -r requirements-dev.txt")

if __name__ == "__main__":
    sys.exit(pytest.main(["tests", *sys.argv[1:]]))
