"""Experiment 9: block weights of the shipped encoder (features computed once), real films and phantoms.

Written for classic-v2 (HOG block); under classic-v3 the "hog" rows change nothing (exp11 has the
v3 weights).

Run: .venv/bin/python bench/encoder_experiments/exp09_weights.py
"""

from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all, score  # noqa: E402
from exp07_phantom_blocks import phantoms  # noqa: E402
from medrag.encoders import classic  # noqa: E402
from medrag.evaluation.retrieval import leave_one_patient_out  # noqa: E402


def main() -> None:
    images, rows = load_all()
    ph, ph_labels = phantoms()
    enc = classic.ClassicEncoder()
    f_all = enc.features(images)
    f_ph = enc.features(ph)
    sets = {
        "nih": [i for i, r in enumerate(rows) if r["dataset"] == "nih"],
        "kermany": [i for i, r in enumerate(rows) if r["dataset"] == "kermany"],
        "all": list(range(len(rows))),
    }
    default = classic.BLOCKS
    names = [b[0] for b in default]
    grid = [
        {"hog": 0.0},
        {"hog": 1.0},
        {"hog": 1.5},
        {"hog": 2.0},
        {"hog": 2.5},
        {"hog": 3.0},
        {"hog": 2.5, "thumb": 0.0},
        {"hog": 2.5, "thumb": 1.0},
        {"hog": 2.5, "hist": 0.5},
        {"hog": 2.5, "lbp_global": 1.5},
        {"hog": 2.5, "lbp_grid": 0.5},
    ]
    print(f"{'weights (others as shipped)':<40}{'ph P@10':>8}" + "".join(f"{k + ' P@10':>14}" for k in sets))
    for change in grid:
        classic.BLOCKS = tuple((n, ln, change.get(n, w)) for n, ln, w in default)
        cells = []
        e = classic.ClassicEncoder()
        e.fit_features(f_ph)
        p = leave_one_patient_out(e.project(f_ph), ph_labels, [str(i) for i in range(len(ph))]).overall
        for idx in sets.values():
            e = classic.ClassicEncoder()
            e.fit_features(f_all[idx])
            cells.append(score(e.project(f_all[idx]), [rows[i] for i in idx]).overall.precision[10])
        tag = ", ".join(f"{k}={v}" for k, v in change.items())
        print(f"{tag:<40}{p.precision[10]:>8.3f}" + "".join(f"{c:>14.3f}" for c in cells), flush=True)
    classic.BLOCKS = default
    print("names:", names)


if __name__ == "__main__":
    main()
