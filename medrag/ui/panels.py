"""Result panels shared by Analyze, History and the quiz: stage log, live streaming, label and findings,
similar cases (grid, scores, library map, votes); the web references are in :mod:`medrag.ui.references`.

Everything that came from a file, a model or the web goes through :mod:`medrag.ui.safe` first.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from medrag.analysis import Analysis
from medrag.casenames import SYNTHETIC_MARK, case_caption
from medrag.errors import MedRAGError
from medrag.events import (
    AnalysisFinished,
    Event,
    GuardChecked,
    ReasoningDone,
    ReasoningToken,
    StageFailed,
    StageStarted,
)
from medrag.records import FINDING_STATUSES, Case, Neighbour
from medrag.ui import data, images, resources, state
from medrag.ui.analysis import STAGE_TITLES, stage_line
from medrag.ui.figures import library_map_figure, scores_bar, votes_frame
from medrag.ui.safe import defang_markdown, escape_markdown, shorten
from medrag.ui.viewer import PLOTLY_CONFIG, ViewSettings, linked_figure
from medrag.workbench import Workbench

#: Neighbour cards per grid row.
GRID_COLUMNS = 5
#: Reasoning tokens arriving closer together than this are shown in one update (~40 updates/s at most).
STREAM_FLUSH_S = 0.025


# ---------------------------------------------------------------------------------------------- stage log
def _stage_body(analysis: Analysis, stage: str) -> None:
    if stage in analysis.failures:
        st.error(defang_markdown(analysis.failures[stage]))
    elif stage == "input":
        for note in analysis.notes:
            st.caption(f":material/info: {escape_markdown(note)}")
    elif stage == "guard" and analysis.verdict is not None:
        # A refusal's reason is shown once, under the stage log (render_outcome), not in its box too.
        if analysis.verdict.allowed:
            st.caption(escape_markdown(analysis.verdict.reason or "accepted"))
    elif stage == "reasoning":
        st.markdown(defang_markdown(analysis.reasoning))
    # The web stage's status is its box's label already (stage_line): no second copy inside.


def _stage_state(analysis: Analysis, stage: str) -> str:
    refused = stage == "guard" and analysis.refused
    return "error" if stage in analysis.failures or refused else "complete"


def render_stage_log(analysis: Analysis) -> None:
    """One closed box per stage that ran (the reasoning and any problem stay open).

    Re-renders use ``st.expander`` with a status icon rather than ``st.status``: each ``st.status``
    costs a fixed 50 ms sleep inside Streamlit, which every widget change would pay seven times.
    """
    for stage in analysis.stages:
        icon = _ICONS[_stage_state(analysis, stage)]
        expanded = stage == "reasoning" or stage in analysis.failures  # a refusal's reason is below the log
        with st.expander(escape_markdown(stage_line(analysis, stage)), expanded=expanded, icon=icon):
            _stage_body(analysis, stage)


_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def in_background(events: Iterator[Event]) -> Iterator[Event]:
    """Run the pipeline in its own thread and hand its events over a queue.

    The stages then do not wait while the page draws (so their timings are their own), and the
    analysis still finishes and is saved if the user leaves the page half-way.
    """
    handover: queue.Queue[object] = queue.Queue()

    def produce() -> None:
        try:
            for event in events:
                handover.put(event)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the page's thread
            handover.put(_Raised(exc))
        finally:
            handover.put(_DONE)

    threading.Thread(target=produce, name="medrag-analysis", daemon=True).start()
    while True:
        item = handover.get()
        if item is _DONE:
            return
        if isinstance(item, _Raised):
            raise item.exc
        yield item  # type: ignore[misc]


#: Stage-box icons: running, done, failed or refused.
_ICONS = {"running": "spinner", "complete": ":material/check_circle:", "error": ":material/error:"}


class _StageBox:
    """One stage's box while the pipeline runs: an expander in a placeholder, redrawn as the stage moves on.

    Not ``st.status``: creating one sleeps 50 ms inside Streamlit, and a run has eight stages (0.4 s of
    an analysis that itself takes ~0.1 s). A redrawn expander costs nothing and reads the same.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.slot = st.empty()

    def draw(self, label: str, state: str, *, expanded: bool) -> Any:
        """Replace the box with a fresh expander; returns it (a ``with`` block writes into it)."""
        return self.slot.container().expander(escape_markdown(label), expanded=expanded, icon=_ICONS[state])


