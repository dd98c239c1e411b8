"""Images with annotations in the app: plotly figures in the image's own pixels, clicks and boxes read back.

The figure's axes are the stored image's pixels (``x`` column, ``y`` row) even when a large image is sent
downscaled, so a click, a dragged box and an NIH box all share one coordinate system. A grid of invisible
markers over the image makes it selectable: a click selects the nearest marker (a "where is it?"
answer), a box drag returns its corners (a new annotation). Drawing is also possible by numbers in a form,
which is how the tests and keyboard users do it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medrag.records import Case
from medrag.teaching.annotations import COLOURS, annotations_of
from medrag.teaching.model import SHAPES, Annotation, ItemRef
from medrag.teaching.regions import Region
from medrag.ui.roles import require_educator
from medrag.ui.safe import escape_markdown
from medrag.ui.viewer import MAX_DISPLAY_SIDE, downsample, png_data_uri

#: Markers per side of the click grid (a click lands within half a cell of where it was meant).
GRID = 96
#: plotly config of a figure that can be clicked or box-selected (box select kept, lasso removed).
SELECT_CONFIG: dict[str, Any] = {"scrollZoom": False, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d"]}


def _rgb(source: str) -> str:
    r, g, b = COLOURS.get(source, COLOURS["educator"])
    return f"rgb({r},{g},{b})"


def annotated_figure(
    pixels: np.ndarray,
    annotations: Sequence[Annotation] = (),
    *,
    regions: Sequence[Region] = (),
    clickable: bool = False,
    drag: str = "pan",  # "select" to drag boxes (Streamlit then stops selecting points on click)
    marker: tuple[float, float] | None = None,
    height: int = 560,
    title: str = "",
) -> go.Figure:
    """The image with annotations (and answer regions) drawn on it, in the image's pixel coordinates."""
    height_px, width_px = pixels.shape[:2]
    shown = downsample(pixels, MAX_DISPLAY_SIDE)
    scale = width_px / shown.shape[1]
    fig = go.Figure(
        go.Image(
            source=png_data_uri(shown), x0=scale / 2 - 0.5, y0=scale / 2 - 0.5, dx=scale, dy=scale, hoverinfo="skip"
        )
    )
    if clickable:
        step = max(width_px, height_px) / GRID
        xs, ys = np.meshgrid(np.arange(step / 2, width_px, step), np.arange(step / 2, height_px, step))
        fig.add_trace(
            go.Scatter(
                x=np.round(xs.ravel(), 1),
                y=np.round(ys.ravel(), 1),
                mode="markers",
                hoverinfo="none",
                showlegend=False,
                marker=dict(size=max(4.0, 560 / GRID), opacity=0.0, color="#ff3b30"),
                selected=dict(marker=dict(opacity=1.0, size=14, color="#ff3b30")),
                unselected=dict(marker=dict(opacity=0.0)),
            )
        )
    for a in annotations:
        colour = _rgb(a.source)
        if a.shape == "box":
            fig.add_shape(type="rect", x0=a.x0, y0=a.y0, x1=a.x1, y1=a.y1, line=dict(color=colour, width=2))
            if a.label:
                fig.add_annotation(
                    x=min(a.x0, a.x1),
                    y=min(a.y0, a.y1),
                    text=escape_html(a.label),
                    showarrow=False,
                    xanchor="left",
                    yanchor="bottom",
                    font=dict(color=colour, size=12),
                )
        else:
            fig.add_annotation(
                x=a.x1,
                y=a.y1,
                ax=a.x0,
                ay=a.y0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                text=escape_html(a.label),
                showarrow=True,
                arrowhead=2,
                arrowwidth=2,
                arrowcolor=colour,
                font=dict(color=colour, size=12),
            )
    for r in regions:
        fig.add_shape(
            type="circle" if r.shape == "disc" else "rect",
            x0=r.x0,
            y0=r.y0,
            x1=r.x1,
            y1=r.y1,
            line=dict(color="#34c759", width=3, dash="dot"),
        )
    if marker is not None:
        fig.add_trace(
            go.Scatter(
                x=[marker[0]],
                y=[marker[1]],
                mode="markers",
                hoverinfo="skip",
                showlegend=False,
                marker=dict(symbol="x", size=16, color="#ff3b30", line=dict(width=2, color="white")),
            )
        )
    fig.update_xaxes(visible=False, range=[-0.5, width_px - 0.5])
    fig.update_yaxes(visible=False, range=[height_px - 0.5, -0.5], scaleanchor="x")
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=28 if title else 0, b=0),
        dragmode=drag,
        clickmode="event+select",
        hovermode="closest",
        showlegend=False,
        title=dict(text=escape_html(title), font=dict(size=13)) if title else None,
    )
    return fig


