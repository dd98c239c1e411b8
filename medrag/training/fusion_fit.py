"""Fit ``medrag-fusion.json``: the anatomy measurements beside medrag-cnn (see :mod:`medrag.reading.fusion`).

``python -m medrag.training.fusion_fit`` reads every NIH film the classifier knows (its training and held-out
patients, from ``medrag-cnn.json``) through the ``anatomy`` reader and the classifier's own input path
(flip-averaged, calibrated), then, per class:

1. fits a standardised logistic regression on the anatomy reader's measurements
   (:func:`~medrag.reading.fusion.anatomy_features`) on the classifier's **training** patients only, and
   scores it there out of fold (5 folds grouped by patient);
2. fuses the class when that out-of-fold AUC reaches ``ACCEPTABLE_AUC`` (0.70): a rule fixed before any
   held-out label is looked at. The fused score is the classifier's logit plus the measurement model's,
   each standardised over the held-out films (no labels used), with equal weight;
3. calibrates and thresholds the fused scores on the held-out patients as ``cnn_train`` does for the
   classifier (Platt and F1 thresholds cross-fitted on halves of the patients for the reported figures, then
   refitted on all of them to ship), and reports AUC with patient-bootstrap CIs beside the classifier alone
   measured the same way in the same run, with the paired CI of the difference.

The zone norms and opacity template behind the measurements were fitted on all 630 NIH normal films, held-out
ones included; refitting them on the training patients' 517 alone moved the fused AUCs by at most 0.001
(checked 2026-12-03), so the shipped ones are used. Seeded, about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medrag.errors import ConfigError
from medrag.fsutil import atomic_write_text
from medrag.reading.cnn import CLASSES, CnnReader, classifier_identity
from medrag.reading.cnn_reader import ACCEPTABLE_AUC, unproven_classes
from medrag.reading.fusion import DEFAULT_FUSION, FIT_COMMAND, FUSION_NAME, anatomy_features, logit
from medrag.training.cnn_data import SHARED_DATA, Film, load_films
from medrag.training.cnn_eval import auc_on, cluster_bootstrap, evaluate, safe_auc
from medrag.training.cnn_train import F1_CLASSES, FINDINGS_FOR_MACRO

#: The measurement model's L2 strength (sklearn's C): strong, as ~1,200 films and 40 features call for.
REGULARISATION = 0.03


def read_films(films: list[Film], cnn: CnnReader, cache: Path) -> tuple[list[dict[str, float]], np.ndarray, float]:
    """Each film's anatomy features, the classifier's calibrated probabilities and the seconds reading them took
    (cached by film list and weights, with the seconds of the run that read them)."""
    key = {"images": [f.name for f in films], "weights": cnn.identity, "calibration": cnn.meta.get("calibration")}
    if cache.is_file():
        stored = json.loads(cache.read_text(encoding="utf-8"))
        if stored.get("key") == key:
            return (stored["features"], np.array(stored["probabilities"], dtype=np.float64),
                    float(stored.get("seconds", math.nan)))
    from medrag.imaging.decode import load_image
    from medrag.reading.anatomy_reader import AnatomyReader

    anatomy = AnatomyReader()
    features, probabilities = [], []
    started = time.time()
    for i, film in enumerate(films):
        pixels = load_image(film.path).pixels
        features.append(anatomy_features(anatomy.read(pixels)))
        out = cnn.forward(pixels).probabilities
        probabilities.append([out[c] for c in CLASSES])
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(films)} films, {time.time() - started:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    seconds = time.time() - started
    atomic_write_text(cache, json.dumps({"key": key, "features": features, "probabilities": probabilities,
                                         "seconds": seconds}))
    return features, np.array(probabilities, dtype=np.float64), seconds


def _model() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION, max_iter=5000))


def out_of_fold_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5) -> float:
    """AUC of the measurement model scored out of fold, folds grouped by patient."""
    from sklearn.model_selection import GroupKFold

    scores = np.zeros(len(y))
    for fit, app in GroupKFold(n_splits=folds).split(x, y, groups):
        scores[app] = _model().fit(x[fit], y[fit]).decision_function(x[app])
    return safe_auc(y, scores)


def auc_gain(y: np.ndarray, base: np.ndarray, other: np.ndarray) -> Callable[[np.ndarray], float]:
    """How much ``other`` beats ``base`` in AUC on the rows a bootstrap draws."""
    base_auc, other_auc = auc_on(y, base), auc_on(y, other)
    return lambda idx: other_auc(idx) - base_auc(idx)


def fit(features: list[dict[str, float]], probabilities: np.ndarray, films: list[Film], trained: set[str],
        seed: int) -> dict[str, Any]:
    """The fusion stamp (without provenance): features, medians, fused classes and the held-out figures."""
    names = sorted({k for f in features for k in f})
    raw = np.array([[f.get(n, math.nan) for n in names] for f in features], dtype=np.float64)
    train = np.array([f.patient in trained for f in films])
    medians = np.array([float(np.median(col[np.isfinite(col)])) if np.isfinite(col).any() else 0.0
                        for col in raw[train].T])
    x = np.where(np.isfinite(raw), raw, medians)
    labels = np.array([f.labels for f in films])
    groups = np.array([f.patient for f in films])
    held = ~train
    cnn_logits = logit(probabilities[held])
    fused = cnn_logits.copy()
    classes: dict[str, dict[str, Any]] = {}
    selection: dict[str, float] = {}
    for j, name in enumerate(CLASSES):
        y_train = labels[train, j]
        selection[name] = round(out_of_fold_auc(x[train], y_train, groups[train]), 4)
        if selection[name] < ACCEPTABLE_AUC:
            continue
        model = _model().fit(x[train], y_train)
        scaler, lr = model.steps[0][1], model.steps[1][1]
        anatomy_logit = model.decision_function(x[held])
        centre = (float(cnn_logits[:, j].mean()), float(cnn_logits[:, j].std()))
        spread = (float(anatomy_logit.mean()), float(anatomy_logit.std()))
        fused[:, j] = (cnn_logits[:, j] - centre[0]) / centre[1] + (anatomy_logit - spread[0]) / spread[1]
        classes[name] = {"coef": [round(float(v), 6) for v in lr.coef_[0]], "intercept": float(lr.intercept_[0]),
                         "mean": [float(v) for v in scaler.mean_], "scale": [float(v) for v in scaler.scale_],
                         "cnn_centre": centre[0], "cnn_spread": centre[1],
                         "anatomy_centre": spread[0], "anatomy_spread": spread[1]}
    y_held, g_held = labels[held], list(groups[held])
    report = evaluate(fused, y_held, g_held, CLASSES, FINDINGS_FOR_MACRO, F1_CLASSES, seed)
    alone = evaluate(cnn_logits, y_held, g_held, CLASSES, FINDINGS_FOR_MACRO, F1_CLASSES, seed)
    for report_ in (report, alone):
        report_.pop("cross_fitted_probabilities")
    gains = {}
    for name in classes:
        j = CLASSES.index(name)
        c = classes[name]
        c.update(a=report["calibration"]["a"][name], b=report["calibration"]["b"][name],
                 threshold=round(report["thresholds"][name], 4), auc=report["per_class"][name]["auc"])
        low, high = cluster_bootstrap(g_held, auc_gain(y_held[:, j], cnn_logits[:, j], fused[:, j]), seed=seed)
        gains[name] = {"classifier": alone["per_class"][name]["auc"], "fused": report["per_class"][name]["auc"],
                       "difference_ci95": [round(low, 4), round(high, 4)]}
    for report_ in (report, alone):
        report_.pop("calibration")
        report_.pop("thresholds")
    return {"features": names, "medians": [float(v) for v in medians], "classes": classes,
            "selection": {"rule": f"fuse a class when the measurement model's out-of-fold AUC on the training "
                                  f"patients is at least {ACCEPTABLE_AUC}", "out_of_fold_auc": selection},
            "metrics": {"held_out": report, "held_out_classifier_alone": alone, "auc_gain": gains}}


def main(argv: list[str] | None = None) -> int:
    """Read the films, fit, print the figures side by side and write the stamp."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.fusion_fit", description=__doc__)
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=DEFAULT_FUSION)
    p.add_argument("--cache", type=Path, default=Path("artifacts/fusion/readings.json"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    cnn = CnnReader()
    meta = cnn.meta
    films = load_films(args.data)[0]
    if len(films) != int(meta["data"]["films"]):
        raise ConfigError(f"{len(films)} films under {args.data}, but medrag-cnn was trained on "
                          f"{meta['data']['films']}: the shared data changed; retrain the classifier first")
    trained = set(meta["data"]["train_patients"])
    features, probabilities, read_seconds = read_films(films, cnn, args.cache)
    fit_started = time.time()
    seed = int(meta.get("seed", 0))
    stamp = fit(features, probabilities, films, trained, seed)
    unproven = set(unproven_classes(meta))
    if unproven & set(stamp["classes"]):
        print(f"note: fused classes the classifier alone does not beat chance on: {unproven & set(stamp['classes'])}")
    for name, gain in stamp["metrics"]["auc_gain"].items():
        print(f"{name:13s} classifier {gain['classifier']:.3f} → fused {gain['fused']:.3f}, "
              f"difference 95% CI {gain['difference_ci95']}")
    for key in ("held_out_classifier_alone", "held_out"):
        figures = stamp["metrics"][key]
        print(f"{key:26s} macro AUC {figures['macro_auc']['value']:.4f} {figures['macro_auc']['ci95']}, "
              f"macro F1 {figures['macro_f1']['value']:.4f}")
    stamp = {"name": "medrag-fusion", **stamp, "cnn_weights_sha256": classifier_identity(meta),
             "data": {"sha256": meta["data"]["sha256"], "label_files_sha256": meta["data"]["label_files_sha256"],
                      "train_films": int(sum(f.patient in trained for f in films)),
                      "held_out_films": int(sum(f.patient not in trained for f in films))},
             "regularisation_C": REGULARISATION, "seed": seed, "read_seconds": round(read_seconds, 1),
             "fit_seconds": round(time.time() - fit_started, 1),
             "command": FIT_COMMAND}
    atomic_write_text(args.out, json.dumps(stamp, indent=1) + "\n")
    print(f"wrote {args.out} ({FUSION_NAME}) in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
