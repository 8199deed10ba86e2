"""Run the whole test suite: ``python tests.py`` (extra arguments go to pytest)."""
import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["tests", *sys.argv[1:]]))
