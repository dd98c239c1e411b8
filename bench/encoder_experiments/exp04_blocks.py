"""Experiment 4: feature blocks, their weights, centring and PCA whitening; three evaluation sets.

Every block is computed once, L2-normalised, scaled by a weight and concatenated. Sets:
  nih      nih normal vs pneumonia (the headline task, 521 images)
  kermany  kermany normal vs pneumonia (held out from tuning: a check, 618 images, 224 px)
  all      every image, three labels (1,389)
  era      nih normals + the 59 nih pneumonias whose patient ids fall in the normals' id range
           (1280-3966): a check on the acquisition-era shortcut (see README.md here)
Run: .venv/bin/python bench/encoder_experiments/exp04_blocks.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score  # noqa: E402
from fast_lbp import lbp_codes  # noqa: E402
from medrag.evaluation.retrieval import chance_precision  # noqa: E402


def resize(im: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(im, mode="F").resize((hw[1], hw[0]), Image.BOX), dtype=np.float32)


def cap(im: np.ndarray, side: int) -> np.ndarray:
    h, w = im.shape
    s = side / max(h, w)
    return im if s >= 1 else resize(im, (max(8, round(h * s)), max(8, round(w * s))))


def lbp_grid(im: np.ndarray, grid: int) -> np.ndarray:
    c = lbp_codes(np.round(im * 255).astype(np.uint8))
    h, w = c.shape
    out = []
    for i in range(grid):
        for j in range(grid):
            b = c[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            out.append(np.bincount(b.ravel(), minlength=10) / max(b.size, 1))
    return np.sqrt(np.concatenate(out))


def hist(im: np.ndarray, bins: int, grid: int = 1) -> np.ndarray:
    h, w = im.shape
    out = []
    for i in range(grid):
        for j in range(grid):
            b = im[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            idx = np.clip((b * bins).astype(np.int64), 0, bins - 1)
            out.append(np.bincount(idx.ravel(), minlength=bins) / max(b.size, 1))
    return np.sqrt(np.concatenate(out))


BLOCKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "lbp512_g1": lambda im: lbp_grid(cap(im, 512), 1),
    "lbp512_g2": lambda im: lbp_grid(cap(im, 512), 2),
    "lbp512_g4": lambda im: lbp_grid(cap(im, 512), 4),
    "lbp256_g1": lambda im: lbp_grid(resize(im, (256, 256)), 1),
    "lbp256_g4": lambda im: lbp_grid(resize(im, (256, 256)), 4),
    "lbp128_g4": lambda im: lbp_grid(resize(im, (128, 128)), 4),
    "hist32": lambda im: hist(resize(im, (128, 128)), 32),
    "hist16_g4": lambda im: hist(resize(im, (128, 128)), 16, 4),
    "thumb16": lambda im: resize(im, (16, 16)).ravel(),
    "thumb32": lambda im: resize(im, (32, 32)).ravel(),
}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def combine(feats: dict[str, np.ndarray], weights: dict[str, float], centre: bool) -> np.ndarray:
    parts = []
    for name, w in weights.items():
        f = feats[name]
        if centre:
            f = f - f.mean(0)
        parts.append(w * unit(f))
    return np.concatenate(parts, axis=1)


def pca_whiten(x: np.ndarray, dim: int, eps: float) -> np.ndarray:
    mu = x.mean(0)
    u, s, vt = np.linalg.svd(x - mu, full_matrices=False)
    var = s**2 / len(x)
    k = min(dim, vt.shape[0])
    return (x - mu) @ vt[:k].T / np.sqrt(var[:k] + eps * var[0])


def main() -> None:
    images, rows = load_all()
    sets = {
        "nih": [i for i, r in enumerate(rows) if r["dataset"] == "nih"],
        "kermany": [i for i, r in enumerate(rows) if r["dataset"] == "kermany"],
        "all": list(range(len(rows))),
        "era": [i for i, r in enumerate(rows) if r["dataset"] == "nih" and
                (r["label"] == "normal" or 1280 <= int(r["patient_id"].split("_")[1]) <= 3966)],
    }
    print("chance:", {k: round(chance_precision([rows[i]["label"] for i in v],
                                                [rows[i]["patient_id"] for i in v]), 3) for k, v in sets.items()})
    feats_all = {name: np.stack([fn(im) for im in images]).astype(np.float32) for name, fn in BLOCKS.items()}

    def run(tag: str, weights: dict[str, float], centre: bool = True,
            post: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        out = []
        for name, idx in sets.items():
            # fitted state (centring, PCA) is fitted on the evaluated library itself, as the app does
            f = {k: v[idx] for k, v in feats_all.items()}
            x = combine(f, weights, centre)
            if post is not None:
                x = post(x)
            s = score(x, [rows[i] for i in idx]).overall
            out.append(f"{s.precision[10]:.3f}" + (f"/{s.precision[1]:.3f}" if name == "nih" else ""))
        print(f"{tag:<46}" + "  ".join(f"{o:>11}" for o in out), flush=True)

    print(f"{'blocks (weights) — P@10 [nih also P@1]':<46}" + "  ".join(f"{k:>11}" for k in sets))
    for name in BLOCKS:
        run(f"{name}", {name: 1.0})
    run("thumb16 raw (no centring)", {"thumb16": 1.0}, centre=False)
    run("lbp512_g1 raw (no centring)", {"lbp512_g1": 1.0}, centre=False)
    run("lbp512_g1+lbp256_g1", {"lbp512_g1": 1, "lbp256_g1": 1})
    run("lbp512_g1+lbp512_g4", {"lbp512_g1": 1, "lbp512_g4": 1})
    run("lbp512_g1+hist32", {"lbp512_g1": 1, "hist32": 1})
    run("lbp512_g1+thumb16", {"lbp512_g1": 1, "thumb16": 1})
    run("lbp512_g1+lbp256_g4+hist32+thumb16", {"lbp512_g1": 1, "lbp256_g4": 1, "hist32": 1, "thumb16": 1})
    run("lbp512_g1+lbp512_g4+hist32+thumb16", {"lbp512_g1": 1, "lbp512_g4": 1, "hist32": 1, "thumb16": 1})
    for wt in (0.25, 0.5, 0.75, 1.0):
        run(f"lbp512_g1+lbp256_g4+hist32 + {wt}*thumb16",
            {"lbp512_g1": 1, "lbp256_g4": 1, "hist32": 1, "thumb16": wt})
    for wl in (1.5, 2.0):
        run(f"{wl}*lbp512_g1+lbp256_g4+hist32+0.5*thumb16",
            {"lbp512_g1": wl, "lbp256_g4": 1, "hist32": 1, "thumb16": 0.5})
    base = {"lbp512_g1": 1, "lbp256_g4": 1, "hist32": 1, "thumb16": 0.5}
    run("base, not centred", base, centre=False)
    for dim in (32, 64, 128):
        for eps in (0.0, 0.01, 0.1):
            run(f"base + PCA{dim} whiten eps={eps}", base, post=lambda x, d=dim, e=eps: pca_whiten(x, d, e))
    run("base + PCA64 no whitening",
        base, post=lambda x: (x - x.mean(0)) @ np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:64].T)


if __name__ == "__main__":
    main()
