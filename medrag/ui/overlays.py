"""What the reading used, drawn over the image: lung and heart outlines, flagged zones, the heatmap, devices.

Pure plotly on top of :func:`medrag.ui.viewer.image_figure` (its image may be downsampled: every
coordinate is scaled from the original image's pixels to the shown ones). Each layer can be toggled; the
Analyze, History and Compare pages draw the same layers through :func:`overlay_controls` and
:func:`add_overlays`.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medrag.reading.base import ImageReading

#: The layers, in the order the toggles show them.
LAYERS: tuple[str, ...] = ("outlines", "zones", "heatmap", "devices")
_LAYER_LABELS = {"outlines": "Lung and heart outlines", "zones": "Flagged zones", "heatmap": "Heatmap",
                 "devices": "Devices"}
_COLOURS = {"right lung": "#2ca02c", "left lung": "#17becf", "heart": "#d62728"}


def overlay_controls(key: str, reading: ImageReading | None) -> set[str]:
    """Toggles for the layers this reading has (all on by default); returns the chosen layers."""
    if reading is None:
        return set()
    available = available_layers(reading)
    if not available:
        return set()
    columns = st.columns(len(available))
    chosen = set()
    for column, layer in zip(columns, available, strict=True):
        if column.toggle(_LAYER_LABELS[layer], value=True, key=f"{key}_overlay_{layer}"):
            chosen.add(layer)
    return chosen


def available_layers(reading: ImageReading) -> list[str]:
    """The layers a reading can draw."""
    overlays = reading.overlays
    present = {
        "outlines": bool(overlays.contours),
        "zones": bool(reading.flagged_zones() and overlays.zone_boxes),
        "heatmap": overlays.heatmap is not None,
        "devices": bool(overlays.devices or reading.devices),
    }
    return [layer for layer in LAYERS if present[layer]]


def add_overlays(
    fig: go.Figure, reading: ImageReading | None, original_shape: tuple[int, int], shown_shape: tuple[int, int],
    layers: Collection[str],
) -> go.Figure:
    """Draw the chosen ``layers`` of ``reading`` on ``fig`` (an image of ``shown_shape`` from ``original_shape``)."""
    if reading is None or not layers:
        return fig
    sy = shown_shape[0] / max(original_shape[0], 1)
    sx = shown_shape[1] / max(original_shape[1], 1)
    overlays = reading.overlays
    if "heatmap" in layers and overlays.heatmap is not None:
        grid = np.asarray(overlays.heatmap, dtype=np.float32)
        fig.add_trace(go.Heatmap(
            z=grid, x0=shown_shape[1] / grid.shape[1] / 2, dx=shown_shape[1] / grid.shape[1],
            y0=shown_shape[0] / grid.shape[0] / 2, dy=shown_shape[0] / grid.shape[0],
            colorscale="Inferno", opacity=0.35, showscale=False, zmin=0.0, zmax=1.0,
            hovertemplate=f"{overlays.heatmap_finding} heatmap %{{z:.2f}}<extra></extra>", name="heatmap",
        ))
    if "outlines" in layers:
        for name, points in overlays.contours.items():
            if not points:
                continue
            xs = [x * sx for x, _ in points] + [points[0][0] * sx]
            ys = [y * sy for _, y in points] + [points[0][1] * sy]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="name",
                                     line=dict(color=_COLOURS.get(name, "#ff7f0e"), width=1.5)))
    if "zones" in layers:
        for zone in reading.flagged_zones():
            box = overlays.zone_boxes.get(zone)
            if box is None:
                continue
            x, y, w, h = box
            z = reading.zones.get(zone, {}).get("z", 0.0)
            fig.add_shape(type="rect", x0=x * sx, y0=y * sy, x1=(x + w) * sx, y1=(y + h) * sy,
                          line=dict(color="#ffbf00", width=2, dash="dot"))
            fig.add_annotation(x=x * sx, y=y * sy, text=f"{zone} +{z:.1f} SD", showarrow=False, xanchor="left",
                               yanchor="bottom", font=dict(color="#ffbf00", size=11))
    if "devices" in layers:
        for device in overlays.devices or reading.devices:
            fig.add_shape(type="rect", x0=device.x * sx, y0=device.y * sy, x1=(device.x + device.w) * sx,
                          y1=(device.y + device.h) * sy, line=dict(color="#e377c2", width=1.5))
            fig.add_annotation(x=(device.x + device.w) * sx, y=device.y * sy, text=device.kind, showarrow=False,
                               xanchor="left", font=dict(color="#e377c2", size=10))
    fig.update_layout(showlegend=False)
    return fig




@st.cache_data(show_spinner="Reading the image…", max_entries=256)
def _case_reading(data_dir: str, case_id: str, image_path: str, _workbench: object) -> dict[str, object] | None:
    from medrag.errors import MedRAGError
    from medrag.imaging import load_image
    from medrag.reading.base import reading_to_dict

    try:
        image = load_image(Path(image_path))
        reading = _workbench.read_image(image)  # type: ignore[attr-defined]
    except (MedRAGError, OSError):
        return None
    return reading_to_dict(reading) if reading is not None else None


def case_reading(workbench: object, case_id: str, image_path: str) -> ImageReading | None:
    """A library case's reading, made on demand the first time it is shown and cached (never at import)."""
    from medrag.reading.base import reading_from_dict

    data = _case_reading(str(getattr(getattr(workbench, "settings", None), "data_dir", "")), case_id, image_path,
                         workbench)
    return reading_from_dict(data) if data else None


__all__ = ["LAYERS", "add_overlays", "available_layers", "case_reading", "overlay_controls"]
