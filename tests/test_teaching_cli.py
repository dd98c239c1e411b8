"""``medrag sets list | show | export | import`` and ``medrag quiz results`` on a small data folder."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pytest

from medrag.cli import main
from medrag.teaching.model import ItemRef, QuizAnswer
from pgsuite import folder_store
from test_teaching_store import make_library


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:

    folder = tmp_path / "data"
    store = folder_store(folder)
    make_library(store, tmp_path / "images", phantoms=False)
    set_id = store.create_lesson_set("Week 3")
    store.add_lesson_items(set_id, [ItemRef("case", "n1"), ItemRef("case", "p1")], "compare the bases")
    store.save_quiz_answers(
        [
            QuizAnswer("s1", "Week 3", "Ada", "exam", 1, "label", ItemRef("case", "n1"), "normal", "normal", True),
            QuizAnswer(
                "s1", "Week 3", "Ada", "exam", 2, "locate", ItemRef("case", "p1"), "pneumonia", "x", False, (1, 2)
            ),
            QuizAnswer(
                "s2", "Week 3", "@Grace", "exam", 1, "label", ItemRef("case", "n1"), "normal", "pneumonia", False
            ),
        ]
    )
    return folder


def test_sets_list_show_export_import(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "sets", "list"]) == 0
    out = capsys.readouterr().out
    assert "Week 3" in out and "2 cases" in out and "normal, pneumonia" in out
    assert main(["--data-dir", str(data_dir), "sets", "show", "week 3"]) == 0
    out = capsys.readouterr().out
    assert "1. nih_n1.png" in out and "note: compare the bases" in out

    bundle, handout = tmp_path / "week3.zip", tmp_path / "week3.html"
    assert (
        main(["--data-dir", str(data_dir), "sets", "export", "Week 3", "--zip", str(bundle), "--html", str(handout)])
        == 0
    )
    assert zipfile.ZipFile(bundle).read("manifest.json") and "data:image/jpeg;base64," in handout.read_text()
    assert main(["--data-dir", str(data_dir), "sets", "export", "Week 3", "--zip", str(bundle)]) == 2  # exists: --force
    assert "already exists" in capsys.readouterr().err
    assert main(["--data-dir", str(data_dir), "sets", "export", "Week 3", "--zip", str(data_dir / "x.zip")]) == 2
    assert "inside the data folder" in capsys.readouterr().err
    assert main(["--data-dir", str(data_dir), "sets", "export", "Nope", "--zip", str(tmp_path / "n.zip")]) == 2
    assert "no lesson set 'Nope'" in capsys.readouterr().err

    other = tmp_path / "other"
    assert main(["--data-dir", str(other), "sets", "import", str(bundle), "--name", "From a colleague"]) == 0
    out = capsys.readouterr().out
    assert "Imported the lesson set From a colleague with 2 cases." in out
    assert main(["--data-dir", str(other), "sets", "list"]) == 0
    assert "From a colleague" in capsys.readouterr().out


def test_quiz_results_print_and_write_csv(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(data_dir), "quiz", "results"]) == 0
    out = capsys.readouterr().out
    assert "Ada" in out and "50.0" in out and "@Grace" in out
    target = tmp_path / "results.csv"
    assert main(["--data-dir", str(data_dir), "quiz", "results", "--set", "Week 3", "--csv", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert {r["learner"] for r in rows} == {"Ada", "'@Grace"}  # a formula cell is neutralised
    answers = tmp_path / "answers.csv"
    assert main(["--data-dir", str(data_dir), "quiz", "results", "--answers", "--csv", str(answers)]) == 0
    assert len(list(csv.DictReader(io.StringIO(answers.read_text())))) == 3
    assert main(["--data-dir", str(data_dir), "quiz", "results", "--set", "Other"]) == 0
    assert "No quiz answers yet for 'Other'" in capsys.readouterr().out