def run_live(events: Iterator[Event], analysis: Analysis) -> Analysis:
    """Drain the pipeline into ``analysis`` with one box per stage; the reasoning streams token by token.

    The pipeline runs in a background thread (:func:`in_background`). The reasoning box is fed by
    ``st.write_stream`` over a generator that yields the ReasoningToken texts and stashes the first
    other event, which the loop then handles like any other.
    """
    stream = in_background(events)
    held: list[Event] = []
    boxes: dict[str, _StageBox] = {}

    def tokens() -> Iterator[str]:
        # Tokens that arrive within STREAM_FLUSH_S of the last update are sent together: a model's
        # tokens still appear one by one, while an instant reasoner does not cost one websocket
        # message (and one re-render of the growing text) per word.
        pending: list[str] = []
        last = time.monotonic()
        for event in stream:
            if not isinstance(event, ReasoningToken):
                held.append(event)
                break
            analysis.apply(event)
            pending.append(defang_markdown(event.text))
            if time.monotonic() - last >= STREAM_FLUSH_S:
                yield "".join(pending)
                pending.clear()
                last = time.monotonic()
        if pending:
            yield "".join(pending)

    while True:
        event = held.pop(0) if held else next(stream, None)
        if event is None:
            break
        analysis.apply(event)
        if isinstance(event, StageStarted):
            title = STAGE_TITLES.get(event.stage, event.stage)
            box = boxes[event.stage] = _StageBox(event.stage)
            running = box.draw(f"{title}…", "running", expanded=event.stage == "reasoning")
            if event.stage == "reasoning":
                with running:
                    st.write_stream(tokens())
            continue
        if isinstance(event, AnalysisFinished):
            break
        found = boxes.get(event.stage)
        if found is None:
            continue
        problem = isinstance(event, StageFailed) or (isinstance(event, GuardChecked) and not event.verdict.allowed)
        keep_open = isinstance(event, (StageFailed, ReasoningDone))  # a refusal's reason is shown below
        with found.draw(stage_line(analysis, event.stage), "error" if problem else "complete", expanded=keep_open):
            _stage_body(analysis, event.stage)
    return analysis


# ---------------------------------------------------------------------------------------------- image + meta
def render_metadata(meta: Mapping[str, Any]) -> None:
    """Format, size, bit depth, window, warnings and the de-identified DICOM tags, as text."""
    with st.expander("Image metadata (de-identified)", expanded=False):
        rows = [
            ("format", meta.get("format", "")),
            ("size", f"{meta.get('width', '?')} × {meta.get('height', '?')}"),
            ("bit depth", meta.get("bit_depth", "")),
            ("photometric", meta.get("photometric", "")),
            ("window", meta.get("window") or "—"),
            ("converted from RGB", meta.get("converted_from_rgb", False)),
            ("burned-in annotation", meta.get("burned_in_annotation", False)),
        ]
        st.dataframe(pd.DataFrame({"field": [r[0] for r in rows], "value": [str(r[1]) for r in rows]}), hide_index=True)
        dicom = meta.get("dicom") or {}
        if dicom:
            st.caption("DICOM tags (identifying tags removed or replaced)")
            st.dataframe(
                pd.DataFrame({"tag": [str(k) for k in dicom], "value": [str(v) for v in dicom.values()]}),
                hide_index=True,
            )
    for warning in meta.get("warnings") or []:
        st.warning(defang_markdown(str(warning)))


