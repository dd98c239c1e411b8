"""Does a late fusion of medrag-cnn with the anatomy measurements help? (cardiomegaly, effusion)

``python -m medrag.training.cnn_fusion`` reads the held-out logits written by :mod:`medrag.training.cnn_train`
(``artifacts/cnn/heldout.csv``), runs :func:`medrag.reading.anatomy.read_anatomy` on the same held-out films,
and compares, by 5-fold patient-grouped cross-validation *inside the held-out patients*, a logistic
regression on the CNN logit alone with one on [CNN logit, cardiothoracic ratio, AP flag, six zone z-scores,
costophrenic recess z-scores, opacity asymmetry]. It prints (and writes as JSON) the AUC of each, the paired
bootstrap CI of the difference and the AUC of the ratio alone. Nothing is shipped from here.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medrag.training.cnn_data import SHARED_DATA
from medrag.training.cnn_eval import auc_on, cluster_bootstrap, safe_auc

ANATOMY_KEYS = ("ctr", "ap", "right upper zone z", "right middle zone z", "right lower zone z", "left upper zone z",
                "left middle zone z", "left lower zone z", "right costophrenic recess z",
                "left costophrenic recess z", "asymmetry opacity_difference")


def anatomy_features(rows: list[dict[str, str]], data: Path, cache: Path) -> np.ndarray:
    """The anatomy measurements of each held-out film (cached in ``cache``; NaN → column median later)."""
    if cache.is_file():
        stored = json.loads(cache.read_text(encoding="utf-8"))
        if [r["image"] for r in rows] == stored["images"]:
            return np.array(stored["features"], dtype=np.float64)
    from medrag.reading.anatomy import read_anatomy

    views = {}
    with open(data / "nih-train" / "labels.csv", newline="", encoding="utf-8") as fh:
        views = {r["image"]: r["view"] for r in csv.DictReader(fh)}
    out = []
    for i, row in enumerate(rows):
        with Image.open(data / "nih-train" / row["image"]) as img:
            pixels = np.asarray(img.convert("L"))
        view = views.get(row["image"], "")
        m = read_anatomy(pixels, view_hint=view or None).measurements()
        m["ap"] = float(view == "AP")
        out.append([float(m.get(k, math.nan)) for k in ANATOMY_KEYS])
        if (i + 1) % 50 == 0:
            print(f"  anatomy {i + 1}/{len(rows)}", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"images": [r["image"] for r in rows], "features": out}), encoding="utf-8")
    return np.array(out, dtype=np.float64)


def cv_scores(x: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5) -> np.ndarray:
    """Out-of-fold scores of a standardised logistic regression, folds grouped by patient."""
    scores = np.zeros(len(y))
    for fit, app in GroupKFold(n_splits=folds).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
        model.fit(x[fit], y[fit])
        scores[app] = model.decision_function(x[app])
    return scores


def auc_gain_on(y: np.ndarray, base: np.ndarray, other: np.ndarray) -> Callable[[np.ndarray], float]:
    """How much ``other`` beats ``base`` in AUC on the rows ``idx``, as :func:`cluster_bootstrap` resamples them."""
    base_auc, other_auc = auc_on(y, base), auc_on(y, other)
    return lambda idx: other_auc(idx) - base_auc(idx)


def main(argv: list[str] | None = None) -> int:
    """Compare logit-only and logit+anatomy fusions; print and write the result."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.cnn_fusion", description=__doc__)
    p.add_argument("--predictions", type=Path, default=Path("artifacts/cnn/heldout.csv"))
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=Path("artifacts/cnn/fusion.json"))
    args = p.parse_args(argv)
    with open(args.predictions, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["image"].startswith("cxr-real/")]
    feats = anatomy_features(rows, args.data, args.out.with_name("anatomy_heldout.json"))
    med = np.nanmedian(feats, axis=0)
    feats = np.where(np.isfinite(feats), feats, np.where(np.isfinite(med), med, 0.0))
    groups = [r["patient_id"] for r in rows]
    result: dict[str, dict] = {}
    for cls in ("cardiomegaly", "effusion"):
        y = np.array([int(r[f"y:{cls}"]) for r in rows])
        logit = np.array([float(r[f"logit:{cls}"]) for r in rows])
        alone = cv_scores(logit[:, None], y, groups)
        fused = cv_scores(np.column_stack([logit, feats]), y, groups)
        low, high = cluster_bootstrap(groups, auc_gain_on(y, alone, fused))
        result[cls] = {"positives": int(y.sum()), "auc_cnn": round(safe_auc(y, logit), 4),
                       "auc_cnn_cv": round(safe_auc(y, alone), 4), "auc_fused_cv": round(safe_auc(y, fused), 4),
                       "difference_ci95": [round(low, 4), round(high, 4)],
                       "auc_ctr_alone": round(safe_auc(y, feats[:, 0]), 4),
                       "features": ["cnn logit", *ANATOMY_KEYS]}
        print(cls, result[cls])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
