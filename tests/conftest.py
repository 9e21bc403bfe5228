"""Shared fixtures. Real data lives in ../shared (override with MODA_SHARED_DIR)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _shared_root() -> Path:
    return Path(os.environ.get("MODA_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """Root of the shared reference material (data/ and reference/)."""
    root = _shared_root()
    if not (root / "data").is_dir():
        pytest.fail(f"shared test data not found at {root}; set MODA_SHARED_DIR to the folder holding data/ "
                    "and reference/")
    return root


@pytest.fixture(scope="session")
def data_dir(shared_root: Path) -> Path:
    """../shared/data: portraits/, audio/, video/, models/."""
    return shared_root / "data"


@pytest.fixture(scope="session")
def parity_dir(shared_root: Path) -> Path:
    """../shared/reference/parity: golden vectors from the authors' networks."""
    return shared_root / "reference" / "parity"


@pytest.fixture(scope="session")
def reference_dir(shared_root: Path) -> Path:
    return shared_root / "reference"


@pytest.fixture(scope="session", autouse=True)
def same_cpu_everywhere(tmp_path_factory):
    """Tests see a CPU without fast bf16 (precision auto -> fp32, as on most CI runners) whatever they run on;
    tests of the bf16 rule patch ``cpu_flags`` themselves. Converted networks and backend probes go to a
    session folder, not ~/.cache/moda."""
    from moda_core import render_backends

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render_backends, "cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
        patch.setenv("MODA_CACHE_DIR", str(tmp_path_factory.mktemp("moda-cache")))
        yield
