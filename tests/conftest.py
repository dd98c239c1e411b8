"""Shared fixtures: a synthetic library built once per session, the real-data folder, an in-memory store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from medrag.store import Store

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: the throwaway PostgreSQL server and the two-backend ``any_store`` fixture (tests/pgserver.py)
pytest_plugins = ["pgserver"]

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr-real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/data/cxr-real, or skip with the reason."""
    if not (REAL_DATA / "labels.csv").is_file():
        pytest.skip(f"real chest X-rays not found at {REAL_DATA} (they live beside the repository, never in it)")
    return REAL_DATA


@pytest.fixture()
def memory_store() -> Store:
    """A fresh, empty ``Store(":memory:")`` for this test (no file, no lock; gone when the test ends)."""
    from medrag.store import Store

    return Store(":memory:")


@pytest.fixture(scope="session")
def demo_workbench(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A Workbench over a 60-case synthetic phantom library, indexed (shared: do not mutate the library)."""
    from medrag.config import Settings
    from medrag.workbench import Workbench

    settings = Settings(data_dir=tmp_path_factory.mktemp("demo-data"), demo_cases=60, web_provider="off")
    workbench = Workbench(settings)
    workbench.ensure_library()
    return workbench
