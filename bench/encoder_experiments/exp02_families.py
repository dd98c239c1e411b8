"""Experiment 2: each feature family alone, on nih normal-vs-pneumonia (P@10, leave-one-patient-out).

Families: thumbnails, Otsu body crop, z-score / CLAHE / hist-eq contrast, HOG, LBP histograms,
intensity histograms, per-block statistics, multi-scale thumbnails.
Run: .venv/bin/python bench/encoder_experiments/exp02_families.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import exposure
from skimage.feature import hog, local_binary_pattern
from skimage.filters import threshold_otsu

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score, subset  # noqa: E402


def resize(im: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    wh = (size, size) if isinstance(size, int) else (size[1], size[0])
    return np.asarray(Image.fromarray(im, mode="F").resize(wh, Image.BOX), dtype=np.float32)


def otsu_crop(im: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Crop to the bbox of the brighter-than-Otsu region (the body), from a 64-px probe."""
    probe = resize(im, 64)
    mask = probe > threshold_otsu(probe)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size < 8 or cols.size < 8:
        return im
    h, w = im.shape
    y0, y1 = rows[0] / 64, (rows[-1] + 1) / 64
    x0, x1 = cols[0] / 64, (cols[-1] + 1) / 64
    y0, x0 = max(0.0, y0 - margin), max(0.0, x0 - margin)
    y1, x1 = min(1.0, y1 + margin), min(1.0, x1 + margin)
    return im[int(y0 * h):int(np.ceil(y1 * h)), int(x0 * w):int(np.ceil(x1 * w))]


def zs(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


def hog_f(t: np.ndarray, cell: int, orient: int = 9, block: int = 2) -> np.ndarray:
    return hog(t, orientations=orient, pixels_per_cell=(cell, cell), cells_per_block=(block, block),
               feature_vector=True)


def lbp_hist(t: np.ndarray, grid: int, p: int = 8, r: float = 1) -> np.ndarray:
    codes = local_binary_pattern((t * 255).clip(0, 255).astype(np.uint8), p, r, "uniform").astype(np.int64)
    n_bins = p + 2
    h, w = codes.shape
    out = []
    for i in range(grid):
        for j in range(grid):
            c = codes[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            out.append(np.bincount(c.ravel(), minlength=n_bins) / c.size)
    return np.sqrt(np.concatenate(out))  # Hellinger


def int_hist(t: np.ndarray, grid: int, bins: int = 16) -> np.ndarray:
    h, w = t.shape
    out = []
    for i in range(grid):
        for j in range(grid):
            c = t[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            idx = np.clip((c * bins).astype(np.int64), 0, bins - 1)
            out.append(np.bincount(idx.ravel(), minlength=bins) / c.size)
    return np.sqrt(np.concatenate(out))


def block_stats(t: np.ndarray, grid: int) -> np.ndarray:
    h, w = t.shape
    b = t[: h // grid * grid, : w // grid * grid].reshape(grid, h // grid, grid, w // grid)
    return np.concatenate([b.mean(axis=(1, 3)).ravel(), b.std(axis=(1, 3)).ravel()])


def main() -> None:
    images, rows = load_all()
    nih, nrows = subset(images, rows, "nih")
    t0 = time.perf_counter()
    crops = [otsu_crop(im) for im in nih]
    print(f"otsu crop {1000 * (time.perf_counter() - t0) / len(nih):.2f} ms/img")
    t128 = [resize(im, 128) for im in nih]
    c128 = [resize(im, 128) for im in crops]
    t64 = [resize(im, 64) for im in nih]
    c64 = [resize(im, 64) for im in crops]
    cz128 = [zs(x) for x in c128]
    eq128 = [exposure.equalize_hist(x).astype(np.float32) for x in t128]
    cl128 = [exposure.equalize_adapthist(x).astype(np.float32) for x in t128]
    ccl128 = [exposure.equalize_adapthist(x).astype(np.float32) for x in c128]

    variants: dict[str, list[np.ndarray]] = {
        "thumb32": [resize(x, 32).ravel() for x in t128],
        "thumb32 crop": [resize(x, 32).ravel() for x in c128],
        "thumb32 crop z": [zs(resize(x, 32)).ravel() for x in c128],
        "thumb32 hist-eq": [resize(x, 32).ravel() for x in eq128],
        "thumb32 clahe": [resize(x, 32).ravel() for x in cl128],
        "thumb32 crop clahe": [resize(x, 32).ravel() for x in ccl128],
        "multiscale 8+16+32 z": [np.concatenate([zs(resize(x, s)).ravel() / s for s in (8, 16, 32)]) for x in t128],
        "multiscale crop 8+16+32 z": [np.concatenate([zs(resize(x, s)).ravel() / s for s in (8, 16, 32)]) for x in c128],
        "hog64 c8": [hog_f(x, 8) for x in t64],
        "hog64 c8 crop": [hog_f(x, 8) for x in c64],
        "hog128 c16": [hog_f(x, 16) for x in t128],
        "hog128 c16 crop": [hog_f(x, 16) for x in c128],
        "hog128 c8 crop": [hog_f(x, 8) for x in c128],
        "hog128 c32 crop": [hog_f(x, 32) for x in c128],
        "hog128 c16 crop clahe": [hog_f(x, 16) for x in ccl128],
        "lbp128 global": [lbp_hist(x, 1) for x in t128],
        "lbp128 4x4": [lbp_hist(x, 4) for x in t128],
        "lbp128 4x4 crop": [lbp_hist(x, 4) for x in c128],
        "lbp128 4x4 crop P16R2": [lbp_hist(x, 4, 16, 2) for x in c128],
        "lbp128 4x4 crop clahe": [lbp_hist(x, 4) for x in ccl128],
        "hist global 32": [int_hist(x, 1, 32) for x in t128],
        "hist global crop 32": [int_hist(x, 1, 32) for x in c128],
        "hist 4x4 crop 16": [int_hist(x, 4, 16) for x in c128],
        "hist 4x4 crop z-clip 16": [int_hist(np.clip(x / 6 + 0.5, 0, 1), 4, 16) for x in cz128],
        "blockstats 8 crop": [block_stats(x, 8) for x in c128],
        "blockstats 8 crop z": [block_stats(x, 8) for x in cz128],
        "blockstats 16 crop z": [block_stats(x, 16) for x in cz128],
    }
    print(f"{'variant':<30}{'dim':>6}{'P@1':>7}{'P@5':>7}{'P@10':>7}{'mAP10':>7}")
    for name, vecs in variants.items():
        v = np.stack(vecs).astype(np.float32)
        for tag, vv in (("", v), (" (centred)", v - v.mean(0))):
            s = score(vv, nrows).overall
            print(f"{name + tag:<30}{v.shape[1]:>6}{s.precision[1]:>7.3f}{s.precision[5]:>7.3f}"
                  f"{s.precision[10]:>7.3f}{s.map_at[10]:>7.3f}")


if __name__ == "__main__":
    main()
