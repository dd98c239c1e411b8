"""A quiz on one finding of a multi-label library: "Is there an effusion on this film?" over every case."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medrag.errors import InputError
from medrag.records import Case
from medrag.teaching.finding_quiz import question_for, quiz_findings
from medrag.teaching.quiz import QuizSource, gather_candidates, make_plan, start_session
from medrag.teaching.results import results_table
from test_teaching_store import write_png

if TYPE_CHECKING:
    from medrag.store import Store

#: NIH-style cases: one label per combination of findings; two carry expert boxes.
MULTI = (
    ("m1", "normal", {}),
    ("m2", "normal", {}),
    ("m3", "effusion", {"bbox": "Effusion:10,40,12,10"}),
    ("m4", "edema + effusion", {}),
    ("m5", "atelectasis + infiltration", {"bbox": "Infiltrate:30,20,14,14"}),
    ("m6", "effusion + pneumonia", {"bbox": "Pneumonia:5,5,10,10"}),
    ("m7", "pneumonia", {}),
)


@pytest.fixture()
def library(memory_store: Store, tmp_path: Path) -> Store:
    cases = [Case(cid, label, "nih-train", str(path := write_png(tmp_path / f"{cid}.png", i)), str(path),
                  patient_id=f"p{i}", view="PA", extra=extra)
             for i, (cid, label, extra) in enumerate(MULTI)]
    cases.append(Case("s1", "effusion", "synthetic", str(write_png(tmp_path / "s1.png", 99)),
                      str(tmp_path / "s1.png"), synthetic=True))
    memory_store.add_cases(cases)
    return memory_store


def test_the_findings_on_offer_are_every_labels_parts_without_normal(library: Store) -> None:
    findings = quiz_findings(library.label_counts())
    assert findings == {"effusion": 4, "pneumonia": 2, "atelectasis": 1, "edema": 1, "infiltration": 1}
    assert question_for("effusion") == "Is there an effusion on this film?"
    assert question_for("pneumothorax") == "Is there a pneumothorax on this film?"
    assert question_for("cardiomegaly") == "Is there cardiomegaly on this film?"


def test_each_case_is_answered_by_whether_its_label_names_the_finding(library: Store) -> None:
    candidates, choices = gather_candidates(library, QuizSource(finding="effusion"))
    assert choices == ("effusion", "no effusion")
    truth = {c.ref.ref_id: c.truth for c in candidates}
    # real cases only by default: the synthetic effusion is left out
    assert truth == {"m1": "no effusion", "m2": "no effusion", "m3": "effusion", "m4": "effusion",
                     "m5": "no effusion", "m6": "effusion", "m7": "no effusion"}
    with_phantoms, _ = gather_candidates(library, QuizSource(finding="effusion", real_only=False))
    assert {c.ref.ref_id for c in with_phantoms} - set(truth) == {"s1"}


def test_an_exam_asks_the_finding_half_the_time_and_scores_yes_and_no(library: Store) -> None:
    plan = make_plan(library, QuizSource(finding="effusion"), mode="exam", n=6, seed=3)
    assert plan.name == "effusion or not · real only"
    label_questions = [q for q in plan.questions if q.kind == "label"]
    assert Counter(q.truth for q in label_questions) == {"effusion": 3, "no effusion": 3}  # taking turns
    assert {q.prompt for q in label_questions} == {"Is there an effusion on this film?"}
    session = start_session(library, plan, "Ada")
    for q in session.questions:
        session.answer_label(q.number, "no effusion")
    assert session.right == 3
    library.save_quiz_answers(list(session.answers.values()))
    row = results_table(library.quiz_answers_frame()).iloc[0]
    assert (row["quiz"], row["answered"], row["right"], row["score %"]) == ("effusion or not · real only", 6, 3, 50)


def test_where_questions_come_only_from_cases_with_a_region_of_that_finding(library: Store) -> None:
    # m6 has effusion but only a pneumonia box; m3's effusion box is the one region of an effusion
    plan = make_plan(library, QuizSource(finding="effusion"), mode="exam", n=7, n_locate=3, seed=1)
    locate = [q for q in plan.questions if q.kind == "locate"]
    assert [q.ref.ref_id for q in locate] == ["m3"]
    assert locate[0].prompt == "Where is the effusion? Click on it." and len(locate[0].regions) == 1
    # NIH names the box "Infiltrate" where the label says "infiltration"
    plan = make_plan(library, QuizSource(finding="infiltration"), mode="exam", n=2, n_locate=1, seed=1)
    (where,) = [q for q in plan.questions if q.kind == "locate"]
    assert where.ref.ref_id == "m5" and where.truth == "infiltrate"


def test_a_finding_no_case_names_is_refused_with_what_to_do(library: Store) -> None:
    with pytest.raises(InputError, match="No real case has a label naming 'pneumothorax'; choose a finding"):
        make_plan(library, QuizSource(finding="pneumothorax"))
    with pytest.raises(InputError, match="of dataset 'synthetic'"):
        make_plan(library, QuizSource(finding="pneumonia", dataset="synthetic", real_only=False))
