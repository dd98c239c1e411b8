"""Experiment 5: the shipped ClassicEncoder — quality (unfitted vs fitted) and speed on one core.

Fitting uses the evaluated images themselves (no labels), as `medrag index` fits on the library.
Run: OMP_NUM_THREADS=1 .venv/bin/python bench/encoder_experiments/exp05_final.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL, load_all, load_image, score  # noqa: E402
from medrag.encoders.classic import ClassicEncoder  # noqa: E402
from medrag.evaluation.retrieval import chance_precision  # noqa: E402


def main() -> None:
    images, rows = load_all()
    sets = {
        "nih": [i for i, r in enumerate(rows) if r["dataset"] == "nih"],
        "kermany": [i for i, r in enumerate(rows) if r["dataset"] == "kermany"],
        "all": list(range(len(rows))),
        "era": [i for i, r in enumerate(rows) if r["dataset"] == "nih" and
                (r["label"] == "normal" or 1280 <= int(r["patient_id"].split("_")[1]) <= 3966)],
    }
    enc = ClassicEncoder()
    t = time.perf_counter()
    feats = enc.features(images)
    print(f"features, all {len(images)} images: {1000 * (time.perf_counter() - t) / len(images):.2f} ms/img")
    for name, idx in sets.items():
        sub = [rows[i] for i in idx]
        chance = chance_precision([r["label"] for r in sub], [r["patient_id"] for r in sub])
        unfitted = ClassicEncoder().project(feats[idx])
        fitted_enc = ClassicEncoder()
        fitted_enc.fit_features(feats[idx])
        rep_u = score(unfitted, sub)
        rep_f = score(fitted_enc.project(feats[idx]), sub)
        print(f"\n== {name}: n={len(idx)} chance={chance:.3f}  unfitted P@10={rep_u.overall.precision[10]:.3f}")
        print(rep_f.to_table())

    nih512 = [images[i] for i in sets["nih"]][:200]
    for label, batch in (("512-px nih", nih512), ("224-px kermany", [images[i] for i in sets["kermany"]][:200])):
        enc.embed(batch[:5])
        t = time.perf_counter()
        enc.embed(batch)
        ms = 1000 * (time.perf_counter() - t) / len(batch)
        print(f"embed {label}: {ms:.2f} ms/img = {1000 / ms:.0f} img/s on one core")
    paths = [REAL / rows[i]["image"] for i in sets["nih"][:200]]
    t = time.perf_counter()
    for p in paths:
        enc.embed([load_image(p)])
    ms = 1000 * (time.perf_counter() - t) / len(paths)
    print(f"PNG decode (PIL) + embed, 512-px nih: {ms:.2f} ms/img = {1000 / ms:.0f} img/s on one core")
    big = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    t = time.perf_counter()
    for _ in range(10):
        enc.embed([big])
    print(f"embed 2048-px image: {100 * (time.perf_counter() - t):.1f} ms/img")


if __name__ == "__main__":
    main()
