"""What a lesson item shows: a library case or a saved analysis as an image with a readable name and its answer.

:func:`resolve_refs` turns :class:`~medrag.teaching.model.ItemRef` values into :class:`ItemView` values in one
pass over the store; an item whose case or analysis is gone is returned with ``missing=True`` (a lesson set
outlives a deleted analysis, and says so instead of failing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medrag.records import Case
from medrag.teaching.model import ItemRef

if TYPE_CHECKING:
    from medrag.analysis import Analysis
    from medrag.store.factory import AnyStore

#: Metadata a reader may want beside the label (keys of a case's ``extra``), in display order.
DETAIL_KEYS: tuple[tuple[str, str], ...] = (
    ("fine_label", "fine label"),
    ("finding_labels", "fine label"),
    ("sex", "sex"),
    ("age", "age"),
    ("population", "population"),
    ("findings", "findings"),
    ("expert_labels_google2019", "expert labels"),
)


@dataclass(frozen=True)
class ItemView:
    """A case or an analysis as a lesson shows it."""

    ref: ItemRef
    title: str
    caption: str = ""
    #: the image to show ("" when there is none: a text question, a deleted case)
    image_path: str = ""
    #: the answer: the case's label, or the analysis's label
    label: str = ""
    dataset: str = ""
    synthetic: bool = False
    #: the case's report, or the analysis's reasoning
    text: str = ""
    view: str = ""
    patient_id: str = ""
    #: (name, value) pairs worth showing with the answer (fine label, age, sex, ...)
    details: tuple[tuple[str, str], ...] = ()
    #: the library case behind it (for an analysis of a library case too), when known
    case: Case | None = None
    missing: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def case_names(case: Case) -> tuple[str, str]:
    """The case's readable title and caption (:mod:`medrag.casenames`), never a hash."""
    from medrag.casenames import case_caption, case_title

    return case_title(case), case_caption(case)


def case_details(case: Case) -> tuple[tuple[str, str], ...]:
    """The metadata pairs of :data:`DETAIL_KEYS` the case has."""
    out = []
    for key, name in DETAIL_KEYS:
        value = case.extra.get(key)
        if value not in (None, "", [], {}):
            out.append((name, str(value).replace("|", ", ")))
    return tuple(out)


def view_of_case(case: Case) -> ItemView:
    """A library case as a lesson item."""
    title, caption = case_names(case)
    return ItemView(
        ref=ItemRef("case", case.case_id),
        title=title,
        caption=caption,
        image_path=case.image_path,
        label=case.label,
        dataset=case.dataset,
        synthetic=case.synthetic,
        text=case.report,
        view=case.view,
        patient_id=case.patient_id,
        details=case_details(case),
        case=case,
        extra=dict(case.extra),
    )


def view_of_analysis(analysis_id: int, analysis: Analysis, case: Case | None = None) -> ItemView:
    """A saved analysis as a lesson item (its stored upload, its label and its reasoning)."""
    name = analysis.input_name or analysis.question[:60] or analysis.input_kind
    title = f"Analysis #{analysis_id} · {name}"
    caption = f"saved analysis · {analysis.input_kind}" + (f" · {case_names(case)[0]}" if case else "")
    return ItemView(
        ref=ItemRef("analysis", str(analysis_id)),
        title=title,
        caption=caption,
        image_path=analysis.image_path,
        label=analysis.label,
        dataset=case.dataset if case else "",
        synthetic=bool(case and case.synthetic),
        text=analysis.reasoning,
        view=case.view if case else "",
        patient_id=case.patient_id if case else "",
        details=case_details(case) if case else (),
        case=case,
        extra=dict(case.extra) if case else {},
    )


def missing_view(ref: ItemRef) -> ItemView:
    """What an item shows when its case or analysis is no longer there."""
    what = "case" if ref.kind == "case" else f"analysis #{ref.ref_id}"
    return ItemView(ref=ref, title=f"(the {what} is no longer in this MedRAG)", missing=True)


def resolve_refs(store: AnyStore, refs: Iterable[ItemRef]) -> dict[ItemRef, ItemView]:
    """Every reference as an :class:`ItemView` (missing ones marked), reading each case and analysis once."""
    wanted = list(dict.fromkeys(refs))
    analyses: dict[str, Analysis | None] = {
        r.ref_id: store.get_analysis(int(r.ref_id)) if r.ref_id.isdigit() else None
        for r in wanted
        if r.kind == "analysis"
    }
    case_ids = [r.ref_id for r in wanted if r.kind == "case"]
    case_ids += [a.case_id for a in analyses.values() if a is not None and a.case_id]
    cases = store.get_cases(list(dict.fromkeys(case_ids)))
    out: dict[ItemRef, ItemView] = {}
    for ref in wanted:
        if ref.kind == "case":
            case = cases.get(ref.ref_id)
            out[ref] = view_of_case(case) if case is not None else missing_view(ref)
        else:
            analysis = analyses.get(ref.ref_id)
            if analysis is None:
                out[ref] = missing_view(ref)
            else:
                out[ref] = view_of_analysis(int(ref.ref_id), analysis, cases.get(analysis.case_id))
    return out


def library_views(store: AnyStore, *, label: str | None = None, dataset: str | None = None,
                  real_only: bool = False) -> list[ItemView]:
    """The library's cases with this label and dataset (None: any) as views, synthetic phantoms left out when
    ``real_only``."""
    frame = store.cases_frame(label=label, dataset=dataset or None)
    ids = [str(c) for c in frame["case_id"]]
    if real_only and "synthetic" in frame:
        ids = [cid for cid, synthetic in zip(ids, frame["synthetic"], strict=True) if not bool(synthetic)]
    cases = store.get_cases(ids)
    return [view_of_case(cases[cid]) for cid in ids if cid in cases]


__all__ = [
    "DETAIL_KEYS",
    "ItemView",
    "case_details",
    "case_names",
    "library_views",
    "missing_view",
    "resolve_refs",
    "view_of_analysis",
    "view_of_case",
]
