"""What the reading used, drawn over the image: lung and heart outlines, flagged zones, the heatmap, devices;
and, for a library case whose source boxed its findings, the expert boxes to hold them against.

Pure plotly on top of :func:`medrag.ui.viewer.image_figure` (its image may be downsampled) or of the linked
side-by-side figure (padded squares): a :class:`Placement` maps the original image's pixels to the figure's.
Each layer can be toggled; the Analyze, History and Compare pages draw the same layers
(:func:`reading_figure`, or :func:`overlay_controls` with :func:`add_overlays`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medrag.reading.base import ImageReading
from medrag.reading.combine import PLACING_Z
from medrag.reading.grids import densest_region
from medrag.reading.opacity import MAX_Z
from medrag.teaching.regions import Region
from medrag.ui.viewer import ViewSettings, display_shape, image_figure

#: The layers, in the order the toggles show them.
LAYERS: tuple[str, ...] = ("outlines", "zones", "opacity", "heatmap", "devices", "expert")
_LAYER_LABELS = {"outlines": "Outlines", "zones": "Flagged zones", "opacity": "Opacity map",
                 "heatmap": "Heatmap", "devices": "Devices", "expert": "Expert boxes"}
_LAYER_HELP = {
    "outlines": "The lung (green: patient's right, blue: left) and heart (red) borders the ratio was measured on",
    "zones": "Lung zones more opaque than normal films (dotted boxes, with how many SD)",
    "opacity": "Where the lungs are denser than normal films at the same place (SD; the brightest spot is where "
               "the reading places a lung opacity)",
    "heatmap": "Where the classifier sees its most likely finding (class activation; brighter = more). It "
               "localises poorly (11 % of NIH boxes): the opacity layer is the better guide",
    "devices": "High-attenuation structures read as devices (a heuristic: it misses some and mistakes some)",
    "expert": "Not the reading: where NIH's radiologists boxed this film's finding (or where a phantom's finding "
              "was drawn), to hold the reading's marks against",
}
#: The expert boxes' colour (the annotations' NIH cyan is the opacity map's: white stands apart from every layer).
EXPERT_COLOUR = "#ffffff"
#: Where the classifier sees nothing the film shows through untinted; only the upper half of the map is coloured.
HEAT_COLOURS = [[0.0, "rgba(0,0,0,0)"], [0.35, "rgba(120,28,109,0)"], [0.6, "rgba(237,105,37,0.35)"],
                [1.0, "rgba(252,255,164,0.6)"]]
#: Opacity in SD above normal films: under 1 SD untinted, then cyan to white (distinct from the heatmap's colours).
OPACITY_COLOURS = [[0.0, "rgba(0,0,0,0)"], [0.33, "rgba(0,160,200,0)"], [0.45, "rgba(0,190,230,0.35)"],
                   [1.0, "rgba(230,255,255,0.65)"]]
#: Toggles per row (five in one row of the viewer's column cut their labels short).
TOGGLES_PER_ROW = 3
_COLOURS = {"right lung": "#2ca02c", "left lung": "#17becf", "heart": "#d62728"}


def overlay_controls(key: str, reading: ImageReading | None, regions: Sequence[Region] = ()) -> set[str]:
    """Toggles for the layers this reading (and the case's expert ``regions``) has, all on by default; returns
    the chosen layers."""
    return layer_toggles(key, available_layers(reading, regions))


def layer_toggles(key: str, available: Sequence[str]) -> set[str]:
    """One toggle per layer in ``available`` (all on by default); returns the chosen layers."""
    if not available:
        return set()
    chosen = set()
    for start in range(0, len(available), TOGGLES_PER_ROW):
        row = available[start : start + TOGGLES_PER_ROW]
        for column, layer in zip(st.columns(TOGGLES_PER_ROW), row, strict=False):
            if column.toggle(_LAYER_LABELS[layer], value=True, key=f"{key}_overlay_{layer}", help=_LAYER_HELP[layer]):
                chosen.add(layer)
    return chosen


def available_layers(reading: ImageReading | None, regions: Sequence[Region] = ()) -> list[str]:
    """The layers a reading (and a case's expert ``regions``) can draw."""
    present = {"expert": bool(regions)}
    if reading is not None:
        overlays = reading.overlays
        present |= {
            "outlines": bool(overlays.contours),
            "zones": bool(reading.flagged_zones() and overlays.zone_boxes),
            "opacity": overlays.opacity is not None and bool(np.max(overlays.opacity) >= PLACING_Z),
            "heatmap": overlays.heatmap is not None,
            "devices": bool(overlays.devices or reading.devices),
        }
    return [layer for layer in LAYERS if present.get(layer)]


@dataclass(frozen=True)
class Placement:
    """Where an image of the original pixels sits in a figure: scale, offset and the axes it is drawn on."""

    sy: float
    sx: float
    oy: float = 0.0
    ox: float = 0.0
    xaxis: str = "x"
    yaxis: str = "y"

    @classmethod
    def scaled(cls, original_shape: tuple[int, int], shown_shape: tuple[int, int]) -> Placement:
        """An image resized from ``original_shape`` to ``shown_shape`` (the single-image viewer)."""
        return cls(shown_shape[0] / max(original_shape[0], 1), shown_shape[1] / max(original_shape[1], 1))

    def x(self, value: float) -> float:
        """Figure x of an original-image column."""
        return self.ox + value * self.sx

    def y(self, value: float) -> float:
        """Figure y of an original-image row."""
        return self.oy + value * self.sy

    @property
    def refs(self) -> dict[str, str]:
        """``xref``/``yref`` for shapes and annotations on this image's axes."""
        return {"xref": self.xaxis, "yref": self.yaxis}

    @property
    def trace_axes(self) -> dict[str, str]:
        """``xaxis``/``yaxis`` for traces on this image's axes."""
        return {"xaxis": self.xaxis, "yaxis": self.yaxis}


def _grid_trace(grid: np.ndarray, original_shape: tuple[int, int], at: Placement, colours: list[list[object]],
                zmax: float, name: str, hover: str) -> go.Heatmap:
    """A coarse map covering the whole image, each cell centred on the part of the image it summarises."""
    cell_h, cell_w = original_shape[0] / grid.shape[0], original_shape[1] / grid.shape[1]
    return go.Heatmap(z=grid, x0=at.x(cell_w / 2), dx=cell_w * at.sx, y0=at.y(cell_h / 2), dy=cell_h * at.sy,
                      colorscale=colours, zsmooth="best", showscale=False, zmin=0.0, zmax=zmax,
                      hovertemplate=hover, name=name, **at.trace_axes)


def _add_expert(fig: go.Figure, regions: Sequence[Region], at: Placement) -> None:
    for region in regions:
        shape = "circle" if region.shape == "disc" else "rect"
        fig.add_shape(type=shape, x0=at.x(region.x0), y0=at.y(region.y0), x1=at.x(region.x1), y1=at.y(region.y1),
                      line=dict(color=EXPERT_COLOUR, width=2, dash="dash"), **at.refs)
        source = "NIH box" if region.source == "nih" else "drawn"
        fig.add_annotation(x=at.x(region.x0), y=at.y(region.y1), text=f"{region.label} ({source})", showarrow=False,
                           xanchor="left", yanchor="top", font=dict(color=EXPERT_COLOUR, size=11),
                           bgcolor="rgba(0,0,0,0.45)", **at.refs)


def add_overlays(
    fig: go.Figure, reading: ImageReading | None, original_shape: tuple[int, int], placement: Placement,
    layers: Collection[str], regions: Sequence[Region] = (),
) -> go.Figure:
    """Draw the chosen ``layers`` of ``reading`` (an image of ``original_shape`` px) on ``fig`` at ``placement``;
    the "expert" layer draws ``regions`` (the case's expert boxes, in the image's pixels)."""
    if "expert" in layers and regions:
        _add_expert(fig, regions, placement)
        fig.update_layout(showlegend=False)
    if reading is None or not layers:
        return fig
    at = placement
    overlays = reading.overlays
    if "opacity" in layers and overlays.opacity is not None:
        grid = np.asarray(overlays.opacity, dtype=np.float32)
        fig.add_trace(_grid_trace(grid, original_shape, at, OPACITY_COLOURS, MAX_Z, "opacity",
                                  "%{z:.1f} SD denser than normal films<extra></extra>"))
        row, col, top = densest_region(grid)
        if top >= PLACING_Z:  # the place the reading gives a lung opacity (medrag.reading.combine)
            fig.add_trace(go.Scatter(
                x=[at.x(col * original_shape[1])], y=[at.y(row * original_shape[0])], mode="markers",
                marker=dict(symbol="cross-thin-open", size=18, color="#00e5ff", line=dict(color="#00e5ff", width=3)),
                name="densest region", hovertemplate=f"densest: {top:.1f} SD above normal films<extra></extra>",
                **at.trace_axes,
            ))
    if "heatmap" in layers and overlays.heatmap is not None:
        fig.add_trace(_grid_trace(np.asarray(overlays.heatmap, dtype=np.float32), original_shape, at, HEAT_COLOURS,
                                  1.0, "heatmap", f"{overlays.heatmap_finding} heatmap %{{z:.2f}}<extra></extra>"))
    if "outlines" in layers:
        for name, points in overlays.contours.items():
            if not points:
                continue
            xs = [at.x(x) for x, _ in points] + [at.x(points[0][0])]
            ys = [at.y(y) for _, y in points] + [at.y(points[0][1])]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="name",
                                     line=dict(color=_COLOURS.get(name, "#ff7f0e"), width=1.5), **at.trace_axes))
    if "zones" in layers:
        for zone in reading.flagged_zones():
            box = overlays.zone_boxes.get(zone)
            if box is None:
                continue
            x, y, w, h = box
            z = reading.zones.get(zone, {}).get("z", 0.0)
            fig.add_shape(type="rect", x0=at.x(x), y0=at.y(y), x1=at.x(x + w), y1=at.y(y + h),
                          line=dict(color="#ffbf00", width=2, dash="dot"), **at.refs)
            fig.add_annotation(x=at.x(x), y=at.y(y), text=f"{zone} +{z:.1f} SD", showarrow=False, xanchor="left",
                               yanchor="bottom", font=dict(color="#ffbf00", size=11), **at.refs)
    if "devices" in layers:
        for device in overlays.devices or reading.devices:
            fig.add_shape(type="rect", x0=at.x(device.x), y0=at.y(device.y), x1=at.x(device.x + device.w),
                          y1=at.y(device.y + device.h), line=dict(color="#e377c2", width=1.5), **at.refs)
            fig.add_annotation(x=at.x(device.x + device.w), y=at.y(device.y), text=device.kind, showarrow=False,
                               xanchor="left", font=dict(color="#e377c2", size=10), **at.refs)
    fig.update_layout(showlegend=False)
    return fig


