"""Lesson sets, annotations and quiz answers in the store (``medrag.store.teaching``), on both backends.

Also the small library the other teaching tests build on (:func:`make_library`): a handful of cases with
real PNG files, written straight into a store (no encoder, no index), including an NIH-style expert box
and demo phantoms whose findings are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pytest
from PIL import Image

from medrag.errors import InputError
from medrag.records import Case
from medrag.teaching.model import Annotation, ItemRef, QuizAnswer

if TYPE_CHECKING:
    from medrag.store import Store

#: (case id, label, dataset, extra) of the small library; ids are short on purpose (the store does not care).
REAL = (
    ("n1", "normal", "nih", {"fine_label": "No Finding", "sex": "F", "age": "36"}),
    ("n2", "normal", "nih", {}),
    ("n3", "normal", "kermany", {}),
    ("p1", "pneumonia", "nih", {"bbox_xywh_in_output_px": "Pneumonia:20,30,16,12", "fine_label": "Pneumonia"}),
    ("p2", "pneumonia", "nih", {}),
    ("p3", "pneumonia", "kermany", {"fine_label": "viral pneumonia"}),
)


def write_png(path: Path, seed: int, side: int = 64) -> Path:
    """A distinct grey PNG (``seed`` decides its noise)."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(side, side), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def make_library(store: Store, folder: Path, *, phantoms: bool = True) -> list[Case]:
    """Six real-looking cases (64 px) and, optionally, two demo phantoms (128 px) with known findings."""
    cases = []
    for i, (case_id, label, dataset, extra) in enumerate(REAL):
        path = write_png(folder / f"{dataset}_{case_id}.png", i)
        cases.append(
            Case(
                case_id,
                label,
                dataset,
                str(path),
                str(path),
                patient_id=f"{dataset}_{i}",
                view="PA",
                extra={**extra, "source_file": path.name},
            )
        )
    if phantoms:
        from medrag.phantoms import generate_phantom

        for index, findings in ((3, ("nodule/mass",)), (4, ())):
            pixels = generate_phantom(frozenset(findings), 0 * 1_000_003 + index, 128)
            path = folder / f"syn_0_{index:05d}.png"
            Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L").save(path)
            label = "nodule/mass" if findings else "normal"
            extra = {"findings": "|".join(findings)} if findings else {}
            cases.append(
                Case(
                    f"s{index}",
                    label,
                    "synthetic",
                    str(path),
                    str(path),
                    patient_id=f"syn-0-{index:05d}",
                    view="PA",
                    synthetic=True,
                    extra=extra,
                )
            )
    store.add_cases(cases)
    return cases


def test_a_set_is_created_filled_reordered_and_deleted(any_store: Any) -> None:
    set_id = any_store.create_lesson_set("  Normal   vs pneumonia ", "Week 3")
    refs = [ItemRef("case", "a"), ItemRef("case", "b"), ItemRef("analysis", "7")]
    assert any_store.add_lesson_items(set_id, [*refs, ItemRef("case", "a")], "look at the bases") == 3
    lesson = any_store.lesson_set_by_name("normal vs PNEUMONIA")
    assert lesson is not None and lesson.name == "Normal vs pneumonia" and lesson.description == "Week 3"
    assert lesson.refs == refs and [i.position for i in lesson.items] == [1, 2, 3]
    assert {i.note for i in lesson.items} == {"look at the bases"}

    last = lesson.items[2].item_id
    any_store.move_lesson_item(last, -10)  # stops at the top
    assert [r.ref_id for r in any_store.get_lesson_set(set_id).refs] == ["7", "a", "b"]  # type: ignore[union-attr]
    any_store.update_lesson_notes({last: "an analysis"})
    assert any_store.remove_lesson_item(lesson.items[0].item_id)
    after = any_store.get_lesson_set(set_id)
    assert after is not None and [i.position for i in after.items] == [1, 2]
    assert after.items[0].note == "an analysis"
    with pytest.raises(InputError, match="every item"):
        any_store.reorder_lesson_items(set_id, [after.items[0].item_id])

    any_store.rename_lesson_set(set_id, "Pneumonia basics", "new")
    assert any_store.get_lesson_set(set_id).name == "Pneumonia basics"  # type: ignore[union-attr]
    assert any_store.delete_lesson_set(set_id)
    assert any_store.lesson_sets() == []
    with any_store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM lesson_items").fetchone()[0] == 0  # items went with the set


