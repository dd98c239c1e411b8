"""The image viewer: window/level, invert and contrast on [0, 1] pixels, shown as a zoomable plotly figure."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from plotly.subplots import make_subplots

from medrag.imaging import apply_window, enhance_contrast, invert, to_uint8

#: Longest side sent to the browser; zooming a 3000-px radiograph in a 700-px panel needs no more.
MAX_DISPLAY_SIDE = 1024
#: plotly config: wheel zoom, no logo, no data upload buttons.
PLOTLY_CONFIG: dict[str, Any] = {
    "scrollZoom": True,
    "displaylogo": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}


@dataclass(frozen=True)
class ViewSettings:
    """How to display pixels: a linear window on the [0, 1] scale, negative, CLAHE."""

    center: float = 0.5
    width: float = 1.0
    inverted: bool = False
    enhanced: bool = False

    @property
    def is_identity(self) -> bool:
        """True when the pixels are shown as they are."""
        return (self.center, self.width, self.inverted, self.enhanced) == (0.5, 1.0, False, False)


def needs_windowing(meta: Mapping[str, Any] | None) -> bool:
    """Whether window/level matters for this image: DICOM or more than 8 bits per pixel."""
    if not meta:
        return False
    return str(meta.get("format", "")).lower() == "dicom" or int(meta.get("bit_depth") or 8) > 8


def display_shape(shape: tuple[int, int], max_side: int = MAX_DISPLAY_SIDE) -> tuple[int, int]:
    """(height, width) :func:`downsample` gives an image of ``shape``."""
    height, width = shape
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def downsample(pixels: np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> np.ndarray:
    """Float pixels whose longer side is at most ``max_side`` (area-averaged; aspect kept)."""
    arr = np.asarray(pixels, dtype=np.float32)
    height, width = arr.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return arr
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(arr, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float32)


def render_pixels(pixels: np.ndarray, view: ViewSettings) -> np.ndarray:
    """Apply window/level, then contrast enhancement, then inversion; returns float32 in [0, 1]."""
    out = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    if (view.center, view.width) != (0.5, 1.0):
        out = apply_window(out, view.center, view.width)
    if view.enhanced:
        out = enhance_contrast(out)
    if view.inverted:
        out = invert(out)
    return out


def png_data_uri(pixels: np.ndarray) -> str:
    """A grayscale PNG of float [0, 1] pixels as a ``data:`` URI (what the browser draws)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels), mode="L").save(buffer, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _gray_trace(pixels: np.ndarray) -> go.Image:
    # A PNG source, not a z array: a 1024-px image as JSON numbers would be ~10 MB per rerun.
    return go.Image(source=png_data_uri(pixels), hoverinfo="skip")


def _style(fig: go.Figure, height: int) -> go.Figure:
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=28, b=0), dragmode="pan")
    return fig


@st.cache_data(show_spinner=False, max_entries=32)
def _display_uri(pixels: np.ndarray, view: ViewSettings) -> str:
    # Every rerun of a page redraws its viewer: downsampling, windowing and PNG-encoding the same pixels
    # again cost tens of ms each time; hashing them for this cache costs ~1 ms.
    return png_data_uri(render_pixels(downsample(pixels), view))


def image_figure(
    pixels: np.ndarray, view: ViewSettings | None = None, *, title: str = "", height: int = 520
) -> go.Figure:
    """A plotly figure of one image (pan by drag, zoom by wheel or box, double-click to reset)."""
    fig = go.Figure(go.Image(source=_display_uri(pixels, view or ViewSettings()), hoverinfo="skip"))
    if title:
        fig.update_layout(title=dict(text=title, font=dict(size=13)))
    return _style(fig, height)


def pad_to_square(pixels: np.ndarray, side: int) -> np.ndarray:
    """Fit the image into a ``side`` x ``side`` black square (aspect kept, centred)."""
    arr = np.asarray(pixels, dtype=np.float32)
    height, width = arr.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = np.asarray(Image.fromarray(arr, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - resized.shape[0]) // 2, (side - resized.shape[1]) // 2
    out[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return out


def linked_figure(
    images: Sequence[np.ndarray], titles: Sequence[str], view: ViewSettings, *, side: int = 512, height: int = 460
) -> go.Figure:
    """Two to four images side by side; zoom and pan on one moves them all (shared axes)."""
    fig = make_subplots(rows=1, cols=len(images), subplot_titles=[str(t) for t in titles], horizontal_spacing=0.01)
    for col, pixels in enumerate(images, start=1):
        fig.add_trace(_gray_trace(render_pixels(pad_to_square(pixels, side), view)), row=1, col=col)
    fig.update_xaxes(matches="x")
    fig.update_yaxes(matches="y")
    for annotation in fig.layout.annotations:
        annotation.font = dict(size=12)
    return _style(fig, height)


def view_controls(key: str, meta: Mapping[str, Any] | None = None) -> ViewSettings:
    """Window/level, invert and contrast widgets; open by default for DICOM and 16-bit images."""
    wide = needs_windowing(meta)
    box = st.container(border=True) if wide else st.expander("Window / level, invert", expanded=False)
    with box:
        if wide:
            st.caption("Window / level (DICOM or 16-bit image)")
        left, right = st.columns(2)
        center = left.slider("Level (window centre)", 0.0, 1.0, 0.5, 0.01, key=f"{key}_level")
        width = right.slider("Window width", 0.02, 1.0, 1.0, 0.01, key=f"{key}_width")
        inverted = st.toggle("Invert (negative)", key=f"{key}_invert")
    enhanced = st.toggle("Enhance contrast (CLAHE)", key=f"{key}_clahe")
    return ViewSettings(float(center), float(width), bool(inverted), bool(enhanced))
