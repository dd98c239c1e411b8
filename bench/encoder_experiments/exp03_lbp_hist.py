"""Experiment 3: the two strong families from exp02 — LBP and intensity histograms — tuned.

LBP: input scale, grid, (P, R), method. Histograms: bins, grid, crop. Then their combination.
Run: .venv/bin/python bench/encoder_experiments/exp03_lbp_hist.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score, subset  # noqa: E402
from exp02_families import int_hist, otsu_crop, resize  # noqa: E402
from skimage.feature import local_binary_pattern  # noqa: E402


def lbp_hist(t: np.ndarray, grid: int, p: int = 8, r: float = 1, method: str = "uniform") -> np.ndarray:
    codes = local_binary_pattern((t * 255).clip(0, 255).astype(np.uint8), p, r, method).astype(np.int64)
    n_bins = {"uniform": p + 2, "nri_uniform": p * (p - 1) + 3, "default": 2**p, "ror": 2**p}[method]
    h, w = codes.shape
    out = []
    for i in range(grid):
        for j in range(grid):
            c = codes[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            out.append(np.bincount(c.ravel(), minlength=n_bins) / c.size)
    return np.sqrt(np.concatenate(out))


def report(name: str, vecs: list[np.ndarray], rows: list[dict[str, str]]) -> None:
    v = np.stack(vecs).astype(np.float32)
    s = score(v - v.mean(0), rows).overall
    print(f"{name:<34}{v.shape[1]:>6}{s.precision[1]:>7.3f}{s.precision[5]:>7.3f}"
          f"{s.precision[10]:>7.3f}{s.map_at[10]:>7.3f}", flush=True)


def main() -> None:
    images, rows = load_all()
    nih, nrows = subset(images, rows, "nih")
    print(f"{'variant (centred)':<34}{'dim':>6}{'P@1':>7}{'P@5':>7}{'P@10':>7}{'mAP10':>7}")
    scaled = {s: [resize(im, s) for im in nih] for s in (64, 96, 128, 192, 256)}
    for s, ts in scaled.items():
        for grid in (1, 2, 4):
            report(f"lbp{s} g{grid} P8R1", [lbp_hist(x, grid) for x in ts], nrows)
    t128 = scaled[128]
    for grid in (3, 6, 8):
        report(f"lbp128 g{grid} P8R1", [lbp_hist(x, grid) for x in t128], nrows)
    report("lbp128 g4 P8R2", [lbp_hist(x, 4, 8, 2) for x in t128], nrows)
    report("lbp128 g4 P4R1", [lbp_hist(x, 4, 4, 1) for x in t128], nrows)
    report("lbp128 g4 nri", [lbp_hist(x, 4, 8, 1, "nri_uniform") for x in t128], nrows)
    report("lbp128 g2 default256", [lbp_hist(x, 2, 8, 1, "default") for x in t128], nrows)
    report("lbp 64+128+256 g4", [np.concatenate([lbp_hist(scaled[s][i], 4) for s in (64, 128, 256)])
                                   for i in range(len(nih))], nrows)
    report("lbp 128+256 g4", [np.concatenate([lbp_hist(scaled[s][i], 4) for s in (128, 256)])
                                for i in range(len(nih))], nrows)
    for bins in (16, 32, 64):
        for grid in (1, 2, 4):
            report(f"hist{bins} g{grid}", [int_hist(x, grid, bins) for x in t128], nrows)
    crops = [resize(otsu_crop(im), 128) for im in nih]
    report("hist32 g2 crop", [int_hist(x, 2, 32) for x in crops], nrows)
    report("hist32 g4 crop", [int_hist(x, 4, 32) for x in crops], nrows)


if __name__ == "__main__":
    main()
