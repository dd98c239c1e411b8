"""The augmented views medrag-cnn is trained on, seeded per film so that every run draws the same ones."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF


def augment(gray: torch.Tensor, rng: np.random.Generator, size: int) -> torch.Tensor:
    """One random view (1, size, size) of a (1, H, W) film: intensity, then crop / rotation / flip."""
    x = gray * rng.uniform(0.85, 1.15)  # brightness
    mean = x.mean()
    x = ((x - mean) * rng.uniform(0.85, 1.15) + mean).clamp(0, 1)  # contrast
    x = x ** rng.uniform(0.8, 1.25)  # gamma
    _, h, w = x.shape
    area, ratio = rng.uniform(0.8, 1.0) * h * w, math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
    ch, cw = min(h, round(math.sqrt(area / ratio))), min(w, round(math.sqrt(area * ratio)))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    x = TF.resized_crop(x, top, left, ch, cw, [size, size], antialias=True)
    x = TF.rotate(x, float(rng.uniform(-10, 10)), interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)
    if rng.random() < 0.5:
        x = TF.horizontal_flip(x)
    return x.clamp(0, 1)


def hash_name(name: str) -> int:
    """A stable 32-bit number for a film name (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


__all__ = ["augment", "hash_name"]
