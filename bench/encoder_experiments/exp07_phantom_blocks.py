"""Experiment 7: which feature blocks separate phantom findings (and do they cost nih accuracy?).

Phantoms (240, cached in $TMPDIR) — P@10 same label, each phantom its own patient — next to
nih normal-vs-pneumonia P@10, for each block alone (centred) and for candidate mixes.
Run: .venv/bin/python bench/encoder_experiments/exp07_phantom_blocks.py
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage.feature import hog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score  # noqa: E402
from exp04_blocks import BLOCKS, hist, lbp_grid, resize, unit  # noqa: E402
from medrag.evaluation.retrieval import leave_one_patient_out  # noqa: E402
from medrag.phantoms import demo_mix, generate_phantom, label_for  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "medrag_phantoms_240.npz"


def phantoms(n: int = 240) -> tuple[list[np.ndarray], list[str]]:
    mix = demo_mix(n, seed=0)
    labels = [label_for(f) for f in mix]
    if CACHE.exists():
        return list(np.load(CACHE)["images"]), labels
    images = [np.round(generate_phantom(f, 1000 + i, 256) * 255).astype(np.float32) / 255
              for i, f in enumerate(mix)]
    np.savez(CACHE, images=np.stack(images))
    return images, labels


def block_stats(im: np.ndarray, grid: int) -> np.ndarray:
    t = resize(im, (grid * 8, grid * 8))
    b = t.reshape(grid, 8, grid, 8)
    return np.concatenate([b.mean(axis=(1, 3)).ravel(), b.std(axis=(1, 3)).ravel()])


def zs(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


EXTRA: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "thumb8": lambda im: resize(im, (8, 8)).ravel(),
    "thumb24": lambda im: resize(im, (24, 24)).ravel(),
    "thumb32z": lambda im: zs(resize(im, (32, 32))).ravel(),
    "thumb48": lambda im: resize(im, (48, 48)).ravel(),
    "hog64c8": lambda im: hog(resize(im, (64, 64)), 9, (8, 8), (2, 2)),
    "hog128c16": lambda im: hog(resize(im, (128, 128)), 9, (16, 16), (2, 2)),
    "hog64c16": lambda im: hog(resize(im, (64, 64)), 9, (16, 16), (2, 2)),
    "hist16_g4": lambda im: hist(resize(im, (128, 128)), 16, 4),
    "hist8_g8": lambda im: hist(resize(im, (128, 128)), 8, 8),
    "blockstats8": lambda im: block_stats(im, 8),
    "lbp128_g8": lambda im: lbp_grid(resize(im, (128, 128)), 8),
    "lbp64_g4": lambda im: lbp_grid(resize(im, (64, 64)), 4),
}


def main() -> None:
    ph, ph_labels = phantoms()
    pids = [str(i) for i in range(len(ph))]
    images, rows = load_all()
    nih_idx = [i for i, r in enumerate(rows) if r["dataset"] == "nih"]
    nih = [images[i] for i in nih_idx]
    nrows = [rows[i] for i in nih_idx]
    blocks = {**BLOCKS, **EXTRA}
    fp = {k: np.stack([f(im) for im in ph]).astype(np.float32) for k, f in blocks.items()}
    fn = {k: np.stack([f(im) for im in nih]).astype(np.float32) for k, f in blocks.items()}

    def mix(feats: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
        return np.concatenate([w * unit(feats[k] - feats[k].mean(0)) for k, w in weights.items()], axis=1)

    def run(tag: str, weights: dict[str, float]) -> None:
        p = leave_one_patient_out(unit(mix(fp, weights)), ph_labels, pids).overall
        q = score(mix(fn, weights), nrows).overall
        print(f"{tag:<52}{p.precision[10]:>9.3f}{p.precision[1]:>7.3f}{q.precision[10]:>9.3f}", flush=True)

    print(f"{'blocks (centred)':<52}{'ph P@10':>9}{'P@1':>7}{'nih P@10':>9}")
    for k in blocks:
        run(k, {k: 1.0})
    run("current: lbp512_g1+lbp512_g4+hist32+.5thumb16",
        {"lbp512_g1": 1, "lbp512_g4": 1, "hist32": 1, "thumb16": 0.5})
    for w in (1.0, 1.5, 2.0):
        run(f"lbp512_g1+lbp512_g4+hist32+{w}thumb16",
            {"lbp512_g1": 1, "lbp512_g4": 1, "hist32": 1, "thumb16": w})
        run(f"lbp512_g1+lbp512_g4+hist32+{w}hog64c8",
            {"lbp512_g1": 1, "lbp512_g4": 1, "hist32": 1, "hog64c8": w})
        run(f"lbp512_g1+lbp512_g4+hist32+{w}thumb16+{w}hog64c8",
            {"lbp512_g1": 1, "lbp512_g4": 1, "hist32": 1, "thumb16": w, "hog64c8": w})


if __name__ == "__main__":
    main()
