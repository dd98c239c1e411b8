"""The class quiz in the app: set-up, a learner's questions, the reveal, the summary and the results.

State lives in ``st.session_state``: the educator's plan (:data:`PLAN`), the learner's session
(:data:`SESSION`), the question on screen (:data:`CURRENT`) and a click not yet submitted (:data:`CLICK`).
Every answer is stored the moment it is given, so a closed tab loses nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from medrag.errors import MedRAGError
from medrag.teaching.finding_quiz import quiz_findings
from medrag.teaching.model import QuizMode
from medrag.teaching.quiz import (
    MAX_QUESTIONS,
    Question,
    QuizPlan,
    QuizSession,
    QuizSource,
    make_plan,
    start_session,
)
from medrag.teaching.results import answers_table, case_titles, results_csv, results_table
from medrag.ui import annotate, images, roles
from medrag.ui.safe import escape_markdown
from medrag.ui.viewer import PLOTLY_CONFIG

if TYPE_CHECKING:
    from medrag.workbench import Workbench

PLAN = "class_quiz_plan"
SESSION = "class_quiz_session"
CURRENT = "class_quiz_current"
CLICK = "class_quiz_click"
MODES = {
    "exam": "Exam: answers revealed at the end",
    "practice": "Practice: each answer revealed at once, and the cases you get wrong come back sooner",
}


# ---------------------------------------------------------------------------------------------- reads and writes
def save_answer(workbench: Workbench, answer: Any) -> None:
    """Store one answer."""
    workbench.store.save_quiz_answers([answer])


def quiz_names(workbench: Workbench) -> list[str]:
    """Quizzes with stored answers, most recent first."""
    return workbench.store.quiz_names()


def answers_frame(workbench: Workbench, quiz_name: str | None = None) -> pd.DataFrame:
    """Stored answers (all quizzes, or one): every learner's, so the educator only, in class mode."""
    from medrag.ui.roles import require_educator

    require_educator("see the quiz results")
    return workbench.store.quiz_answers_frame(quiz_name=quiz_name)