# ---------------------------------------------------------------------------------------------- results
def render_outcome(analysis: Analysis) -> bool:
    """Refusal or unreadable input as a clear message; returns True when there is a result to show."""
    if "input" in analysis.failures:
        st.error(defang_markdown(analysis.failures["input"]), icon=":material/error:")
        return False
    if analysis.refused:
        reason = analysis.verdict.reason if analysis.verdict else "the request is outside chest X-ray imaging"
        st.warning(f"Refused by the domain guard: {defang_markdown(reason)}", icon=":material/block:")
        return False
    return True


def render_label_and_findings(analysis: Analysis) -> None:
    """The label and a findings table (present / uncertain / absent / not mentioned)."""
    # A subheader, not st.metric: a metric cuts long labels off with an ellipsis.
    st.caption("Label" + (f" · {escape_markdown(analysis.summariser_backend)}" if analysis.summariser_backend else ""),
               help="Condensed from the reasoning's impression by the summariser")
    st.subheader(escape_markdown(analysis.label or "—"), anchor=False)
    for note in analysis.all_notes:
        st.caption(f":material/info: {escape_markdown(note)}")
    rows = analysis.findings_rows()
    if not rows:
        st.caption("No findings were extracted.")
        return
    frame = pd.DataFrame(rows)
    order = {status: rank for rank, status in enumerate(FINDING_STATUSES)}
    frame = frame.sort_values("status", key=lambda s: s.map(lambda v: order.get(v, len(order))), kind="stable")
    st.dataframe(frame, hide_index=True, width="stretch", height=min(36 + 35 * len(frame), 290))


def render_saved(analysis: Analysis, key: str) -> None:
    """Say where the analysis was saved, with a shortcut to History."""
    if analysis.analysis_id is None:
        if "save" in analysis.failures:
            st.error(defang_markdown(analysis.failures["save"]))
        return
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.success(f"Saved to history as #{analysis.analysis_id}", icon=":material/history:")
    # Wide enough for its label: in a quarter of the result column it was cut off.
    if right.button("Open in History", key=f"{key}_to_history", icon=":material/open_in_new:", width="stretch"):
        st.session_state[state.HISTORY_OPEN] = analysis.analysis_id
        st.switch_page("pages/3_History.py")


def _open_neighbour(panel: str, case_id: str | None) -> None:
    st.session_state[state.OPEN_NEIGHBOUR] = {**st.session_state[state.OPEN_NEIGHBOUR], panel: case_id}


def neighbour_text(neighbour: Neighbour, case: Case | None, limit: int = 160) -> str:
    """A card's text: the report snippet, else the case's fine label and demographics (never "(no report)")."""
    if case is not None:
        return case_caption(case, limit)
    return shorten(neighbour.report, limit) or "No report"


def _cases_of(analysis: Analysis) -> dict[str, Case]:
    try:
        return data.get_cases(resources.get_workbench(), [n.case_id for n in analysis.neighbours])
    except MedRAGError:
        return {}  # cards fall back to what the neighbour carries


def neighbour_card(neighbour: Neighbour, key: str, *, openable: bool = True, case: Case | None = None) -> None:
    """Thumbnail, label, similarity, report snippet (or fine label and demographics) and an Open button."""
    with st.container(border=True):
        if neighbour.thumb_path and Path(neighbour.thumb_path).is_file():
            st.image(neighbour.thumb_path, width="stretch")
        st.markdown(f"**#{neighbour.rank} · {escape_markdown(neighbour.label or 'unlabelled')}**")
        fake = neighbour.synthetic or neighbour.dataset == "synthetic"
        source = SYNTHETIC_MARK if fake else escape_markdown(neighbour.dataset)
        st.caption(f"similarity {neighbour.score:.3f} · {source}")
        st.text(neighbour_text(neighbour, case))
        if openable:
            st.button(
                "Open side by side",
                key=f"{key}_open_{neighbour.rank}",
                on_click=_open_neighbour,
                args=(key, neighbour.case_id),
            )


