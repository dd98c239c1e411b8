"""Where a quiz's questions come from: its source (a lesson set, library labels or one finding) and the
candidate cases drawn from it, each with its right answer and whether it has a region for "where is it?"."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from medrag.errors import InputError
from medrag.teaching.finding_quiz import answer_for, answers_for, finding_views, has_region_of
from medrag.teaching.items import ItemView, library_views, resolve_refs
from medrag.teaching.model import Annotation, ItemRef
from medrag.teaching.regions import is_locatable

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore


@dataclass(frozen=True)
class QuizSource:
    """Where a quiz's cases come from: a lesson set, labels of the library, or one finding (+ a dataset)."""

    lesson_set: str | None = None
    labels: tuple[str, ...] = ()
    dataset: str | None = None
    real_only: bool = True
    #: one finding ("effusion"): every case, asked whether its label names the finding
    finding: str | None = None

    @property
    def name(self) -> str:
        """The quiz's name in the results: the set's name, or the source described."""
        if self.lesson_set:
            return self.lesson_set
        if self.finding:
            parts = [f"{self.finding} or not"]
        else:
            parts = [" vs ".join(self.labels) if self.labels else "all labels"]
        if self.dataset:
            parts.append(self.dataset)
        if self.real_only:
            parts.append("real only")
        return " · ".join(parts)


@dataclass(frozen=True)
class Candidate:
    """A case a question can be made of, with its educator annotations and teaching note."""

    view: ItemView
    annotations: tuple[Annotation, ...] = ()
    note: str = ""
    #: the one finding a quiz asks about ("" for a label quiz): the answer is it or "no <it>"
    focus: str = ""
    #: the right answer ("" means the view's label)
    answer: str = ""

    @property
    def ref(self) -> ItemRef:
        """The case or analysis it shows."""
        return self.view.ref

    @property
    def truth(self) -> str:
        """The right answer to its label question."""
        return self.answer or self.view.label

    @property
    def locatable(self) -> bool:
        """Whether it has a ground-truth region (of its focus finding, when it has one) for "where is it?"."""
        if not self.view.image_path or not is_locatable(self.view.case, self.annotations):
            return False
        if not self.focus:
            return True
        return self.truth == self.focus and has_region_of(self.view.case, self.annotations, self.focus)


# ---------------------------------------------------------------------------------------------- candidates
def _library_views(store: AnyStore, source: QuizSource) -> list[ItemView]:
    labels = list(source.labels) or list(store.label_counts())
    return [view for label in labels
            for view in library_views(store, label=label, dataset=source.dataset, real_only=source.real_only)]


def gather_candidates(store: AnyStore, source: QuizSource) -> tuple[list[Candidate], tuple[str, ...]]:
    """The cases a quiz can ask about, and the labels a learner chooses from."""
    notes: dict[ItemRef, str] = {}
    if source.lesson_set:
        lesson = store.lesson_set_by_name(source.lesson_set)
        if lesson is None:
            raise InputError(f"There is no lesson set named {source.lesson_set!r}; pick one from the list.")
        resolved = resolve_refs(store, lesson.refs)
        views = [resolved[item.ref] for item in lesson.items if not resolved[item.ref].missing]
        notes = {item.ref: item.note for item in lesson.items}
        if source.real_only:
            views = [v for v in views if not v.synthetic]
    elif source.finding:
        views = finding_views(store, source.finding, source.dataset, source.real_only)
    else:
        views = _library_views(store, source)
    views = [v for v in views if v.image_path and v.label]
    if not views:
        raise InputError(
            f"No cases to ask about in {source.name!r}"
            + (" (real cases only: switch that off to include the synthetic phantoms)" if source.real_only else "")
            + "; choose another source."
        )
    refs = [v.ref for v in views] + [
        ItemRef("case", v.case.case_id) for v in views if v.case and v.ref.kind == "analysis"
    ]
    by_ref: dict[ItemRef, list[Annotation]] = {}
    for a in store.annotations_for(refs):
        by_ref.setdefault(a.ref, []).append(a)
    candidates = []
    for v in views:
        own = list(by_ref.get(v.ref, []))
        if v.case is not None and v.ref.kind == "analysis":
            own += by_ref.get(ItemRef("case", v.case.case_id), [])
        candidates.append(Candidate(v, tuple(own), notes.get(v.ref, "")))
    if source.finding:
        focused = [replace(c, focus=source.finding, answer=answer_for(c.view.label, source.finding))
                   for c in candidates]
        return focused, answers_for(source.finding)
    choices = (
        list(dict.fromkeys(source.labels)) if len(source.labels) >= 2 else sorted({c.view.label for c in candidates})
    )
    if len(choices) < 2:
        choices = list(dict.fromkeys([*choices, *store.label_counts()]))
    return candidates, tuple(choices)


__all__ = ["Candidate", "QuizSource", "gather_candidates"]