def reading_figure(pixels: np.ndarray, view: ViewSettings | None, reading: ImageReading | None, key: str,
                   *, height: int = 520, regions: Sequence[Region] = ()) -> go.Figure:
    """The viewer's figure of one image with the layer toggles for its reading (and the case's expert
    ``regions``) drawn above it."""
    fig = image_figure(pixels, view, height=height)
    layers = overlay_controls(key, reading, regions)
    shape = (int(pixels.shape[0]), int(pixels.shape[1]))
    at = Placement.scaled(shape, display_shape(shape))
    if not layers or reading is None:
        return add_overlays(fig, None, shape, at, layers, regions)
    if "opacity" in layers and reading.overlays.opacity is not None:
        st.caption(f"Opacity map: up to **{float(np.max(reading.overlays.opacity)):.1f} SD** above the normal "
                   "films at the same place in the lungs (brighter = denser; the cross marks the densest place).")
    if "heatmap" in layers and reading.overlays.heatmap_finding:
        st.caption(f"Heatmap: where the classifier sees **{reading.overlays.heatmap_finding}** (brighter = more).")
    return add_overlays(fig, reading, shape, at, layers, regions)


def linked_placements(shapes: Sequence[tuple[int, int]], side: int) -> list[Placement]:
    """Placements of images padded to ``side`` squares in :func:`medrag.ui.viewer.linked_figure`'s subplots."""
    out = []
    for col, (height, width) in enumerate(shapes, start=1):
        scale = side / max(height, width, 1)
        shown_h, shown_w = max(1, round(height * scale)), max(1, round(width * scale))
        suffix = "" if col == 1 else str(col)
        out.append(Placement(shown_h / height, shown_w / width, (side - shown_h) // 2, (side - shown_w) // 2,
                             f"x{suffix}", f"y{suffix}"))
    return out


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


__all__ = ["LAYERS", "Placement", "add_overlays", "available_layers", "case_reading", "layer_toggles",
           "linked_placements", "overlay_controls", "reading_figure"]