def test_names_are_checked(any_store: Any) -> None:
    any_store.create_lesson_set("Chest basics")
    with pytest.raises(InputError, match="exists already"):
        any_store.create_lesson_set("chest BASICS")
    other = any_store.create_lesson_set("Other")
    with pytest.raises(InputError, match="exists already"):
        any_store.rename_lesson_set(other, "Chest basics")
    for bad in ("", "   ", "x" * 500):
        with pytest.raises(InputError):
            any_store.create_lesson_set(bad)
    with pytest.raises(InputError, match="no lesson set"):
        any_store.add_lesson_items(9999, [ItemRef("case", "a")])
    with pytest.raises(InputError):
        ItemRef("image", "a")  # type: ignore[arg-type]


def test_annotations_are_stored_normalised_and_deleted(any_store: Any) -> None:
    ref = ItemRef("case", "a")
    box = any_store.add_annotation(Annotation(ref, "box", 50, 60, 10, 20, label="RLL"))
    arrow = any_store.add_annotation(Annotation(ref, "arrow", 50, 60, 10, 20, label="tip"))
    any_store.add_annotation(Annotation(ItemRef("analysis", "3"), "box", 1, 2, 3, 4))
    found = any_store.annotations_for([ref])
    assert [(a.annotation_id, a.shape) for a in found] == [(box, "box"), (arrow, "arrow")]
    assert (found[0].x0, found[0].y0, found[0].x1, found[0].y1) == (10, 20, 50, 60)  # a box's corners sorted
    assert (found[1].x0, found[1].y0, found[1].x1, found[1].y1) == (50, 60, 10, 20)  # an arrow keeps its direction
    assert any_store.delete_annotation(box) and not any_store.delete_annotation(box)
    with pytest.raises(InputError):
        Annotation(ref, "box", float("nan"), 0, 1, 1)


def test_quiz_answers_round_trip(any_store: Any) -> None:
    answers = [
        QuizAnswer("s1", "Set A", "Ada", "exam", 1, "label", ItemRef("case", "a"), "normal", "normal", True),
        QuizAnswer(
            "s1", "Set A", "Ada", "exam", 2, "locate", ItemRef("case", "b"), "pneumonia", "x", False, (3.5, 4.0)
        ),
        QuizAnswer("s2", "Set B", "Grace", "practice", 1, "label", ItemRef("case", "a"), "normal", "covid19", False),
    ]
    ids = any_store.save_quiz_answers(answers)
    assert len(set(ids)) == 3
    loaded = any_store.quiz_answers(quiz_name="Set A")
    assert [(a.question_no, a.correct, a.click) for a in loaded] == [(1, True, None), (2, False, (3.5, 4.0))]
    assert set(any_store.quiz_names()) == {"Set A", "Set B"}
    assert list(any_store.quiz_answers_frame(learner="Grace")["answer"]) == ["covid19"]
    assert any_store.delete_quiz_answers("Set B") == 1


def test_an_older_file_gains_the_teaching_tables_when_opened(tmp_path: Path) -> None:
    from medrag.store import Store

    path = tmp_path / "medrag.duckdb"
    Store(path)  # a current file, then made to look like one written before the teaching tables existed
    con = duckdb.connect(str(path))
    for table in ("lesson_items", "lesson_sets", "quiz_answers", "annotations"):
        con.execute(f"DROP TABLE {table}")
    con.close()
    store = Store(path)
    set_id = store.create_lesson_set("After the upgrade")
    assert store.get_lesson_set(set_id) is not None and store.annotations_for([ItemRef("case", "x")]) == []


def test_the_small_library_resolves_to_readable_items(memory_store: Store, tmp_path: Path) -> None:
    from medrag.teaching.items import resolve_refs

    make_library(memory_store, tmp_path)
    views = resolve_refs(
        memory_store, [ItemRef("case", "n1"), ItemRef("case", "s3"), ItemRef("case", "gone"), ItemRef("analysis", "12")]
    )
    n1 = views[ItemRef("case", "n1")]
    assert n1.label == "normal" and "nih_n1.png" in n1.title and "n1" != n1.title and Path(n1.image_path).is_file()
    assert ("fine label", "No Finding") in n1.details
    assert views[ItemRef("case", "s3")].synthetic and "synthetic" in views[ItemRef("case", "s3")].title
    assert views[ItemRef("case", "gone")].missing and views[ItemRef("analysis", "12")].missing
