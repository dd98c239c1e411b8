"""Quizzes for a class: where the questions come from, the questions, a learner's session, scores and results.

A quiz is drawn from a **source** (:mod:`medrag.teaching.quiz_sources`): a lesson set, library cases with some
labels (``normal`` vs ``pneumonia``), or one finding of a multi-label library ("effusion or not":
:mod:`medrag.teaching.finding_quiz`), optionally one dataset, real cases only by default. A question asks for
the label (or whether the finding is there), or "where is it?" (the learner clicks on the image;
:mod:`medrag.teaching.regions` scores the click).

- **exam**: every learner gets the same questions (drawn once from the seed); nothing is revealed until
  the learner has answered them all.
- **practice**: each learner's questions follow their spaced-repetition schedule
  (:mod:`medrag.teaching.leitner`); each answer is revealed at once.
- **review**: the questions a learner got wrong, asked again ("review my mistakes").

Answers are stored per learner and quiz (the quiz's name is the set's name, or the source described);
:mod:`medrag.teaching.results` sums them up.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from medrag.errors import InputError
from medrag.teaching import leitner
from medrag.teaching.finding_quiz import question_for, regions_of
from medrag.teaching.model import ItemRef, QuestionKind, QuizAnswer, QuizMode, clean_name
from medrag.teaching.quiz_sources import Candidate, QuizSource, gather_candidates
from medrag.teaching.regions import Region, image_size, regions_for, score_click

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore

#: Most questions one quiz asks.
MAX_QUESTIONS = 100


@dataclass(frozen=True)
class Question:
    """One question: what is shown, what is asked and the right answer (hidden until revealed)."""

    number: int
    kind: QuestionKind
    ref: ItemRef
    image_path: str
    truth: str
    choices: tuple[str, ...]
    prompt: str
    title: str = ""
    caption: str = ""
    note: str = ""
    regions: tuple[Region, ...] = ()
    #: the image's longer side in pixels (the click tolerance scales with it)
    image_side: float = 0.0
    #: the one finding asked about ("" for a label question of a label quiz)
    focus: str = ""


@dataclass
class QuizSession:
    """One learner answering one quiz; answers are kept here and stored by the caller."""

    quiz_name: str
    learner: str
    mode: QuizMode
    questions: list[Question]
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    answers: dict[int, QuizAnswer] = field(default_factory=dict)

    def question(self, number: int) -> Question:
        """Question ``number`` (1-based)."""
        for question in self.questions:
            if question.number == number:
                return question
        raise InputError(f"This quiz has no question {number}; it has {len(self.questions)}.")

    def _record(self, question: Question, answer: str, correct: bool, click: tuple[float, float] | None) -> QuizAnswer:
        if question.number in self.answers:
            raise InputError(f"Question {question.number} is answered already; go on to the next one.")
        record = QuizAnswer(
            session_id=self.session_id,
            quiz_name=self.quiz_name,
            learner=self.learner,
            mode=self.mode,
            question_no=question.number,
            kind=question.kind,
            ref=question.ref,
            truth=question.truth,
            answer=answer,
            correct=correct,
            click=click,
        )
        self.answers[question.number] = record
        return record

    def answer_label(self, number: int, label: str) -> QuizAnswer:
        """Answer a label question (or give a label to a "where is it?" one: it is then wrong)."""
        question = self.question(number)
        return self._record(question, str(label), question.kind == "label" and str(label) == question.truth, None)

    def answer_click(self, number: int, x: float, y: float) -> QuizAnswer:
        """Answer a "where is it?" question with a click at image pixel (x, y)."""
        question = self.question(number)
        if question.kind != "locate":
            raise InputError(f"Question {number} asks for a label, not a position.")
        scored = score_click(question.regions, float(x), float(y), image_side=question.image_side)
        return self._record(question, f"clicked at x={x:.0f}, y={y:.0f}", scored.correct, (float(x), float(y)))

    @property
    def finished(self) -> bool:
        """Every question answered."""
        return len(self.answers) >= len(self.questions)

    @property
    def right(self) -> int:
        """How many answers were right."""
        return sum(a.correct for a in self.answers.values())

    def next_unanswered(self) -> int | None:
        """The first question not answered yet, or None."""
        return next((q.number for q in self.questions if q.number not in self.answers), None)

    def can_reveal(self, number: int) -> bool:
        """Whether the right answer to ``number`` may be shown: after answering it, or in an exam at the end."""
        if number not in self.answers:
            return False
        return self.finished if self.mode == "exam" else True

    def mistakes(self) -> list[Question]:
        """The questions answered wrong, in order."""
        return [q for q in self.questions if q.number in self.answers and not self.answers[q.number].correct]

    def review_round(self) -> QuizSession:
        """A new session asking this session's mistakes again (mode ``review``, numbered from 1)."""
        wrong = self.mistakes()
        if not wrong:
            raise InputError("No mistakes to review: every answer was right.")
        questions = [replace(q, number=i) for i, q in enumerate(wrong, start=1)]
        return QuizSession(self.quiz_name, self.learner, "review", questions)


