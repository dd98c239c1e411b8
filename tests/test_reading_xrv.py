"""The xrv reader: torchxrayvision's pathology head read through a locally built DenseNet (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medrag.config import Settings
from medrag.errors import BackendUnavailableError
from medrag.reading.base import readers
from medrag.reading.xrv_reader import PATHOLOGY_FINDINGS, XRVReader
from medrag.weights import import_model
from tiny_models import build_tiny_xrv


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MEDRAG_DEVICE", "cpu")
    return Settings(data_dir=tmp_path / "data", xrv_cache_dir=tmp_path / "xrv-cache", device="cpu")


def test_missing_weights_say_how_to_get_them(settings: Settings) -> None:
    with pytest.raises(BackendUnavailableError, match="medrag models"):
        readers.get("xrv").factory(settings)


def test_reads_every_mapped_finding_with_a_probability(settings: Settings, tmp_path: Path) -> None:
    weights = build_tiny_xrv(tmp_path / "densenet.pt")
    import_model("xrv-densenet121-all", weights, settings)
    reader = XRVReader(settings)
    rng = np.random.default_rng(0)
    reading = reader.read(rng.random((256, 256), dtype=np.float32))
    assert set(reading.findings) == set(PATHOLOGY_FINDINGS.values())
    for read in reading.findings.values():
        assert read.probability is not None and 0.0 <= read.probability <= 1.0
        assert read.status in ("present", "uncertain", "absent") and read.source == "xrv"
    assert reading.readers == ("xrv",)
