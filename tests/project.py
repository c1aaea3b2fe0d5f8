"""pyproject.toml, parsed, for the tests that hold the packaging and cluster.yaml to it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# tomllib is Python 3.11's: on 3.10 the tests that read pyproject.toml are skipped
PYPROJECT = pytest.importorskip("tomllib").loads((REPO / "pyproject.toml").read_text())
