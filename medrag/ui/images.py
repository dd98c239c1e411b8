"""Decoded images for the viewer, cached per file or upload (light: numpy and Pillow only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from medrag.errors import InputError


@st.cache_data(show_spinner=False, max_entries=64)
def _image_at(path: str, mtime_ns: int) -> tuple[np.ndarray, dict[str, Any]]:
    from medrag.imaging import load_image

    image = load_image(Path(path))
    return image.pixels, dict(image.meta)


def load_image_file(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Decoded [0, 1] pixels and metadata of an image file (cached per path and modification time)."""
    target = Path(path)
    try:
        mtime = target.stat().st_mtime_ns
    except OSError:
        raise InputError(
            f"The image {target.name} is no longer on disk; re-import the case or run the analysis again."
        ) from None
    return _image_at(str(target), mtime)


def load_pixels(path: str | Path) -> np.ndarray:
    """Decoded [0, 1] pixels of an image file (cached)."""
    return load_image_file(path)[0]


@st.cache_data(show_spinner=False, max_entries=16)
def decode_upload(data: bytes, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Pixels and de-identified metadata of uploaded bytes (cached by content, so reruns are free)."""
    from medrag.imaging import load_image

    image = load_image(data, name=name)
    return image.pixels, dict(image.meta)