# ---------------------------------------------------------------------------------------------- set-up
def render_setup(workbench: Workbench) -> None:
    """The educator's choices: source, number of questions, "where is it?" questions, mode; then Create."""
    from medrag.ui import data, lessons

    sets = [s.name for s in lessons.lesson_sets(workbench)]
    labels = data.label_counts(workbench)
    datasets = data.dataset_counts(workbench)
    has_real = any(name != "synthetic" for name in datasets)
    kind = st.radio(
        "Questions from",
        ["a lesson set", "library labels", "one finding"],
        horizontal=True,
        key="quiz_source_kind",
        index=0 if sets else 1,
        help='"One finding" asks of each film whether it shows that finding ("Is there an effusion on this '
        'film?"), for a library whose labels combine findings ("edema + effusion"); half its questions show it.',
    )
    ordered = False
    if kind == "a lesson set":
        if not sets:
            st.info("No lesson sets yet: build one on the Lessons page, or draw from library labels.")
            return
        chosen_set = st.selectbox("Lesson set", sets, key="quiz_source_set")
        ordered = st.checkbox("Ask in the set's order", key="quiz_ordered")
        source = QuizSource(lesson_set=chosen_set, real_only=False)
    elif kind == "one finding":
        left, mid, right = st.columns([2, 1, 1], vertical_alignment="bottom")
        # Dataset and switch first (they sit to the right): the finding list counts the cases they keep.
        dataset = mid.selectbox("Dataset", ["all", *datasets], key="quiz_source_dataset")
        real_only = right.toggle("Real cases only", value=has_real, key="quiz_real_only")
        kept = data.case_choices(workbench, real_only=real_only, dataset=None if dataset == "all" else dataset)
        findings = quiz_findings({str(k): int(v) for k, v in kept["label"].value_counts().items()})
        if not findings:
            left.info("No label of these cases names a finding; choose another dataset or import a labelled library.")
            return
        finding = left.selectbox("Finding", list(findings), key="quiz_source_finding",
                                 format_func=lambda f: f"{f} ({findings[f]:,} cases)")
        source = QuizSource(finding=finding, dataset=None if dataset == "all" else dataset, real_only=real_only)
    else:
        defaults = [name for name in ("normal", "pneumonia") if name in labels] or list(labels)[:2]
        left, mid, right = st.columns([2, 1, 1], vertical_alignment="bottom")
        chosen = left.multiselect("Labels", list(labels), default=defaults, key="quiz_source_labels")
        dataset = mid.selectbox("Dataset", ["all", *datasets], key="quiz_source_dataset")
        real_only = right.toggle("Real cases only", value=has_real, key="quiz_real_only")
        source = QuizSource(labels=tuple(chosen), dataset=None if dataset == "all" else dataset, real_only=real_only)
    left, mid, right = st.columns(3)
    n = int(left.number_input("Questions", 1, MAX_QUESTIONS, 10, key="quiz_n"))
    n_locate = int(
        mid.number_input(
            '"Where is it?" questions',
            0,
            MAX_QUESTIONS,
            1,
            key="quiz_n_locate",
            help="Click-on-the-image questions, for cases with a known region: NIH expert "
            "boxes, phantom findings, or a box you drew on the Lessons page.",
        )
    )
    picked = right.radio("Mode", list(MODES), format_func=lambda m: m.capitalize(), key="quiz_mode", horizontal=True)
    mode: QuizMode = "practice" if picked == "practice" else "exam"
    st.caption(MODES[mode])
    if st.button("Create the quiz", type="primary", key="quiz_create"):
        try:
            store = workbench.store
            plan = make_plan(store, source, mode=mode, n=n, n_locate=min(n_locate, n), ordered=ordered)
        except MedRAGError as exc:
            st.error(escape_markdown(str(exc)))
            return
        st.session_state[PLAN] = plan
        st.session_state.pop(SESSION, None)
        st.rerun()


def render_learner_start(workbench: Workbench, plan: QuizPlan) -> None:
    """A learner types a name and starts."""
    count = len(plan.questions) if plan.questions else min(plan.n, len(plan.candidates))
    st.markdown(f"**{escape_markdown(plan.name)}** · {plan.mode} · {count} questions")
    with st.form("quiz_learner_form", clear_on_submit=True):
        # Signed in through single sign-on: the quiz is answered under that name.
        name = st.text_input("Learner name", key="quiz_learner", placeholder="Your name",
                             value=roles.signed_on_name() or "")
        start = st.form_submit_button("Start", type="primary", key="quiz_start")
    if start:
        try:
            session = start_session(workbench.store, plan, name)
        except MedRAGError as exc:
            st.error(escape_markdown(str(exc)))
            return
        st.session_state[SESSION] = session
        st.session_state[CURRENT] = 1
        st.session_state[CLICK] = None
        st.rerun()
    if st.button("Set up another quiz", key="quiz_reset"):
        st.session_state.pop(PLAN, None)
        st.rerun()


# ---------------------------------------------------------------------------------------------- a question
def _figure(question: Question, *, clickable: bool, reveal: bool, click: tuple[float, float] | None) -> Any:
    pixels = images.load_pixels(question.image_path)
    regions = question.regions if reveal and question.kind == "locate" else ()
    # "pan", not "select": Streamlit selects a clicked point only when the drag mode is not a selection.
    return annotate.annotated_figure(pixels, regions=regions, clickable=clickable, drag="pan", marker=click, height=600)


def _answer(
    workbench: Workbench,
    session: QuizSession,
    number: int,
    *,
    label: str | None = None,
    click: tuple[float, float] | None = None,
) -> None:
    try:
        record = (
            session.answer_click(number, *click) if click is not None else session.answer_label(number, label or "")
        )
    except MedRAGError as exc:
        st.error(escape_markdown(str(exc)))
        return
    save_answer(workbench, record)
    st.session_state[CLICK] = None
    if session.mode == "exam":
        st.session_state[CURRENT] = session.next_unanswered() or number
    st.rerun()