# ---------------------------------------------------------------------------------------------- questions
def _question(number: int, candidate: Candidate, kind: QuestionKind, choices: tuple[str, ...]) -> Question:
    view = candidate.view
    prompt = "Which label fits this image?"
    if candidate.focus:
        prompt = question_for(candidate.focus)
    question = Question(
        number=number, kind="label", ref=view.ref, image_path=view.image_path, truth=candidate.truth, choices=choices,
        prompt=prompt, title=view.title, caption=view.caption, note=candidate.note, focus=candidate.focus,
    )
    if kind == "label":
        return question
    regions = tuple(regions_for(view.case, candidate.annotations, view.image_path))
    if candidate.focus:
        regions = regions_of(regions, candidate.focus)
    size = image_size(view.image_path) or (0, 0)
    finding = regions[0].label.replace(" (NIH expert box)", "").lower() if regions else "finding"
    return replace(question, kind="locate", truth=finding, prompt=f"Where is the {finding}? Click on it.",
                   regions=regions, image_side=float(max(size)))


def _balanced(candidates: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    """Shuffled, with the answers taking turns (so a rare label is asked as often as a common one)."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.truth, []).append(c)
    for group in groups.values():
        rng.shuffle(group)
    order = sorted(groups)
    rng.shuffle(order)
    out: list[Candidate] = []
    while any(groups.values()):
        for label in order:
            if groups[label]:
                out.append(groups[label].pop())
    return out


def _assemble(ordered: list[Candidate], choices: tuple[str, ...], n: int, n_locate: int) -> list[Question]:
    """The first ``n`` candidates as questions; the first ``n_locate`` locatable ones ask "where is it?"."""
    n = max(1, min(int(n), MAX_QUESTIONS, len(ordered)))
    locatable = [c for c in ordered if c.locatable]
    n_locate = max(0, min(int(n_locate), n, len(locatable)))
    # Make room for the localisation questions first, then fill up with label questions in order.
    locate_refs = {c.ref for c in locatable[:n_locate]}
    chosen = [c for c in ordered if c.ref in locate_refs]
    chosen += [c for c in ordered if c.ref not in locate_refs][: n - len(chosen)]
    rank = {c.ref: i for i, c in enumerate(ordered)}
    chosen.sort(key=lambda c: rank[c.ref])
    return [
        _question(i, c, "locate" if c.ref in locate_refs else "label", choices) for i, c in enumerate(chosen, start=1)
    ]


def build_questions(
    candidates: Sequence[Candidate],
    choices: tuple[str, ...],
    n: int,
    *,
    n_locate: int = 0,
    seed: int = 0,
    ordered: bool = False,
) -> list[Question]:
    """``n`` questions drawn with ``seed`` (the same for every learner of an exam).

    ``ordered`` keeps the candidates' order (a lesson set's) instead of shuffling them with the labels taking turns.
    """
    if not candidates:
        raise InputError("No cases to make questions of; choose another source.")
    rng = random.Random(seed)
    pool = list(candidates) if ordered else _balanced(candidates, rng)
    return _assemble(pool, choices, n, n_locate)


def practice_questions(
    candidates: Sequence[Candidate],
    choices: tuple[str, ...],
    n: int,
    history: Sequence[QuizAnswer],
    *,
    n_locate: int = 0,
    seed: int = 0,
) -> list[Question]:
    """``n`` questions for one learner's practice round: the cases their spaced-repetition schedule says are due."""
    if not candidates:
        raise InputError("No cases to make questions of; choose another source.")
    rounds = leitner.rounds_of([a.session_id for a in history])
    cards = leitner.replay((rounds[a.session_id], a.ref.key, a.correct) for a in history)
    by_key = {c.ref.key: c for c in _balanced(candidates, random.Random(seed))}
    order = leitner.schedule(list(by_key), cards, len(rounds))  # new cases keep the balanced order
    return _assemble([by_key[k] for k in order], choices, n, n_locate)


@dataclass(frozen=True)
class QuizPlan:
    """A quiz set up by the educator: its source, mode, size and (for an exam) its questions."""

    source: QuizSource
    mode: QuizMode
    n: int
    n_locate: int
    seed: int
    candidates: tuple[Candidate, ...]
    choices: tuple[str, ...]
    questions: tuple[Question, ...] = ()

    @property
    def name(self) -> str:
        """The name the answers are stored under."""
        return self.source.name


def make_plan(
    store: AnyStore,
    source: QuizSource,
    *,
    mode: QuizMode = "exam",
    n: int = 10,
    n_locate: int = 0,
    seed: int | None = None,
    ordered: bool = False,
) -> QuizPlan:
    """Gather the cases and, for an exam, draw the questions every learner will answer."""
    if mode not in ("practice", "exam"):
        raise InputError(f"Unknown quiz mode {mode!r}; use practice or exam.")
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    candidates, choices = gather_candidates(store, source)
    questions = (
        build_questions(candidates, choices, n, n_locate=n_locate, seed=seed, ordered=ordered) if mode == "exam" else []
    )
    return QuizPlan(source, mode, int(n), int(n_locate), seed, tuple(candidates), choices, tuple(questions))


def start_session(store: AnyStore, plan: QuizPlan, learner: str) -> QuizSession:
    """A session for one learner: the exam's questions, or their own practice round."""
    learner = clean_name(learner, "learner name")
    if plan.mode == "exam":
        questions = list(plan.questions)
    else:
        history = store.quiz_answers(quiz_name=plan.name, learner=learner)
        questions = practice_questions(
            plan.candidates, plan.choices, plan.n, history, n_locate=plan.n_locate, seed=plan.seed
        )
    return QuizSession(plan.name, learner, plan.mode, questions)


__all__ = [
    "MAX_QUESTIONS",
    "Candidate",
    "Question",
    "QuizPlan",
    "QuizSession",
    "QuizSource",
    "build_questions",
    "gather_candidates",
    "make_plan",
    "practice_questions",
    "start_session",
]
