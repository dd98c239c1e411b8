"""Plotly figure builders: pure functions of data (no streamlit), so they are easy to test.

Strings that came from files or models are HTML-escaped before they reach plotly, whose labels and
hover boxes understand a little HTML.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from medrag.records import Neighbour

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(title=None))


def _plain(text: object, limit: int = 120) -> str:
    flat = " ".join(str(text or "").split())
    return html.escape(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def scores_bar(neighbours: Sequence[Neighbour]) -> go.Figure:
    """Similarity of each neighbour (rank order), coloured by label."""
    frame = pd.DataFrame(
        {
            "case": [f"#{n.rank}" for n in neighbours],
            "similarity": [float(n.score) for n in neighbours],
            "label": [_plain(n.label or "unlabelled", 40) for n in neighbours],
            "case id": [_plain(n.case_id, 40) for n in neighbours],
        }
    )
    fig = px.bar(frame, x="case", y="similarity", color="label", hover_data=["case id"],
                 title="Similarity of the nearest cases")
    fig.update_layout(height=300, xaxis_title=None, **_LAYOUT)
    fig.update_xaxes(categoryorder="array", categoryarray=list(frame["case"]))
    return fig


def library_map_figure(
    frame: pd.DataFrame,
    *,
    query_xy: tuple[float, float] | None = None,
    neighbour_ids: Sequence[str] = (),
    height: int = 460,
) -> go.Figure:
    """Every library case on its 2-D PCA coordinates, coloured by label; neighbours ringed, query starred.

    ``frame`` needs columns x, y, case_id, label, dataset, snippet.
    """
    shown = frame.assign(
        case=frame["case_id"].map(lambda v: _plain(v, 60)),
        label=frame["label"].map(lambda v: _plain(v, 40)),
        dataset=frame["dataset"].map(lambda v: _plain(v, 40)),
        report=frame["snippet"].map(_plain),
    )
    fig = px.scatter(
        shown, x="x", y="y", color="label", hover_name="case", hover_data={"dataset": True, "report": True, "x": False, "y": False},
        title="Library map (PCA of image embeddings)", render_mode="webgl", opacity=0.55,
    )
    fig.update_traces(marker=dict(size=6))
    wanted = list(neighbour_ids)
    if wanted:
        picked = shown.set_index("case_id").reindex(wanted).dropna(subset=["x"])
        fig.add_trace(go.Scatter(
            x=picked["x"], y=picked["y"], mode="markers", name="nearest cases",
            marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=2.5, color="#d1495b")),
            text=picked["case"], hovertemplate="%{text}<extra>neighbour</extra>",
        ))
    if query_xy is not None:
        fig.add_trace(go.Scatter(
            x=[query_xy[0]], y=[query_xy[1]], mode="markers", name="query",
            marker=dict(size=20, symbol="star", color="#111111", line=dict(width=1.5, color="white")),
            hovertemplate="query<extra></extra>",
        ))
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None)
    fig.update_layout(height=height, **_LAYOUT)
    return fig


def votes_frame(votes: Sequence[tuple[str, float]]) -> pd.DataFrame:
    """Label votes as a table (label, share in [0, 1])."""
    return pd.DataFrame({"label": [str(label) for label, _ in votes], "share": [float(s) for _, s in votes]})


def labels_over_time(history: pd.DataFrame) -> go.Figure:
    """Analyses per day, stacked by label (``history`` needs created_at and label)."""
    frame = pd.DataFrame({
        "day": pd.to_datetime(history["created_at"]).dt.floor("D"),
        "label": history["label"].fillna("").map(lambda v: _plain(v or "(none)", 40)),
    })
    counts = frame.groupby(["day", "label"]).size().reset_index(name="analyses")
    fig = px.bar(counts, x="day", y="analyses", color="label", title="Labels over time")
    fig.update_layout(height=320, xaxis_title=None, **_LAYOUT)
    return fig


def similarity_distribution(scores: pd.DataFrame) -> go.Figure:
    """Histogram of neighbour similarities (``scores`` needs score and a ``which`` column: top match / all)."""
    fig = px.histogram(scores, x="score", color="which", barmode="overlay", nbins=30, title="Similarity distribution")
    fig.update_layout(height=320, xaxis_title="similarity", **_LAYOUT)
    return fig
