"""The medrag CLI end to end on a small demo library: demo, analyze, search, history, index, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medrag.cli import main
from pgsuite import store_env


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-data")
    assert main(["--data-dir", str(directory), "demo", "--n", "40"]) == 0
    return directory


def _demo_image(data_dir: Path) -> Path:
    return sorted((data_dir / "demo").rglob("*.png"))[0]


def test_analyze_streams_and_saves(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "analyze", str(_demo_image(data_dir)), "--no-web"]) == 0
    out = capsys.readouterr().out
    assert "not for clinical use" in out
    assert "**Impression.**" in out and "Summary:" in out
    neighbour_lines = [line for line in out.splitlines() if line.strip().startswith("#") and "[synthetic]" in line]
    assert len(neighbour_lines) == 5
    assert "Saved to history as analysis #1" in out
    assert main(["--data-dir", str(data_dir), "history"]) == 0
    assert "#1" in capsys.readouterr().out


def test_search_by_text_label_and_image(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "search", "--text", "enlarged heart", "--k", "3"]) == 0
    assert len([row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("#")]) == 3
    assert main(["--data-dir", str(data_dir), "search", "--label", "normal", "--k", "4"]) == 0
    lines = [row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("#")]
    assert len(lines) == 4 and all(" normal " in row for row in lines)
    assert main(["--data-dir", str(data_dir), "search", "--image", str(_demo_image(data_dir))]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "1.000" in first  # the image itself is in the library


def test_errors_are_one_line_not_tracebacks(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "fake.png"
    bad.write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "medrag", "--data-dir", str(data_dir), "analyze", str(bad), "--no-web"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **store_env(data_dir)},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "input failed" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "medrag", "--data-dir", str(data_dir), "ingest", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=120, env={**os.environ, **store_env(data_dir)},
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "does not exist" in proc.stderr


def test_export_history(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "history.parquet"
    assert main(["--data-dir", str(data_dir), "history", "--export", str(target)]) == 0
    import pandas as pd

    assert len(pd.read_parquet(target)) >= 1


def test_a_folder_batch_writes_one_row_per_image_and_names_the_library_cases(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    import numpy as np
    import pandas as pd
    from PIL import Image

    folder = tmp_path / "batch"
    folder.mkdir()
    shutil.copy(_demo_image(data_dir), folder / "library.png")  # the same pixels as a library case
    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((128, 128)) * 60 + 90).astype(np.uint8)).save(folder / "new.png")
    target = tmp_path / "readings.parquet"
    capsys.readouterr()
    assert main(["--data-dir", str(data_dir), "analyze", str(folder), "--out", str(target), "--no-web",
                 "--no-save", "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    frame = pd.read_parquet(target)
    assert len(printed) == len(frame) == 2
    by_name = {Path(r["source"]).name: r for r in frame.to_dict("records")}
    assert by_name["library.png"]["case_id"] and pd.isna(by_name["new.png"]["case_id"])
    assert {Path(r["source"]).name: r["case_id"] for r in printed}["new.png"] is None
    assert isinstance(json.loads(by_name["library.png"]["findings"]), dict)
    # An existing file is kept unless --force says otherwise.
    assert main(["--data-dir", str(data_dir), "analyze", str(folder), "--out", str(target), "--no-web",
                 "--no-save"]) == 2
    assert "--force" in capsys.readouterr().err
