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


#: Above this many points the map draws with WebGL; below, SVG is lighter (software GL is slow).
WEBGL_POINTS = 5000
_PALETTE = px.colors.qualitative.Dark24  # 24 distinct, none too pale on a light background


def _colours(labels: Sequence[str]) -> dict[str, str]:
    """A stable colour per label (sorted order), shared by the bar chart and the map."""
    return {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def scores_bar(neighbours: Sequence[Neighbour]) -> go.Figure:
    """Similarity of each neighbour (rank order), coloured by label."""
    labels = [_plain(n.label or "unlabelled", 40) for n in neighbours]
    colours = _colours(labels)
    fig = go.Figure(go.Bar(
        x=[f"#{n.rank}" for n in neighbours],
        y=[float(n.score) for n in neighbours],
        marker_color=[colours[label] for label in labels],
        customdata=[[label, _plain(n.case_id, 40)] for label, n in zip(labels, neighbours)],
        hovertemplate="%{x} · %{customdata[0]}<br>similarity %{y:.3f}<br>%{customdata[1]}<extra></extra>",
        text=labels, textposition="inside", insidetextanchor="start", textangle=-90,
    ))
    fig.update_layout(title="Similarity of the nearest cases", height=300, yaxis_title="similarity", **_LAYOUT)
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
    scatter = go.Scattergl if len(frame) > WEBGL_POINTS else go.Scatter
    labels = frame["label"].astype(str).map(lambda v: _plain(v, 40))
    colours = _colours(list(labels))
    hover = (
        frame["case_id"].map(lambda v: _plain(v, 60)) + "<br>" + labels + " · " + frame["dataset"].map(lambda v: _plain(v, 40))
        + "<br>" + frame["snippet"].map(_plain)
    )
    fig = go.Figure()
    for label in sorted(colours):
        rows = (labels == label).to_numpy()
        fig.add_trace(scatter(
            x=frame["x"].to_numpy()[rows], y=frame["y"].to_numpy()[rows], mode="markers", name=label,
            marker=dict(size=7, color=colours[label], opacity=0.8), text=hover.to_numpy()[rows],
            hovertemplate="%{text}<extra></extra>",
        ))
    wanted = list(neighbour_ids)
    if wanted:
        picked = frame.assign(hover=hover).set_index("case_id").reindex(wanted).dropna(subset=["x"])
        fig.add_trace(go.Scatter(
            x=picked["x"], y=picked["y"], mode="markers", name="nearest cases",
            marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=2.5, color="#d1495b")),
            text=picked["hover"], hovertemplate="%{text}<extra>neighbour</extra>",
        ))
    if query_xy is not None:
        fig.add_trace(go.Scatter(
            x=[query_xy[0]], y=[query_xy[1]], mode="markers", name="query",
            marker=dict(size=20, symbol="star", color="#111111", line=dict(width=1.5, color="white")),
            hovertemplate="query<extra></extra>",
        ))
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None)
    fig.update_layout(title="Library map (PCA of image embeddings)", height=height, **_LAYOUT)
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