def _reveal(session: QuizSession, question: Question) -> None:
    answer = session.answers[question.number]
    if answer.correct:
        st.success(f"Right: {escape_markdown(question.truth)}.")
    elif question.kind == "locate":
        st.error(f"Not there: the {escape_markdown(question.truth)} is inside the green outline.")
    else:
        what = "answer" if question.focus else "label"
        st.error(
            f"Not quite: the {what} is {escape_markdown(question.truth)} (you chose {escape_markdown(answer.answer)})."
        )
    st.caption(escape_markdown(question.title))
    if question.note:
        st.markdown("**Teaching note**")
        st.text(question.note)


def render_question(workbench: Workbench, session: QuizSession) -> None:
    """The question on screen: the image, the choices (or a click), then the reveal in practice."""
    number = int(st.session_state.get(CURRENT) or 1)
    question = session.question(number)
    answered = number in session.answers
    reveal = session.can_reveal(number)
    st.markdown(
        f"**Question {number} of {len(session.questions)}** · {escape_markdown(session.learner)} · "
        f"{session.mode} · {escape_markdown(session.quiz_name)}"
    )
    st.subheader(question.prompt, anchor=False)
    pending = st.session_state.get(CLICK)
    stored = session.answers[number].click if answered else None
    picture, side = st.columns([3, 2], gap="large")
    with picture:
        if question.kind == "locate" and not answered:
            event = st.plotly_chart(
                _figure(question, clickable=True, reveal=False, click=pending),
                config=annotate.SELECT_CONFIG,
                on_select="rerun",
                selection_mode="points",
                key=f"quiz_click_{session.session_id}_{number}",
            )
            clicked = annotate.read_click(event)
            if clicked is not None and clicked != pending:
                st.session_state[CLICK] = clicked
                st.rerun()
        else:
            st.plotly_chart(
                _figure(question, clickable=False, reveal=reveal, click=stored),
                config=PLOTLY_CONFIG,
                key=f"quiz_image_{session.session_id}_{number}",
            )
    with side:
        if not answered:
            if question.kind == "label":
                choice = st.radio(
                    "Your answer", question.choices, index=None, key=f"quiz_choice_{session.session_id}_{number}"
                )
                if st.button("Submit answer", type="primary", key="quiz_submit", disabled=choice is None):
                    _answer(workbench, session, number, label=choice)
            else:
                st.caption("Click on the image where the finding is, then submit.")
                if pending:
                    st.markdown(f"Your click: x = {pending[0]:.0f}, y = {pending[1]:.0f}")
                if st.button("Submit this position", type="primary", key="quiz_submit_click", disabled=pending is None):
                    _answer(workbench, session, number, click=pending)
                with st.expander("Or type the position (pixels from the top-left corner)"):
                    side_px = question.image_side or 1024.0
                    x = st.number_input(
                        "x (column)", 0.0, side_px, side_px / 2, 1.0, key=f"quiz_x_{session.session_id}_{number}"
                    )
                    y = st.number_input(
                        "y (row)", 0.0, side_px, side_px / 2, 1.0, key=f"quiz_y_{session.session_id}_{number}"
                    )
                    if st.button("Submit typed position", key="quiz_submit_typed"):
                        _answer(workbench, session, number, click=(float(x), float(y)))
        elif reveal:
            _reveal(session, question)
        else:
            st.info("Answer saved. The answers are revealed when the exam is over.")
        if answered and session.mode != "exam":
            following = session.next_unanswered()
            if following is not None and st.button("Next question", type="primary", key="quiz_next", shortcut="Right"):
                st.session_state[CURRENT] = following
                st.rerun()
            if following is None and st.button("See my results", type="primary", key="quiz_finish"):
                st.session_state[CURRENT] = None
                st.rerun()


