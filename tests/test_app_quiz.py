"""AppTest flows of the Quiz page: an exam for two learners with a "where is it?" question, the results,
practice with an immediate reveal, and a review-my-mistakes round.

Over the teaching tests' demo data folder (test_app_lessons.py); a "where is it?" answer is typed (AppTest
cannot click a plotly chart; the browser test clicks).
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from medrag.ui import quiz as quiz_ui
from test_app_lessons import ok, store_of, teaching_app

pytestmark = pytest.mark.slow


@pytest.fixture()
def app(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    at = teaching_app(tmp_path_factory, monkeypatch)
    store = store_of(at)
    for name in store.quiz_names():
        store.delete_quiz_answers(name)
    at.switch_page("pages/7_Quiz.py").run()
    ok(at)
    return at


def _setup(app: AppTest, labels: list[str], mode: str, n: int, n_locate: int) -> None:
    app.radio(key="quiz_source_kind").set_value("library labels").run()
    app.multiselect(key="quiz_source_labels").set_value(labels)
    app.number_input(key="quiz_n").set_value(n)
    app.number_input(key="quiz_n_locate").set_value(n_locate)
    app.radio(key="quiz_mode").set_value(mode)
    app.button(key="quiz_create").click().run()
    ok(app)


def _start(app: AppTest, learner: str) -> None:
    app.text_input(key="quiz_learner").set_value(learner)
    app.button(key="quiz_start").click().run()
    ok(app)


def _answer_all(app: AppTest, right: bool) -> None:
    """Answer every question of the session on screen, all right or all wrong."""
    session = app.session_state[quiz_ui.SESSION]
    for _ in session.questions:
        session = app.session_state[quiz_ui.SESSION]
        number = app.session_state[quiz_ui.CURRENT]
        question = session.question(number)
        if question.kind == "locate":
            x, y = question.regions[0].centre if right else (0.0, 0.0)
            app.number_input(key=f"quiz_x_{session.session_id}_{number}").set_value(x)
            app.number_input(key=f"quiz_y_{session.session_id}_{number}").set_value(y)
            app.button(key="quiz_submit_typed").click().run()
        else:
            wrong = next(c for c in question.choices if c != question.truth)
            app.radio(key=f"quiz_choice_{session.session_id}_{number}").set_value(
                question.truth if right else wrong
            ).run()
            app.button(key="quiz_submit").click().run()
        ok(app)
        if session.mode != "exam":
            assert [s for s in [*app.success, *app.error] if s.value.startswith(("Right", "Not"))]  # revealed at once
            following = app.button(key="quiz_next") if session.next_unanswered() else app.button(key="quiz_finish")
            following.click().run()


def test_an_exam_for_two_learners_with_a_localisation_question(app: AppTest) -> None:
    _setup(app, ["normal", "effusion"], "exam", 2, 1)
    plan = app.session_state[quiz_ui.PLAN]
    assert [q.kind for q in plan.questions].count("locate") == 1 and len(plan.questions) == 2
    _start(app, "Ada")
    assert any("Question 1 of 2" in m.value for m in app.markdown)
    first = app.session_state[quiz_ui.SESSION].question(1)
    _answer_all(app, right=True)
    # Exam: nothing was revealed on the way; at the end, the summary with every right answer.
    assert any(s.value.startswith("Ada: 2 of 2 right") for s in app.subheader)
    assert list(app.dataframe[0].value["right answer"])[0] == first.truth
    app.button(key="quiz_next_learner").click().run()
    _start(app, "Grace")
    _answer_all(app, right=False)
    assert any(s.value.startswith("Grace: 0 of 2 right") for s in app.subheader)

    answers = store_of(app).quiz_answers()
    assert {(a.learner, a.correct) for a in answers} == {("Ada", True), ("Grace", False)} and len(answers) == 4
    assert [a.click for a in answers if a.kind == "locate" and a.learner == "Grace"] == [(0.0, 0.0)]

    app.button(key="quiz_review").click().run()  # Grace reviews her mistakes: practice-style, revealed at once
    ok(app)
    assert app.session_state[quiz_ui.SESSION].mode == "review"
    _answer_all(app, right=True)
    assert any(s.value.startswith("Grace: 2 of 2 right") for s in app.subheader)

    app.session_state["quiz_tabs"] = "Results"
    app.run()
    ok(app)
    table = app.dataframe[0].value.set_index(["learner", "mode"])
    assert table.at[("Ada", "exam"), "score %"] == 100.0 and table.at[("Grace", "exam"), "score %"] == 0.0
    assert table.at[("Grace", "review"), "right"] == 2 and table.at[("Ada", "exam"), "located"] == "1 / 1"
    assert len(app.get("download_button")) == 2


def test_practice_reveals_each_answer_and_a_lesson_set_can_be_the_source(app: AppTest) -> None:
    store = store_of(app)
    for lesson in store.lesson_sets():
        store.delete_lesson_set(lesson.set_id)
    from medrag.teaching.model import ItemRef

    ids = [str(c) for c in store.cases_frame()["case_id"][:4]]
    set_id = store.create_lesson_set("Four phantoms")
    store.add_lesson_items(set_id, [ItemRef("case", c) for c in ids], "a note")
    app.run()
    app.radio(key="quiz_source_kind").set_value("a lesson set").run()
    app.selectbox(key="quiz_source_set").set_value("Four phantoms")
    app.number_input(key="quiz_n").set_value(3)
    app.number_input(key="quiz_n_locate").set_value(0)
    app.radio(key="quiz_mode").set_value("practice")
    app.button(key="quiz_create").click().run()
    ok(app)
    _start(app, "Ada")
    _answer_all(app, right=True)
    assert any(s.value.startswith("Ada: 3 of 3 right") for s in app.subheader)
    assert {a.ref.ref_id for a in store.quiz_answers(quiz_name="Four phantoms")} <= set(ids)


def test_a_quiz_on_one_finding_asks_yes_or_no_of_every_film(app: AppTest) -> None:
    app.radio(key="quiz_source_kind").set_value("one finding").run()
    ok(app)
    finding = app.selectbox(key="quiz_source_finding")
    labels = store_of(app).label_counts()
    with_effusion = sum(n for label, n in labels.items() if "effusion" in label.split(" + "))
    assert f"effusion ({with_effusion:,} cases)" in finding.options  # counted over the cases the quiz draws from
    assert not any(o.startswith("normal") for o in finding.options)  # no finding is not a finding to ask about
    finding.set_value("effusion")
    app.number_input(key="quiz_n").set_value(4)
    app.number_input(key="quiz_n_locate").set_value(1)
    app.radio(key="quiz_mode").set_value("practice")
    app.button(key="quiz_create").click().run()
    ok(app)
    plan = app.session_state[quiz_ui.PLAN]
    assert plan.choices == ("effusion", "no effusion") and plan.name.startswith("effusion or not")
    _start(app, "Ada")
    prompts, truths = set(), []
    session = app.session_state[quiz_ui.SESSION]
    for question in session.questions:
        prompts.add(question.prompt)
        truths.append(question.truth)
    assert "Is there an effusion on this film?" in prompts
    assert {"effusion", "no effusion"} <= set(truths)  # the answers take turns
    _answer_all(app, right=True)
    assert any(s.value.startswith("Ada: 4 of 4 right") for s in app.subheader)
    answers = store_of(app).quiz_answers(quiz_name=plan.name)
    assert len(answers) == 4 and all(a.correct for a in answers)
