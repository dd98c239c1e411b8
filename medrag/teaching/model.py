"""The teaching records: what a lesson set, an annotation and a stored quiz answer are (plain data, no I/O).

The store (:mod:`medrag.store.teaching`) reads and writes these; the other teaching modules build on them.
Image coordinates are pixels of the stored image: ``x`` the column, ``y`` the row, (0, 0) the top-left.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from medrag.errors import InputError
from medrag.textsafe import one_line

RefKind = Literal["case", "analysis"]
#: What a lesson item, an annotation or a quiz question can point at.
REF_KINDS: tuple[RefKind, ...] = ("case", "analysis")
ShapeKind = Literal["box", "arrow"]
SHAPES: tuple[ShapeKind, ...] = ("box", "arrow")
QuizMode = Literal["practice", "exam", "review"]
QUIZ_MODES: tuple[QuizMode, ...] = ("practice", "exam", "review")
QuestionKind = Literal["label", "locate"]

#: Longest lesson-set name, label and learner name kept (longer ones are refused, not cut).
MAX_NAME_CHARS = 120
#: Longest teaching note or set description kept.
MAX_NOTE_CHARS = 4_000


@dataclass(frozen=True, order=True)
class ItemRef:
    """A library case (``kind="case"``, its case id) or a saved analysis (``kind="analysis"``, its id)."""

    kind: RefKind
    ref_id: str

    def __post_init__(self) -> None:
        if self.kind not in REF_KINDS:
            raise InputError(f"Unknown item kind {self.kind!r}; use one of {', '.join(REF_KINDS)}.")
        if not str(self.ref_id).strip():
            raise InputError("An item needs a case id or an analysis id.")

    @property
    def key(self) -> str:
        """``"case:<id>"`` or ``"analysis:<id>"``: one string for widget keys and dictionaries."""
        return f"{self.kind}:{self.ref_id}"

    @classmethod
    def parse(cls, key: str) -> ItemRef:
        """The reverse of :attr:`key`."""
        kind, _, ref_id = str(key).partition(":")
        return cls(kind, ref_id)  # type: ignore[arg-type]  # checked in __post_init__


def clean_name(text: str, what: str = "name") -> str:
    """``text`` as a one-line name, or an :class:`InputError` when it is empty or too long."""
    name = " ".join(one_line(text).split())
    if not name:
        raise InputError(f"Give a {what} (it cannot be empty).")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"The {what} is {len(name)} characters long; keep it under {MAX_NAME_CHARS}.")
    return name


def clean_note(text: str) -> str:
    """A teaching note or description: printable text, line breaks kept, at most :data:`MAX_NOTE_CHARS`."""
    from medrag.textsafe import printable

    note = printable(str(text or "")).strip()
    if len(note) > MAX_NOTE_CHARS:
        raise InputError(f"The note is {len(note):,} characters long; keep it under {MAX_NOTE_CHARS:,}.")
    return note


@dataclass(frozen=True)
class LessonItem:
    """One case of a lesson set, at ``position`` (1 = first), with the educator's teaching note."""

    item_id: int
    set_id: int
    position: int
    ref: ItemRef
    note: str = ""


@dataclass(frozen=True)
class LessonSet:
    """A named, ordered list of cases for a class."""

    set_id: int
    name: str
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    items: tuple[LessonItem, ...] = ()

    @property
    def refs(self) -> list[ItemRef]:
        """The items' references, in order."""
        return [item.ref for item in self.items]


@dataclass(frozen=True)
class Annotation:
    """A box (corners ``x0, y0`` and ``x1, y1``) or an arrow (tail ``x0, y0``, head ``x1, y1``) with a label.

    ``source`` is ``"educator"`` for one drawn in the app, ``"nih"`` for an NIH expert box read from the
    case's metadata (shown, never stored).
    """

    ref: ItemRef
    shape: ShapeKind
    x0: float
    y0: float
    x1: float
    y1: float
    label: str = ""
    source: str = "educator"
    annotation_id: int | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise InputError(f"Unknown annotation shape {self.shape!r}; use one of {', '.join(SHAPES)}.")
        for value in (self.x0, self.y0, self.x1, self.y1):
            if not isinstance(value, (int, float)) or value != value or abs(value) > 1e6:
                raise InputError("Annotation coordinates must be finite pixel positions.")

    def normalised(self) -> Annotation:
        """A box with ``x0 <= x1`` and ``y0 <= y1`` (an arrow keeps its direction)."""
        if self.shape != "box":
            return self
        return replace(
            self, x0=min(self.x0, self.x1), x1=max(self.x0, self.x1), y0=min(self.y0, self.y1), y1=max(self.y0, self.y1)
        )


@dataclass(frozen=True)
class QuizAnswer:
    """One answer a learner gave, as stored (``quiz_answers`` table)."""

    session_id: str
    quiz_name: str
    learner: str
    mode: QuizMode
    question_no: int
    kind: QuestionKind
    ref: ItemRef
    truth: str
    answer: str
    correct: bool
    click: tuple[float, float] | None = None
    answered_at: datetime | None = None
    answer_id: int | None = None


__all__ = [
    "MAX_NAME_CHARS",
    "MAX_NOTE_CHARS",
    "QUIZ_MODES",
    "REF_KINDS",
    "SHAPES",
    "Annotation",
    "ItemRef",
    "LessonItem",
    "LessonSet",
    "QuestionKind",
    "QuizAnswer",
    "QuizMode",
    "RefKind",
    "ShapeKind",
    "clean_name",
    "clean_note",
]
