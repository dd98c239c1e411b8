"""Experiment 1: raw thumbnails (size, resampling, normalisation) on nih normal-vs-pneumonia.

Run: .venv/bin/python bench/encoder_experiments/exp01_thumbnails.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score, subset, timed_embed  # noqa: E402


def thumb(im: np.ndarray, size: int, resample: int = Image.BOX) -> np.ndarray:
    return np.asarray(Image.fromarray(im, mode="F").resize((size, size), resample), dtype=np.float32)


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


def main() -> None:
    images, rows = load_all()
    nih, nrows = subset(images, rows, "nih")
    print(f"nih normal vs pneumonia: {len(nih)} images")
    variants = {
        "thumb16": lambda im: thumb(im, 16).ravel(),
        "thumb32 (box)": lambda im: thumb(im, 32).ravel(),
        "thumb32 (bilinear)": lambda im: thumb(im, 32, Image.BILINEAR).ravel(),
        "thumb64": lambda im: thumb(im, 64).ravel(),
        "thumb32 centred": lambda im: (lambda t: t - t.mean())(thumb(im, 32)).ravel(),
        "thumb32 z-score": lambda im: zscore(thumb(im, 32)).ravel(),
        "thumb16 z-score": lambda im: zscore(thumb(im, 16)).ravel(),
        "thumb24 z-score": lambda im: zscore(thumb(im, 24)).ravel(),
    }
    print(f"{'variant':<24}{'P@1':>7}{'P@5':>7}{'P@10':>7}{'mAP10':>7}{'ms/img':>8}")
    for name, fn in variants.items():
        vecs, ms = timed_embed(fn, nih)
        s = score(vecs, nrows).overall
        print(f"{name:<24}{s.precision[1]:>7.3f}{s.precision[5]:>7.3f}{s.precision[10]:>7.3f}"
              f"{s.map_at[10]:>7.3f}{ms:>8.2f}")


if __name__ == "__main__":
    main()
