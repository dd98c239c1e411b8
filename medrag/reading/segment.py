"""Lung and heart segmentation at a working resolution, with the model loaded lazily from the repository.

The network (:mod:`medrag.reading.segnet`) and its trained weights (``weights/segment.safetensors``, stamped
by ``weights/segment.json``; trained by ``python -m medrag.training.segment_train``) are loaded on first use
and cached; importing this module does not import torch. Weights come only from this repository, never a
download. The lungs were learned from real films (../shared/data/cxr-masks) and phantoms; the heart from
phantoms only (no real film here has a heart mask), so on real films the heart is an estimate.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from medrag.errors import ConfigError
from medrag.inference_lock import torch_inference

if TYPE_CHECKING:
    pass

#: Working resolution (square) of the segmenter.
SEG_SIZE = 128
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SEGMENT_WEIGHTS = WEIGHTS_DIR / "segment.safetensors"
SEGMENT_STAMP = WEIGHTS_DIR / "segment.json"


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """2-D float32 grey pixels in [0, 1] from uint8 / float, grey or RGB(A) input."""
    arr = np.asarray(pixels)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise ConfigError(f"anatomy reading needs a 2-D image of at least 8 x 8 pixels, got shape {arr.shape}.")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    out = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0) if out.max() <= 1.0 else out / np.float32(max(float(out.max()), 1e-6))


def resize_square(grey: np.ndarray, size: int) -> np.ndarray:
    """Antialiased resize of a 2-D float image to ``size`` x ``size`` (aspect ratio not kept)."""
    if grey.shape == (size, size):
        return grey.astype(np.float32, copy=False)
    return np.asarray(
        Image.fromarray(grey.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
    )


def standardise(small: np.ndarray) -> np.ndarray:
    """Zero mean, unit SD (the network's input; robust to exposure)."""
    return ((small - small.mean()) / (small.std() + 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class Segmentation:
    """Probability maps at the working resolution and how they map to the original image."""

    lungs: np.ndarray  # float32 (SEG_SIZE, SEG_SIZE), P(lung)
    heart: np.ndarray  # float32, P(heart)
    small: np.ndarray  # the grey image resized to the working resolution, in [0, 1]
    #: original pixels per working pixel, (rows, cols)
    scale: tuple[float, float]
    #: the network's pooled bottleneck features (560,), read by the view classifier
    features: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32), repr=False)


class Segmenter:
    """The trained lung and heart segmenter (CPU; thread-safe inference)."""

    def __init__(self, weights: Path = SEGMENT_WEIGHTS) -> None:
        if not weights.is_file():
            raise ConfigError(f"segmentation weights {weights} are missing: they ship with the repository; "
                              "restore them from git or retrain with `python -m medrag.training.segment_train`.")
        import torch
        from safetensors.torch import load_file

        from medrag.reading.segnet import SegNet

        self._torch = torch
        self.net = SegNet()
        self.net.load_state_dict(load_file(str(weights)))
        self.net.eval()
        self.stamp: dict[str, Any] = json.loads(SEGMENT_STAMP.read_text()) if SEGMENT_STAMP.is_file() else {}

    def probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sigmoid maps (N, 2, S, S), pooled features (N, 560)) for standardised inputs (N, S, S)."""
        torch = self._torch
        # One thread: this net is small, and on a machine shared past its cores two OpenMP threads made a
        # 128 px forward pass 10-20 times slower (23 ms -> 430 ms measured, docs/reading-anatomy.md).
        with torch_inference(threads=1):
            x = torch.from_numpy(np.ascontiguousarray(batch[:, None]))
            logits, feats = self.net.forward_with_features(x)
            return torch.sigmoid(logits).numpy(), feats.numpy()

    def segment(self, pixels: np.ndarray) -> Segmentation:
        """Lung and heart probabilities of one image (any size; grey or RGB, uint8 or float)."""
        grey = to_grey(pixels)
        small = resize_square(grey, SEG_SIZE)
        probs, feats = self.probabilities(standardise(small)[None])
        scale = (grey.shape[0] / SEG_SIZE, grey.shape[1] / SEG_SIZE)
        return Segmentation(lungs=probs[0, 0], heart=probs[0, 1], small=small, scale=scale, features=feats[0])


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _cached_segmenter() -> Segmenter:
    return Segmenter()


def default_segmenter() -> Segmenter:
    """The repository's segmenter, loaded once (the first call imports torch and reads the weights)."""
    with _LOAD_LOCK:
        return _cached_segmenter()


def upsample(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A working-resolution probability map resized (bilinear) to ``shape`` (rows, cols)."""
    return np.asarray(Image.fromarray(prob.astype(np.float32), mode="F").resize((shape[1], shape[0]),
                                                                                Image.Resampling.BILINEAR))


__all__ = [
    "SEGMENT_STAMP", "SEGMENT_WEIGHTS", "SEG_SIZE", "Segmentation", "Segmenter", "default_segmenter",
    "resize_square", "standardise", "to_grey", "upsample",
]