# ---------------------------------------------------------------------------------------------- the end
def render_summary(workbench: Workbench, session: QuizSession) -> None:
    """Score, every question with the right answer, then: review my mistakes, next learner, new quiz."""
    st.subheader(f"{escape_markdown(session.learner)}: {session.right} of {len(session.questions)} right", anchor=False)
    rows = []
    for q in session.questions:
        a = session.answers.get(q.number)
        rows.append(
            {
                "question": q.number,
                "kind": "where is it?" if q.kind == "locate" else "label",
                "right answer": q.truth,
                "your answer": a.answer if a else "",
                "right": bool(a and a.correct),
                "case": q.title,
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="quiz_summary_table")
    for q in session.questions:
        a = session.answers.get(q.number)
        with st.expander(f"Question {q.number}: {q.truth} — {'right' if a and a.correct else 'wrong'}"):
            st.plotly_chart(
                _figure(q, clickable=False, reveal=True, click=a.click if a else None),
                config=PLOTLY_CONFIG,
                key=f"quiz_end_{session.session_id}_{q.number}",
            )
            st.caption(escape_markdown(q.title))
            if q.note:
                st.text(q.note)
    left, mid, right = st.columns(3)
    if session.mistakes() and left.button("Review my mistakes", type="primary", key="quiz_review"):
        st.session_state[SESSION] = session.review_round()
        st.session_state[CURRENT] = 1
        st.rerun()
    if mid.button("Next learner", key="quiz_next_learner"):
        st.session_state.pop(SESSION, None)
        st.rerun()
    if right.button("Set up another quiz", key="quiz_new_plan"):
        st.session_state.pop(SESSION, None)
        st.session_state.pop(PLAN, None)
        st.rerun()


def render_run(workbench: Workbench) -> None:
    """The quiz tab: set-up, then a learner's start, their questions, and their summary."""
    plan: QuizPlan | None = st.session_state.get(PLAN)
    session: QuizSession | None = st.session_state.get(SESSION)
    if plan is None:
        render_setup(workbench)
    elif session is None:
        render_learner_start(workbench, plan)
    elif st.session_state.get(CURRENT) is None or (session.finished and session.mode == "exam"):
        render_summary(workbench, session)
    else:
        render_question(workbench, session)


# ---------------------------------------------------------------------------------------------- results
def render_results(workbench: Workbench) -> None:
    """Per learner and quiz: answered, right, score; the answers; both as CSV (the educator only, in class mode)."""
    from medrag.ui.roles import is_educator

    if not is_educator():
        st.info("Quiz results (every learner's answers) are for the educator: sign in as the educator in the "
                "sidebar to see them.")
        return
    names = quiz_names(workbench)
    if not names:
        st.info("No answers yet: run a quiz first.")
        return
    chosen = st.selectbox("Quiz", ["all quizzes", *names], key="quiz_results_name")
    frame = answers_frame(workbench, None if chosen == "all quizzes" else chosen)
    table = results_table(frame)
    st.dataframe(table, hide_index=True, width="stretch", key="quiz_results_table")
    answers = answers_table(frame, case_titles(workbench.store, frame))
    left, right = st.columns(2)
    left.download_button(
        "Download results (CSV)",
        results_csv(table),
        file_name="medrag-quiz-results.csv",
        mime="text/csv",
        key="quiz_results_csv",
        type="primary",
    )
    right.download_button(
        "Download every answer (CSV)",
        results_csv(answers),
        file_name="medrag-quiz-answers.csv",
        mime="text/csv",
        key="quiz_answers_csv",
    )
    with st.expander(f"Every answer ({len(answers)})"):
        st.dataframe(answers, hide_index=True, width="stretch", key="quiz_answers_table")


__all__ = [
    "CLICK",
    "CURRENT",
    "PLAN",
    "SESSION",
    "answers_frame",
    "quiz_names",
    "render_learner_start",
    "render_question",
    "render_results",
    "render_run",
    "render_setup",
    "render_summary",
    "save_answer",
]
