"""Shared fixtures: a synthetic library built once per session, the real-data folder, an in-memory store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from medrag.store import Store

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: the throwaway PostgreSQL server and the two-backend ``any_store`` fixture (tests/pgserver.py); the whole
#: suite on PostgreSQL with MEDRAG_TEST_STORE=postgres (tests/pgsuite.py)
pytest_plugins = ["pgserver", "pgsuite"]

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr-real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/data/cxr-real, or skip with the reason."""
    if not (REAL_DATA / "labels.csv").is_file():
        pytest.skip(f"real chest X-rays not found at {REAL_DATA} (they live beside the repository, never in it)")
    return REAL_DATA


@pytest.fixture()
def memory_store(tmp_path: Path) -> Store | Any:
    """A fresh, empty ``Store(":memory:")`` for this test (no file, no lock; gone when the test ends); in the
    PostgreSQL mode a ``PgStore`` on a fresh database instead."""
    from pgsuite import suite_store

    store = suite_store(tmp_path)
    if store is not None:
        return store
    from medrag.store import Store

    return Store(":memory:")


@pytest.fixture(scope="session")
def demo_workbench(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Workbench over a 60-case synthetic phantom library, indexed (shared: do not mutate the library)."""
    from medrag.config import Settings
    from medrag.workbench import Workbench

    settings = Settings(data_dir=tmp_path_factory.mktemp("demo-data"), demo_cases=60, web_provider="off")
    # In the PostgreSQL mode (tests/pgsuite.py) open_store gives this folder its own database.
    workbench = Workbench(settings)
    workbench.ensure_library()
    return workbench
