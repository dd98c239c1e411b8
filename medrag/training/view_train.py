"""Fit the PA/AP view classifier on NIH films, split by patient, and report held-out accuracy with a 95 % CI.

``python -m medrag.training.view_train`` segments every film of ../shared/data/nih-train (1,494 NIH films,
PA 907 / AP 587; cxr-real's NIH films are the same files), fits a logistic regression (C picked by grouped
cross-validation on the training patients) over :func:`medrag.reading.view.view_features`, and writes
``medrag/reading/weights/view.json`` (the model fitted on the training patients only, so the reported
held-out accuracy is the shipped model's). Also reports accuracy on cxr-real's Hannover films (another site).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from medrag.fsutil import file_sha256
from medrag.reading.anatomy import largest_components
from medrag.reading.segment import SEGMENT_WEIGHTS, default_segmenter
from medrag.reading.view import VIEW_WEIGHTS, ViewModel, view_features
from medrag.training.anatomy_data import (
    bootstrap_ci,
    data_list_sha256,
    load_grey,
    read_rows,
    shared_folder,
    split_patients,
)


def features_of(paths: list[Path]) -> np.ndarray:
    """View features of image files (segmenting each)."""
    seg = default_segmenter()
    rows = []
    for path in paths:
        s = seg.segment(load_grey(path))
        rows.append(view_features(s, largest_components(s.lungs > 0.5, 2), largest_components(s.heart > 0.5, 1)))
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    """Fit, evaluate and save the view classifier."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.view_train", description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out-share", type=float, default=0.25)
    p.add_argument("--out", type=Path, default=VIEW_WEIGHTS)
    args = p.parse_args(argv)
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    torch.set_num_threads(2)
    started = time.time()
    nih = shared_folder("nih-train")
    rows = [r for r in read_rows(nih) if r["view"] in ("PA", "AP")]
    paths = [nih / r["image"] for r in rows]
    y = np.array([r["view"] == "AP" for r in rows], dtype=int)
    groups = np.array([r["patient_id"] for r in rows])
    x = features_of(paths)
    print(f"features of {len(rows)} NIH films in {time.time() - started:.0f} s", flush=True)
    train_p, held_p = split_patients(list(groups), args.held_out_share, args.seed)
    tr = np.array([g in train_p for g in groups])
    mean, scale = x[tr].mean(0), x[tr].std(0) + 1e-6
    z = (x - mean) / scale
    best_c, best = 1.0, -1.0
    for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
        model = LogisticRegression(C=c, max_iter=3000)
        score = float(cross_val_score(model, z[tr], y[tr], groups=groups[tr], cv=GroupKFold(5)).mean())
        print(f"C={c}: grouped 5-fold accuracy {score:.4f}", flush=True)
        if score > best:
            best_c, best = c, score
    model = LogisticRegression(C=best_c, max_iter=3000).fit(z[tr], y[tr])
    held_correct = (model.predict(z[~tr]) == y[~tr]).astype(float)
    acc, low, high = bootstrap_ci(held_correct, list(groups[~tr]), seed=args.seed)
    print(f"held-out NIH accuracy {acc:.4f} (95% CI {low:.4f}-{high:.4f}), {int((~tr).sum())} films, "
          f"{len(held_p)} patients", flush=True)

    hannover = shared_folder("cxr-real")
    hrows = [r for r in read_rows(hannover) if r["dataset"] == "hannover" and r["view"] in ("PA", "AP")]
    hx = (features_of([hannover / r["image"] for r in hrows]) - mean) / scale
    hy = np.array([r["view"] == "AP" for r in hrows], dtype=int)
    h_acc = bootstrap_ci((model.predict(hx) == hy).astype(float), [r["patient_id"] for r in hrows], seed=args.seed)
    print(f"Hannover (other site, not trained on) accuracy {h_acc[0]:.4f} ({h_acc[1]:.4f}-{h_acc[2]:.4f}), "
          f"{len(hrows)} films; AP share {hy.mean():.2f}", flush=True)

    meta = {
        "command": "python -m medrag.training.view_train " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed, "C": best_c, "grouped_cv_accuracy": round(best, 4),
        "training_data_sha256": data_list_sha256([(f"nih-train/{r['image']}", file_sha256(nih / r["image"]))
                                                  for r, t in zip(rows, tr, strict=True) if t]),
        "train": {"films": int(tr.sum()), "patients": len(train_p), "ap_share": round(float(y[tr].mean()), 3)},
        "held_out_nih": {"films": int((~tr).sum()), "patients": len(held_p), "accuracy": round(acc, 4),
                         "ci95": [round(low, 4), round(high, 4)], "bootstrap": "by patient",
                         "patient_ids": sorted(held_p)},
        "hannover": {"films": len(hrows), "accuracy": round(h_acc[0], 4),
                     "ci95": [round(h_acc[1], 4), round(h_acc[2], 4)]},
        "segment_weights_sha256": file_sha256(SEGMENT_WEIGHTS),
        "seconds": round(time.time() - started, 1),
    }
    ViewModel(mean.astype(np.float64), scale.astype(np.float64), model.coef_[0].astype(np.float64),
              float(model.intercept_[0]), meta).save(args.out)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
