"""Real model backends through the product's own entry points, on tiny models built here.

`medrag models import` places the weights; `medrag analyze` / `medrag search` then run the hf reasoner and
summariser, the open_clip encoder and the torchxrayvision encoder; with nothing imported the offline
defaults take over and say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medrag.cli import main
from tiny_models import build_tiny_gemma3, build_tiny_openclip, build_tiny_xrv


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models-data")
    assert main(["--data-dir", str(directory), "demo", "--n", "24"]) == 0
    return directory


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hf").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MEDRAG_XRV_CACHE", str(tmp_path / "xrv"))
    monkeypatch.setenv("MEDRAG_DEVICE", "cpu")


def _image(data_dir: Path) -> str:
    return str(sorted((data_dir / "demo").rglob("*.png"))[0])


def test_missing_models_fall_back_and_say_which_ran(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert (
        main(["--data-dir", str(data_dir), "--reasoner", "hf", "analyze", _image(data_dir), "--no-web", "--no-save"])
        == 0
    )
    out = capsys.readouterr().out
    assert "[reasoner: evidence" in out


def test_imported_tiny_medgemma_streams_through_analyze(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gemma = build_tiny_gemma3(tmp_path / "gemma")
    assert main(["--data-dir", str(data_dir), "models", "import", "medgemma-reasoner", str(gemma)]) == 0
    assert main(["--data-dir", str(data_dir), "models", "import", "medgemma-summariser", str(gemma)]) == 0
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "models"]) == 0
    listing = capsys.readouterr().out
    assert "medgemma-reasoner" in listing and "ready" in listing.split("medgemma-reasoner")[1].splitlines()[0]
    from medrag.analysis import Analysis
    from medrag.config import Settings
    from medrag.events import ReasoningToken
    from medrag.workbench import Workbench

    workbench = Workbench(
        Settings(data_dir=data_dir, reasoner="hf", summariser="hf", max_new_tokens=16, web_provider="off")
    )
    events = list(workbench.analyze(Path(_image(data_dir))))
    result = Analysis.fold(events)
    tokens = [e.text for e in events if isinstance(e, ReasoningToken)]
    assert result.reasoner_backend == "hf" and len(tokens) > 1
    assert "".join(tokens) == result.reasoning
    assert "summary" in result.stages and not result.failures
    row = workbench.store.get_analysis(result.analysis_id)
    assert row is not None and row.reasoner_backend == "hf" and row.summariser_backend == "hf"


def test_openclip_local_dir_searches_by_image_and_text(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = build_tiny_openclip(tmp_path / "clip")
    monkeypatch.setenv("MEDRAG_OPENCLIP_MODEL", f"local-dir:{clip}")
    capsys.readouterr()
    assert (
        main(
            [
                "--data-dir",
                str(data_dir),
                "--image-encoder",
                "openclip",
                "search",
                "--image",
                _image(data_dir),
                "--k",
                "3",
            ]
        )
        == 0
    )
    lines = [row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("#")]
    assert len(lines) == 3 and "1.000" in lines[0]
    assert (
        main(
            [
                "--data-dir",
                str(data_dir),
                "--image-encoder",
                "openclip",
                "search",
                "--text",
                "enlarged heart",
                "--k",
                "3",
            ]
        )
        == 0
    )
    assert len([row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("#")]) == 3


@pytest.mark.slow
def test_xrv_imported_weights_search(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = build_tiny_xrv(tmp_path / "xrv.pt")
    assert main(["--data-dir", str(data_dir), "models", "import", "xrv-densenet121-all", str(weights)]) == 0
    capsys.readouterr()
    assert (
        main(["--data-dir", str(data_dir), "--image-encoder", "xrv", "search", "--image", _image(data_dir), "--k", "3"])
        == 0
    )
    lines = [row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("#")]
    assert len(lines) == 3 and "1.000" in lines[0]
