"""Shared fixtures: the ../shared data folder, a session-wide Prefect test server, temp output roots."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared"))

# Prefect must never touch the developer's ~/.prefect nor phone home; set before prefect is imported.
_PREFECT_HOME = tempfile.mkdtemp(prefix="prefect-home-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DO_NOT_TRACK", "1")


def shared_path(*parts: str) -> Path:
    """A path inside ../shared. Missing data fails under CI (CI=true) and skips elsewhere."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        msg = f"shared data missing: {p}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (starting one costs ~15-20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _restore_verbosity():
    """``pipeline.cli.main`` sets ``ECG_GROUNDING_VERBOSITY`` in os.environ (its -v/-q contract); a test that calls
    main in-process must not leave -q behind for the subprocesses of later tests."""
    before = os.environ.get("ECG_GROUNDING_VERBOSITY")
    yield
    if before is None:
        os.environ.pop("ECG_GROUNDING_VERBOSITY", None)
    else:
        os.environ["ECG_GROUNDING_VERBOSITY"] = before
