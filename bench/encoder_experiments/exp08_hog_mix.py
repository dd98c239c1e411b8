"""Experiment 8: adding coarse HOG (shape) to the texture blocks — phantoms vs nih trade-off.

Run: .venv/bin/python bench/encoder_experiments/exp08_hog_mix.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage.feature import hog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score  # noqa: E402
from exp04_blocks import BLOCKS, resize, unit  # noqa: E402
from exp07_phantom_blocks import phantoms  # noqa: E402
from medrag.evaluation.retrieval import leave_one_patient_out  # noqa: E402

HOGS = {
    "hog64c16": lambda im: hog(resize(im, (64, 64)), 9, (16, 16), (2, 2)),
    "hog64c16b1": lambda im: hog(resize(im, (64, 64)), 9, (16, 16), (1, 1)),
    "hog96c24": lambda im: hog(resize(im, (96, 96)), 9, (24, 24), (2, 2)),
    "hog64c16o12": lambda im: hog(resize(im, (64, 64)), 12, (16, 16), (2, 2)),
    "hog48c12": lambda im: hog(resize(im, (48, 48)), 9, (12, 12), (2, 2)),
    "hog64c21": lambda im: hog(resize(im, (63, 63)), 9, (21, 21), (2, 2)),
    "hog80c16": lambda im: hog(resize(im, (80, 80)), 9, (16, 16), (2, 2)),
}


def main() -> None:
    ph, ph_labels = phantoms()
    pids = [str(i) for i in range(len(ph))]
    images, rows = load_all()
    idx = [i for i, r in enumerate(rows) if r["dataset"] == "nih"]
    nih, nrows = [images[i] for i in idx], [rows[i] for i in idx]
    kidx = [i for i, r in enumerate(rows) if r["dataset"] == "kermany"]
    ker, krows = [images[i] for i in kidx], [rows[i] for i in kidx]
    blocks = {k: BLOCKS[k] for k in ("lbp512_g1", "lbp512_g4", "hist32", "thumb16")} | HOGS
    feats = {
        name: {k: np.stack([f(im) for im in ims]).astype(np.float32) for k, f in blocks.items()}
        for name, ims in (("ph", ph), ("nih", nih), ("ker", ker))
    }

    def mix(f: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
        return np.concatenate([w * unit(f[k] - f[k].mean(0)) for k, w in weights.items() if w], axis=1)

    def run(tag: str, weights: dict[str, float]) -> None:
        p = leave_one_patient_out(unit(mix(feats["ph"], weights)), ph_labels, pids).overall
        q = score(mix(feats["nih"], weights), nrows).overall
        r = score(mix(feats["ker"], weights), krows).overall
        print(f"{tag:<44}{p.precision[10]:>8.3f}{q.precision[10]:>9.3f}{q.precision[1]:>8.3f}"
              f"{r.precision[10]:>9.3f}", flush=True)

    print(f"{'mix (centred blocks)':<44}{'ph P@10':>8}{'nih P@10':>9}{'nih P@1':>8}{'ker P@10':>9}")
    for h in HOGS:
        run(h, {h: 1})
    tex = {"lbp512_g1": 1.0, "lbp512_g4": 1.0, "hist32": 1.0}
    for h in ("hog64c16", "hog64c16b1", "hog96c24"):
        for wh in (1.0, 1.5, 2.0, 3.0):
            for wt in (0.0, 0.5, 1.0):
                run(f"tex + {wh}*{h} + {wt}*thumb16", tex | {h: wh, "thumb16": wt})
    for wl in (0.5, 0.75):
        run(f"{wl}*lbp g1,g4 + hist + 1.5*hog64c16 + .5thumb",
            {"lbp512_g1": wl, "lbp512_g4": wl, "hist32": 1, "hog64c16": 1.5, "thumb16": 0.5})
    run("lbp g1 + hist + 1.5*hog64c16 + .5thumb (no g4)",
        {"lbp512_g1": 1, "hist32": 1, "hog64c16": 1.5, "thumb16": 0.5})


if __name__ == "__main__":
    main()