def render_neighbour_grid(analysis: Analysis, key: str, *, openable: bool = True) -> None:
    """The top-k similar cases as cards."""
    if not analysis.neighbours:
        st.info("No similar cases were found.")
        return
    cases = _cases_of(analysis)
    for start in range(0, len(analysis.neighbours), GRID_COLUMNS):
        columns = st.columns(GRID_COLUMNS)
        for column, neighbour in zip(columns, analysis.neighbours[start : start + GRID_COLUMNS], strict=False):
            with column:
                neighbour_card(neighbour, key, openable=openable, case=cases.get(neighbour.case_id))


def render_side_by_side(analysis: Analysis, key: str) -> None:
    """The opened neighbour next to the query, zoom and pan linked."""
    case_id = st.session_state[state.OPEN_NEIGHBOUR].get(key)
    found = next((n for n in analysis.neighbours if n.case_id == case_id), None)
    if found is None:
        return
    with st.container(border=True):
        top = st.columns([5, 1])
        top[0].markdown(f"**Query vs #{found.rank} · {escape_markdown(found.label)}** (similarity {found.score:.3f})")
        top[1].button("Close", key=f"{key}_close", on_click=_open_neighbour, args=(key, None))
        try:
            pictures, titles = [], []
            if analysis.image_path:
                pictures.append(images.load_pixels(analysis.image_path))
                titles.append("query")
            pictures.append(images.load_pixels(found.image_path or found.thumb_path))
            titles.append(f"#{found.rank} {found.label}")
            st.plotly_chart(linked_figure(pictures, titles, ViewSettings()), config=PLOTLY_CONFIG, key=f"{key}_pair")
        except MedRAGError as exc:
            st.error(defang_markdown(str(exc)))
        st.text(neighbour_text(found, _cases_of(analysis).get(found.case_id), 1200))


def render_votes(analysis: Analysis) -> None:
    """Similarity-weighted label votes among the neighbours."""
    from medrag.reasoners.evidence import label_votes

    frame = votes_frame(label_votes(analysis.neighbours))
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "share": st.column_config.ProgressColumn("vote share", min_value=0.0, max_value=1.0, format="percent")
        },
    )


def render_map(workbench: Workbench, analysis: Analysis, key: str) -> None:
    """The whole library on the PCA map, query and neighbours highlighted."""
    try:
        frame = resources.library_map_frame(workbench)
    except MedRAGError as exc:
        st.caption(escape_markdown(f"The library map is unavailable: {exc}"))
        return
    from medrag.ui.pickers import real_only_toggle

    if real_only_toggle(workbench, f"{key}_map_real"):
        frame = frame[~frame["synthetic"]]
    xy = resources.query_position(workbench, analysis)
    figure = library_map_figure(frame, query_xy=xy, neighbour_ids=[n.case_id for n in analysis.neighbours])
    st.plotly_chart(figure, config=PLOTLY_CONFIG, key=f"{key}_map")


def render_similar(workbench: Workbench, analysis: Analysis, key: str) -> None:
    """Grid, side-by-side, scores chart, votes and the library map."""
    st.subheader(f"Similar cases (top {len(analysis.neighbours)})")
    if "neighbours" in analysis.failures:
        st.error(defang_markdown(analysis.failures["neighbours"]))
    render_neighbour_grid(analysis, key)
    render_side_by_side(analysis, key)
    if not analysis.neighbours:
        return
    # Only the open tab runs: the library map (its ~1,600-point plot costs the browser ~0.3 s a draw) is
    # drawn when asked for, and stays the open tab for the next analyses once chosen.
    scores_tab, map_tab = st.tabs(["Scores and votes", "Library map"], key=f"{key}_similar_tabs", on_change="rerun")
    if scores_tab.open:
        with scores_tab:
            left, right = st.columns([3, 2])
            with left:
                st.plotly_chart(scores_bar(analysis.neighbours), config=PLOTLY_CONFIG, key=f"{key}_scores")
            with right:
                st.markdown("**Label votes among the neighbours**")
                render_votes(analysis)
    if map_tab.open:
        with map_tab:
            render_map(workbench, analysis, key)
