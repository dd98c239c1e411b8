"""Quizzes: sources, questions, exam vs practice, review, scoring, results, CSV; spaced repetition (Leitner)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medrag.errors import InputError
from medrag.teaching import leitner
from medrag.teaching.model import ItemRef, QuizAnswer
from medrag.teaching.quiz import (
    QuizSource,
    build_questions,
    gather_candidates,
    make_plan,
    practice_questions,
    start_session,
)
from medrag.teaching.results import answers_table, case_titles, results_csv, results_table
from test_teaching_store import make_library

if TYPE_CHECKING:
    from medrag.store import Store


@pytest.fixture()
def library(memory_store: Store, tmp_path: Path) -> Store:
    make_library(memory_store, tmp_path)
    return memory_store


# ---------------------------------------------------------------------------------------------- Leitner
def test_leitner_moves_cards_up_on_right_and_back_to_one_on_wrong() -> None:
    cards = leitner.replay([(0, "a", True), (0, "b", False), (1, "a", True), (2, "a", False), (2, "c", True)])
    assert cards["a"] == leitner.Card(box=1, last_round=2)  # 2 → 3, then wrong: back to 1
    assert cards["b"] == leitner.Card(box=1, last_round=0)
    assert cards["c"] == leitner.Card(box=2, last_round=2)
    top = leitner.replay([(r, "x", True) for r in range(10)])
    assert top["x"].box == leitner.BOXES  # capped
    assert leitner.rounds_of(["s1", "s1", "s2", "s1", "s3"]) == {"s1": 0, "s2": 1, "s3": 2}


def test_a_wrong_answer_comes_back_sooner_than_a_right_one() -> None:
    cards = leitner.replay([(0, "right", True), (0, "wrong", False)])
    # Round 1: the wrong card (box 1, every round) is due; the right one (box 2, every 2nd round) is not.
    assert leitner.schedule(["right", "new", "wrong"], cards, 1) == ["wrong", "new", "right"]
    # Round 2: both are due; the lower box first.
    assert leitner.schedule(["right", "wrong"], cards, 2) == ["wrong", "right"]
    again = leitner.schedule(["n1", "n2", "n3", "n4"], {}, 0, seed=5)
    assert again == leitner.schedule(["n1", "n2", "n3", "n4"], {}, 0, seed=5) and sorted(again) == [
        "n1",
        "n2",
        "n3",
        "n4",
    ]


def test_practice_asks_the_cases_answered_wrong_first(library: Store) -> None:
    candidates, choices = gather_candidates(library, QuizSource(labels=("normal", "pneumonia")))
    history = [
        QuizAnswer("s1", "q", "Ada", "practice", i, "label", c.ref, c.view.label, "x", c.ref.ref_id != "p2")
        for i, c in enumerate(candidates, start=1)
    ]
    questions = practice_questions(candidates, choices, 2, history, seed=1)
    assert questions[0].ref == ItemRef("case", "p2")  # the only wrong one: box 1, due in the next round
    assert questions == practice_questions(candidates, choices, 2, history, seed=1)  # deterministic


# ---------------------------------------------------------------------------------------------- sources and questions
def test_sources_pick_labels_datasets_and_real_cases(library: Store) -> None:
    candidates, choices = gather_candidates(library, QuizSource(labels=("normal", "pneumonia")))
    assert choices == ("normal", "pneumonia")
    assert {c.ref.ref_id for c in candidates} == {"n1", "n2", "n3", "p1", "p2", "p3"}  # phantoms left out (real only)
    nih, _ = gather_candidates(library, QuizSource(labels=("normal", "pneumonia"), dataset="nih"))
    assert {c.ref.ref_id for c in nih} == {"n1", "n2", "p1", "p2"}
    everything, all_choices = gather_candidates(library, QuizSource(real_only=False))
    assert {"s3", "s4"} <= {c.ref.ref_id for c in everything} and "nodule/mass" in all_choices
    assert QuizSource(labels=("normal", "pneumonia"), dataset="nih").name == "normal vs pneumonia · nih · real only"
    with pytest.raises(InputError, match="No cases"):
        gather_candidates(library, QuizSource(labels=("covid19",)))
    with pytest.raises(InputError, match="no lesson set"):
        gather_candidates(library, QuizSource(lesson_set="nope"))


def test_questions_are_balanced_reproducible_and_include_localisation(library: Store) -> None:
    candidates, choices = gather_candidates(library, QuizSource(labels=("normal", "pneumonia")))
    questions = build_questions(candidates, choices, 4, n_locate=1, seed=11)
    assert questions == build_questions(candidates, choices, 4, n_locate=1, seed=11)
    assert [q.number for q in questions] == [1, 2, 3, 4]
    assert len({q.ref for q in questions}) == 4
    assert Counter(q.truth for q in questions if q.kind == "label") + Counter(
        "pneumonia" for q in questions if q.kind == "locate"
    ) == Counter({"normal": 2, "pneumonia": 2})
    [locate] = [q for q in questions if q.kind == "locate"]
    assert locate.ref == ItemRef("case", "p1") and locate.regions and locate.image_side == 64
    assert locate.prompt == "Where is the pneumonia? Click on it."
    # More questions than cases: every case once; more localisation questions than regions: as many as exist.
    assert len(build_questions(candidates, choices, 50, n_locate=9, seed=1)) == 6
    assert sum(q.kind == "locate" for q in build_questions(candidates, choices, 50, n_locate=9, seed=1)) == 1


def test_a_lesson_set_quiz_keeps_its_order_and_notes(library: Store) -> None:
    set_id = library.create_lesson_set("Five")
    for ref_id, note in (("p3", "viral"), ("n1", ""), ("p1", "look right lower"), ("n2", ""), ("s3", "phantom")):
        library.add_lesson_items(set_id, [ItemRef("case", ref_id)], note)
    candidates, choices = gather_candidates(library, QuizSource(lesson_set="five", real_only=False))
    assert [c.ref.ref_id for c in candidates] == ["p3", "n1", "p1", "n2", "s3"]
    assert set(choices) == {"normal", "pneumonia", "nodule/mass"}
    ordered = build_questions(candidates, choices, 5, n_locate=2, seed=3, ordered=True)
    assert [q.ref.ref_id for q in ordered] == ["p3", "n1", "p1", "n2", "s3"]
    assert [q.kind for q in ordered] == ["label", "label", "locate", "label", "locate"]
    assert ordered[2].note == "look right lower" and ordered[4].regions[0].source == "phantom"


# ---------------------------------------------------------------------------------------------- sessions
def test_an_exam_reveals_nothing_until_the_end_and_every_learner_gets_the_same_questions(library: Store) -> None:
    plan = make_plan(
        library, QuizSource(labels=("normal", "pneumonia"), dataset="nih"), mode="exam", n=2, n_locate=1, seed=4
    )
    ada, grace = start_session(library, plan, "Ada"), start_session(library, plan, " Grace ")
    assert ada.questions == grace.questions and grace.learner == "Grace" and ada.session_id != grace.session_id
    locate = next(q for q in ada.questions if q.kind == "locate")
    label = next(q for q in ada.questions if q.kind == "label")
    cx, cy = locate.regions[0].centre
    first = ada.answer_click(locate.number, cx, cy)
    assert first.correct and first.click == (cx, cy)
    assert not ada.can_reveal(locate.number)  # an exam: not yet
    with pytest.raises(InputError, match="answered already"):
        ada.answer_click(locate.number, cx, cy)
    with pytest.raises(InputError, match="asks for a label"):
        ada.answer_click(label.number, 1, 1)
    wrong = next(c for c in label.choices if c != label.truth)
    assert not ada.answer_label(label.number, wrong).correct
    assert ada.finished and ada.right == 1 and ada.can_reveal(label.number)
    assert grace.answer_click(locate.number, 0, 0).correct is False  # the top-left corner is not the lesion
    review = ada.review_round()
    assert (
        review.mode == "review" and [q.ref for q in review.questions] == [label.ref] and review.questions[0].number == 1
    )
    with pytest.raises(InputError, match="anonymous|name|empty"):
        start_session(library, plan, "   ")


def test_practice_reveals_each_answer_at_once(library: Store) -> None:
    plan = make_plan(library, QuizSource(labels=("normal", "pneumonia")), mode="practice", n=3, seed=2)
    assert plan.questions == ()  # drawn per learner
    session = start_session(library, plan, "Ada")
    first = session.questions[0]
    session.answer_label(first.number, first.truth)
    assert session.can_reveal(first.number) and not session.can_reveal(session.questions[1].number)
    with pytest.raises(InputError, match="No mistakes"):
        session.review_round()


def test_results_per_learner_and_a_csv_without_formulas(library: Store) -> None:
    plan = make_plan(
        library, QuizSource(labels=("normal", "pneumonia"), dataset="nih"), mode="exam", n=2, n_locate=1, seed=4
    )
    for learner, right in (("Ada", True), ('=HYPERLINK("http://x")', False)):
        session = start_session(library, plan, learner)
        for q in session.questions:
            if q.kind == "locate":
                x, y = q.regions[0].centre if right else (0.0, 0.0)
                session.answer_click(q.number, x, y)
            else:
                session.answer_label(q.number, q.truth if right else next(c for c in q.choices if c != q.truth))
        library.save_quiz_answers(list(session.answers.values()))
    table = results_table(library.quiz_answers_frame())
    by_learner = table.set_index("learner")
    assert by_learner.at["Ada", "score %"] == 100.0 and by_learner.at["Ada", "located"] == "1 / 1"
    assert by_learner.at['=HYPERLINK("http://x")', "right"] == 0 and set(table["answered"]) == {2}
    rows = list(csv.DictReader(io.StringIO(results_csv(table).decode("utf-8"))))
    assert {r["learner"] for r in rows} == {"Ada", '\'=HYPERLINK("http://x")'}
    frame = library.quiz_answers_frame(learner="Ada")
    answers = answers_table(frame, case_titles(library, frame))
    assert list(answers["question"]) == [1, 2] and answers["right"].all()
    assert all(name.startswith("nih_") for name in answers["case name"])  # readable names beside the ids
    assert results_table(library.quiz_answers_frame(learner="nobody")).empty