def escape_html(text: str) -> str:
    """plotly renders a subset of HTML in labels: show the text as written instead."""
    import html

    return html.escape(str(text), quote=False)


def _selection(event: Any) -> Mapping[str, Any]:
    if event is None:
        return {}
    selection = event.get("selection") if isinstance(event, Mapping) else getattr(event, "selection", None)
    return selection or {}


def read_click(event: Any) -> tuple[float, float] | None:
    """The image position of a clicked point of a :func:`annotated_figure` chart, or None."""
    points = _selection(event).get("points") or []
    for point in points:
        if point.get("x") is not None and point.get("y") is not None:
            return float(point["x"]), float(point["y"])
    return None


def read_box(event: Any) -> tuple[float, float, float, float] | None:
    """The corners (x0, y0, x1, y1) of a box dragged on the chart (in drag order), or None."""
    for box in _selection(event).get("box") or []:
        xs, ys = box.get("x") or [], box.get("y") or []
        if len(xs) == 2 and len(ys) == 2:
            return float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1])
    return None


# ---------------------------------------------------------------------------------------------- reads and writes
def overlay_for(workbench: Any, ref: ItemRef, case: Case | None) -> list[Annotation]:
    """The educator's annotations of an item (and of its case), then the case's NIH expert boxes."""
    return annotations_of(workbench.store, ref, case)


def save_annotation(workbench: Any, annotation: Annotation) -> int:
    """Store an educator's annotation; returns its id."""
    require_educator("draw or delete annotations")
    return int(workbench.store.add_annotation(annotation))


def delete_annotation(workbench: Any, annotation_id: int) -> bool:
    """Delete an educator's annotation; whether it existed."""
    require_educator("draw or delete annotations")
    return bool(workbench.store.delete_annotation(annotation_id))


# ---------------------------------------------------------------------------------------------- the editor
def render_annotation_editor(
    workbench: Any, ref: ItemRef, pixels: np.ndarray, annotations: Sequence[Annotation], key: str
) -> None:
    """Drag a box on the image (or type the corners), label it, save it as a box or an arrow; delete old ones."""
    height_px, width_px = pixels.shape[:2]
    st.caption(
        "Drag a box on the image to place a new annotation (or type its corners below). "
        "An arrow runs from the first corner (tail) to the second (head)."
    )
    event = st.plotly_chart(
        annotated_figure(pixels, annotations, clickable=True, drag="select"),
        config=SELECT_CONFIG,
        on_select="rerun",
        selection_mode="box",
        key=f"{key}_draw",
    )
    box = read_box(event)
    defaults = box or (width_px * 0.35, height_px * 0.35, width_px * 0.65, height_px * 0.65)
    with st.form(f"{key}_form", border=True):
        shape = st.radio("Shape", SHAPES, horizontal=True, key=f"{key}_shape")
        label = st.text_input("Label", key=f"{key}_label", placeholder="e.g. right lower lobe consolidation")
        columns = st.columns(4)
        names = ("x0 (left / tail)", "y0 (top / tail)", "x1 (right / head)", "y1 (bottom / head)")
        limits = (width_px, height_px, width_px, height_px)
        values = [
            col.number_input(name, 0.0, float(limit), float(min(max(value, 0.0), limit)), 1.0, key=f"{key}_{i}")
            for i, (col, name, limit, value) in enumerate(zip(columns, names, limits, defaults, strict=True))
        ]
        saved = st.form_submit_button("Save annotation", type="primary", key=f"{key}_save")
    if saved:
        x0, y0, x1, y1 = (float(v) for v in values)
        save_annotation(workbench, Annotation(ref, shape, x0, y0, x1, y1, label=label))
        st.rerun()
    mine = [a for a in annotations if a.source == "educator" and a.annotation_id is not None]
    for a in mine:
        left, right = st.columns([5, 1])
        left.caption(
            f"{a.shape} · {escape_markdown(a.label or '(no label)')} · "
            f"({a.x0:.0f}, {a.y0:.0f}) → ({a.x1:.0f}, {a.y1:.0f})"
        )
        if right.button("Delete", key=f"{key}_del_{a.annotation_id}"):
            delete_annotation(workbench, int(a.annotation_id or 0))
            st.rerun()


__all__ = [
    "GRID",
    "SELECT_CONFIG",
    "annotated_figure",
    "delete_annotation",
    "overlay_for",
    "read_box",
    "read_click",
    "render_annotation_editor",
    "save_annotation",
]
