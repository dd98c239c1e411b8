"""Held-out metrics for medrag-cnn: AUC with patient-cluster bootstrap CIs, Platt calibration, ECE, F1, boxes.

Calibration and thresholds are *cross-fitted* on the held-out patients: they are split into two patient
halves, each half is calibrated (and its F1 threshold chosen) on the other, so the reported ECE and F1 are
never measured on the data they were fitted on. The shipped calibration and thresholds are then fitted on
all held-out patients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from timm.models.efficientnet import EfficientNet

from medrag.reading.cnn import CLASSES, class_activation, classifier_weight, normalise, platt, resize_gray
from medrag.training.cnn_data import Film, read_gray


def safe_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted half), or NaN when ``y`` holds one class only."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auc_on(y: np.ndarray, s: np.ndarray) -> Callable[[np.ndarray], float]:
    """:func:`safe_auc` of the rows ``idx`` of ``y`` and ``s``, as :func:`cluster_bootstrap` resamples them."""
    return lambda idx: safe_auc(y[idx], s[idx])


def cluster_bootstrap(groups: Sequence[str], stat: Callable[[np.ndarray], float], *, resamples: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """95 % percentile CI of ``stat(indices)`` resampling whole groups (patients); NaN draws are dropped."""
    keys = sorted(set(groups))
    arr = np.asarray(groups)
    members = [np.flatnonzero(arr == k) for k in keys]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(keys), size=len(keys))
        value = stat(np.concatenate([members[i] for i in pick]))
        if np.isfinite(value):
            draws.append(value)
    if not draws:
        return float("nan"), float("nan")
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def fit_platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * logit + b)`` fitted by (lightly L2-regularised) logistic regression."""
    if y.min() == y.max():
        return 1.0, 0.0
    lr = LogisticRegression(C=10.0).fit(logit.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def ece(prob: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with ``bins`` equal-width bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(prob[mask].mean()) - float(y[mask].mean()))
    return float(total)


def best_f1_threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The probability threshold that maximises F1 (midpoint between neighbouring scores)."""
    if y.sum() == 0:
        return 0.5
    cands = np.unique(prob)
    best, best_t = -1.0, 0.5
    for i, t in enumerate(cands):
        f = f1(prob >= t, y)
        if f > best:
            lower = cands[i - 1] if i > 0 else 0.0
            best, best_t = f, float((t + lower) / 2)
    return best_t


def f1(pred: np.ndarray, y: np.ndarray) -> float:
    """F1 of boolean predictions."""
    tp = float(np.logical_and(pred, y == 1).sum())
    denom = float(pred.sum() + (y == 1).sum())
    return 0.0 if denom == 0 else 2 * tp / denom


def halves(groups: Sequence[str], seed: int) -> np.ndarray:
    """0/1 per image: a seeded random half of the patients each."""
    keys = sorted(set(groups))
    side = dict(zip(keys, np.random.default_rng(seed).permutation(len(keys)) % 2, strict=True))
    return np.array([side[g] for g in groups])


def evaluate(logits: np.ndarray, labels: np.ndarray, groups: Sequence[str], classes: Sequence[str],
             findings_for_macro: Sequence[str], f1_classes: Sequence[str], seed: int) -> dict:
    """All held-out metrics plus the shipped calibration (a, b) and thresholds, as a JSON-ready dict."""
    half = halves(groups, seed)
    per: dict[str, dict] = {}
    calib_a, calib_b, thresholds = {}, {}, {}
    cross_prob = np.zeros_like(logits)
    for j, name in enumerate(classes):
        s, y = logits[:, j], labels[:, j]
        low, high = cluster_bootstrap(groups, auc_on(y, s), seed=seed)
        raw = platt(s, 1.0, 0.0)
        pred = np.zeros(len(y), dtype=bool)
        for h in (0, 1):
            fit, app = half != h, half == h
            a, b = fit_platt(s[fit], y[fit])
            cross_prob[app, j] = platt(s[app], a, b)
            t = best_f1_threshold(platt(s[fit], a, b), y[fit])
            pred[app] = cross_prob[app, j] >= t
        a, b = fit_platt(s, y)
        calib_a[name], calib_b[name] = a, b
        thresholds[name] = best_f1_threshold(platt(s, a, b), y)
        per[name] = {
            "positives": int(y.sum()), "auc": round(safe_auc(y, s), 4), "auc_ci95": [round(low, 4), round(high, 4)],
            "ece_raw": round(ece(raw, y), 4), "ece_calibrated": round(ece(cross_prob[:, j], y), 4),
            "f1": round(f1(pred, y), 4), "threshold_shipped": round(thresholds[name], 4),
        }
    macro_idx = [classes.index(c) for c in findings_for_macro]

    def macro(idx: np.ndarray) -> float:
        vals = [safe_auc(labels[idx, j], logits[idx, j]) for j in macro_idx]
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

    all_idx = np.arange(len(labels))
    mlow, mhigh = cluster_bootstrap(groups, macro, seed=seed)
    f1_macro = float(np.mean([per[c]["f1"] for c in f1_classes]))
    return {
        "per_class": per,
        "macro_auc": {"classes": list(findings_for_macro), "value": round(macro(all_idx), 4),
                      "ci95": [round(mlow, 4), round(mhigh, 4)]},
        "macro_f1": {"classes": list(f1_classes), "value": round(f1_macro, 4)},
        "ece_mean": {"raw": round(float(np.mean([p["ece_raw"] for p in per.values()])), 4),
                     "calibrated": round(float(np.mean([p["ece_calibrated"] for p in per.values()])), 4)},
        "calibration": {"method": "platt", "a": calib_a, "b": calib_b},
        "thresholds": thresholds,
        "cross_fitted_probabilities": cross_prob,
    }


def box_hits(heatmaps: Sequence[np.ndarray], boxes: Sequence[tuple[float, float, float, float]]) -> list[bool]:
    """For each heatmap and box (x, y, w, h as fractions of width/height): does the box contain its peak?"""
    hits = []
    for heat, (x, y, w, h) in zip(heatmaps, boxes, strict=True):
        rows, cols = heat.shape
        r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
        px, py = (c + 0.5) / cols, (r + 0.5) / rows
        hits.append(bool(x <= px <= x + w and y <= py <= y + h))
    return hits


@torch.no_grad()
def localisation(model: EfficientNet, films: list[Film], size: int,
                 crops: list[tuple[int, int, int, int]] | None = None) -> dict:
    """Share of NIH boxes that contain the peak of their class's heatmap (zero outside the crop read)."""
    model.eval()
    heats, boxes, names = [], [], []
    for i, film in enumerate(films):
        top_, left, bottom, right = crops[i] if crops is not None else (0, 0, 256, 256)
        gray = read_gray(film.path)[:, top_:bottom, left:right]
        feats = model.forward_features(normalise(resize_gray(gray[None], size)))
        for cls, x, y, w, h in film.boxes:
            weight = classifier_weight(model)[CLASSES.index(cls)]
            heat = np.zeros((256, 256), dtype=np.float32)
            heat[top_:bottom, left:right] = class_activation(feats, weight, (bottom - top_, right - left))
            heats.append(heat)
            boxes.append((x, y, w, h))
            names.append(cls)
    return box_hit_summary(names, box_hits(heats, boxes), len(films))


def box_hit_summary(names: Sequence[str], hits: Sequence[bool], films: int) -> dict:
    """The localisation stamp: boxes, hits and their share, per class, from each box's class and whether it hit."""
    per: dict[str, list[int]] = {}
    for cls, hit in zip(names, hits, strict=True):
        per.setdefault(cls, [0, 0])[0] += int(hit)
        per[cls][1] += 1
    return {"boxes": len(hits), "hits": int(sum(hits)), "share": round(sum(hits) / max(1, len(hits)), 4),
            "per_class": {k: {"hits": v[0], "boxes": v[1]} for k, v in sorted(per.items())},
            "films": films, "all_held_out": True}



__all__ = ["best_f1_threshold", "box_hit_summary", "box_hits", "cluster_bootstrap", "ece", "evaluate", "f1",
           "fit_platt", "halves", "localisation", "safe_auc"]
