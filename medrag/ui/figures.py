"""Plotly figure builders: pure functions of data (no streamlit), so they are easy to test.

Strings that came from files or models are HTML-escaped before they reach plotly, whose labels and
hover boxes understand a little HTML.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Sequence

import numpy as np
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

#: Fixed colours for the labels a chest X-ray library usually holds: the same label is drawn the same
#: colour in every chart, and normal / pneumonia / covid19 (most of the real images) are far apart.
LABEL_COLOURS: dict[str, str] = {
    "normal": "#1f77b4",  # blue
    "no finding": "#1f77b4",
    "pneumonia": "#ff7f0e",  # orange
    "covid19": "#2ca02c",  # green
    "covid-19": "#2ca02c",
    "effusion": "#9467bd",  # purple
    "cardiomegaly": "#d62728",  # red
    "edema": "#8c564b",  # brown
    "pneumothorax": "#e377c2",  # pink
    "consolidation": "#bcbd22",  # olive
    "nodule/mass": "#17becf",  # cyan
    "atelectasis": "#7f7f7f",  # grey
    "opacity": "#393b79",  # indigo
    "unlabelled": "#aaaaaa",
    "(none)": "#aaaaaa",
}
#: Any other label (combinations such as "effusion + edema", a CSV's own labels) gets one of these,
#: chosen from a hash of its name, so it too keeps its colour from chart to chart and run to run.
_SPARE = [c for c in px.colors.qualitative.Dark24 + px.colors.qualitative.Alphabet
          if c.lower() not in {v.lower() for v in LABEL_COLOURS.values()}]
#: Marker of real images and of synthetic phantoms on the map.
REAL_SYMBOL, SYNTHETIC_SYMBOL = "circle", "diamond-open"


def label_colour(label: object) -> str:
    """The colour of a label in every chart (fixed for the usual labels, a stable hash pick for the rest)."""
    name = " ".join(str(label or "unlabelled").split()).lower()
    known = LABEL_COLOURS.get(name)
    if known is not None:
        return known
    return _SPARE[zlib.crc32(name.encode("utf-8")) % len(_SPARE)]


def label_colours(labels: Sequence[object]) -> dict[str, str]:
    """{label: colour} for these labels (a ``color_discrete_map`` for plotly express)."""
    return {str(label): label_colour(label) for label in dict.fromkeys(labels)}


def zoomed_range(values: Sequence[float], *, floor: float = 0.0, ceiling: float = 1.0) -> tuple[float, float]:
    """A y range around ``values`` with a little room (within [floor, ceiling]), so close scores look different."""
    low, high = min(values), max(values)
    spread = max(high - low, 0.01)
    return max(floor, low - 0.6 * spread), min(ceiling, high + 0.25 * spread)


def scores_bar(neighbours: Sequence[Neighbour]) -> go.Figure:
    """Similarity of each neighbour (rank order), coloured by label; the axis is zoomed to the scores."""
    labels = [_plain(n.label or "unlabelled", 40) for n in neighbours]
    scores = [float(n.score) for n in neighbours]
    # The label goes under its bar (a tick), not inside it: with the axis zoomed, a bar's foot is off-axis.
    ticks = [f"#{n.rank}<br>{_plain(n.label or 'unlabelled', 18)}" for n in neighbours]
    fig = go.Figure(go.Bar(
        x=ticks,
        y=scores,
        marker_color=[label_colour(n.label) for n in neighbours],
        customdata=[[f"#{n.rank}", label, _plain(n.case_id, 40)] for label, n in zip(labels, neighbours, strict=True)],
        hovertemplate="%{customdata[0]} · %{customdata[1]}<br>similarity %{y:.3f}<br>%{customdata[2]}<extra></extra>",
        text=[f"{score:.3f}" for score in scores], textposition="outside", cliponaxis=False,
    ))
    fig.update_layout(title="Similarity of the nearest cases", height=300, yaxis_title="similarity", **_LAYOUT)
    if scores:
        low, high = zoomed_range(scores, floor=min(0.0, min(scores)), ceiling=max(1.0, max(scores)))
        high += 0.12 * (high - low)  # room for the score printed above the highest bar
        fig.update_yaxes(range=[low, high], tickformat=".3f")
        if low > 0:
            # Bars start at the axis floor, not at 0: say so where the eye reads the bars.
            fig.add_annotation(
                text=f"axis from {low:.3f}, not 0", xref="paper", yref="paper", x=1, y=1.0, xanchor="right",
                yanchor="bottom", showarrow=False, font=dict(size=11, color="#555"),
            )
    return fig


def map_hover(frame: pd.DataFrame) -> pd.Series:
    """The hover text of each map point (name, label · dataset, snippet), escaped; the map frame caches it."""
    names = frame["title"] if "title" in frame else frame["case_id"]
    return pd.Series(
        [f"{_plain(n, 90)}<br>{_plain(lab, 40)} · {_plain(d, 40)}<br>{_plain(snip)}"
         for n, lab, d, snip in zip(names, frame["label"], frame["dataset"], frame["snippet"], strict=True)],
        index=frame.index, dtype=object,
    )


def library_map_figure(
    frame: pd.DataFrame,
    *,
    query_xy: tuple[float, float] | None = None,
    neighbour_ids: Sequence[str] = (),
    height: int = 460,
) -> go.Figure:
    """Every library case on its 2-D PCA coordinates, coloured by label; neighbours ringed, query starred.

    ``frame`` needs columns x, y, case_id, label, dataset, snippet; optional ``synthetic`` (phantoms get
    their own marker and legend entries), ``title`` (the readable name shown on hover) and ``hover``
    (:func:`map_hover`, precomputed).
    """
    scatter = go.Scattergl if len(frame) > WEBGL_POINTS else go.Scatter
    hover = frame["hover"] if "hover" in frame else map_hover(frame)
    labels = frame["label"].astype(str).to_numpy(dtype=object)
    synthetic = (frame["synthetic"].fillna(False).astype(bool).to_numpy() if "synthetic" in frame
                 else np.zeros(len(frame), dtype=bool))
    xs, ys, texts = frame["x"].to_numpy(), frame["y"].to_numpy(), hover.to_numpy(dtype=object)
    fig = go.Figure()
    traces = []
    for label in sorted(set(labels)):
        of_label = labels == label
        for fake in (False, True):
            rows = of_label & (synthetic == fake)
            if not rows.any():
                continue
            traces.append(scatter(
                x=xs[rows], y=ys[rows], mode="markers",
                name=_plain(label, 40) + (" (synthetic)" if fake else ""),
                marker=dict(size=7 if not fake else 8, color=label_colour(label), opacity=0.8,
                            symbol=SYNTHETIC_SYMBOL if fake else REAL_SYMBOL, line=dict(width=1.5 if fake else 0)),
                text=texts[rows], hovertemplate="%{text}<extra></extra>",
            ))
    fig.add_traces(traces)
    wanted = list(neighbour_ids)
    if wanted:
        picked = frame.assign(hover=hover).drop_duplicates("case_id").set_index("case_id").reindex(wanted)
        picked = picked.dropna(subset=["x"])
        fig.add_trace(go.Scatter(
            x=picked["x"], y=picked["y"], mode="markers", name="nearest cases",
            marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(width=2.5, color="#111111")),
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
    fig = px.bar(counts, x="day", y="analyses", color="label", title="Labels over time",
                 color_discrete_map=label_colours(list(counts["label"])))
    fig.update_layout(height=320, xaxis_title=None, **_LAYOUT)
    return fig


def similarity_distribution(scores: pd.DataFrame) -> go.Figure:
    """Histograms of neighbour similarities, image and text queries apart (their scales differ).

    ``scores`` needs score and ``which`` (top match / all neighbours); an optional ``query`` column
    (image / text) puts each kind of query in its own panel.
    """
    facet = "query" if "query" in scores and scores["query"].nunique() > 1 else None
    fig = px.histogram(
        scores, x="score", color="which", barmode="overlay", nbins=30, title="Similarity distribution",
        facet_col=facet, category_orders={"query": ["image", "text"]} if facet else None,
    )
    fig.update_layout(height=320, **_LAYOUT)
    fig.update_xaxes(title="similarity", matches=None)
    if facet:
        fig.for_each_annotation(lambda a: a.update(text=a.text.replace("query=", "") + " queries"))
    return fig
