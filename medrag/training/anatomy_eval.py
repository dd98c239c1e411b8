"""Measure the anatomy reader: speed per image, and device detection against hand labels.

``python -m medrag.training.anatomy_eval speed`` reads N real films of ../shared/data/nih-train with the model
loaded and prints the median and p95 seconds per image (and the load average, since the machine is shared).
``python -m medrag.training.anatomy_eval devices`` scores :func:`medrag.reading.devices.detect_devices`
against ``device_labels.csv`` beside this file (20 NIH films labelled by eye at 256 px: a small set with
uncertain labels; blanks are left out), per film and kind. ``... ctr`` compares the cardiothoracic ratio of
NIH cardiomegaly films with NIH "No Finding" films per view (AUC, medians, and which heart method ran).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from medrag.reading.devices import ECG, LINE, PACEMAKER, detect_devices
from medrag.training.anatomy_data import bootstrap_ci, load_grey, read_rows, shared_folder

LABELS = Path(__file__).resolve().parent / "device_labels.csv"


def speed(count: int) -> dict[str, float]:
    """Seconds per :func:`read_anatomy` call over ``count`` NIH films (after one warm-up)."""
    from medrag.reading.anatomy import read_anatomy

    nih = shared_folder("nih-train")
    rows = read_rows(nih)[:count]
    images = [load_grey(nih / r["image"]) for r in rows]
    read_anatomy(images[0])
    times = []
    for image in images:
        t0 = time.perf_counter()
        read_anatomy(image)
        times.append(time.perf_counter() - t0)
    return {"images": len(times), "median_s": float(np.median(times)), "p95_s": float(np.percentile(times, 95)),
            "load_1min": os.getloadavg()[0]}


def devices() -> dict[str, dict[str, float]]:
    """Per-kind film-level precision and recall (with 95 % bootstrap CIs) on the hand-labelled films."""
    nih = shared_folder("nih-train")
    with open(LABELS, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    found = [{m.kind for m in detect_devices(load_grey(nih / "images" / f"{r['image']}.jpg"))} for r in rows]
    out: dict[str, dict[str, float]] = {}
    for kind, column in ((ECG, "ecg_leads"), (LINE, "line_or_tube"), (PACEMAKER, "pacemaker")):
        pairs = [(int(r[column]), kind in f) for r, f in zip(rows, found, strict=True) if r[column] != ""]
        truth = np.array([t for t, _ in pairs])
        pred = np.array([p for _, p in pairs])
        tp = float((truth & pred).sum())
        result: dict[str, float] = {"films": len(pairs), "positives": int(truth.sum()), "flagged": int(pred.sum())}
        if pred.any():
            result["precision"] = float(tp / pred.sum())
            result["precision_ci95"] = bootstrap_ci(truth[pred].astype(float))[1:]  # type: ignore[assignment]
        if truth.any():
            result["recall"] = float(tp / truth.sum())
            result["recall_ci95"] = bootstrap_ci(pred[truth == 1].astype(float))[1:]  # type: ignore[assignment]
        out[kind] = result
    return out


def ctr() -> dict[str, dict[str, float]]:
    """Per view: AUC of the ratio for cardiomegaly against no finding, medians, and the heart methods used."""
    from sklearn.metrics import roc_auc_score

    from medrag.reading.anatomy import read_anatomy

    nih = shared_folder("nih-train")
    out: dict[str, dict[str, float]] = {}
    rows = read_rows(nih)
    for view in ("PA", "AP"):
        group = [(int("Cardiomegaly" in r["finding_labels"].split("|")), r) for r in rows if r["view"] == view
                 and (r["finding_labels"] == "No Finding" or "Cardiomegaly" in r["finding_labels"].split("|"))]
        readings = [read_anatomy(load_grey(nih / r["image"]), view_hint=view) for _, r in group]
        kept = [(lab, a.ctr) for (lab, _), a in zip(group, readings, strict=True) if a.ctr is not None]
        labels, ratios = [lab for lab, _ in kept], [c for _, c in kept]
        out[view] = {"films": len(group), "measured": len(kept), "auc": float(roc_auc_score(labels, ratios)),
                     "median_cardiomegaly": float(np.median([c for lab, c in kept if lab])),
                     "median_normal": float(np.median([c for lab, c in kept if not lab])),
                     "profile_method_share": float(np.mean([a.ctr_method != "heart mask" for a in readings]))}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the chosen measurement and print it."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.anatomy_eval", description=__doc__)
    p.add_argument("what", choices=("speed", "devices", "ctr"))
    p.add_argument("--count", type=int, default=60, help="films for the speed run")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    result: dict[str, Any] = speed(args.count) if args.what == "speed" else (devices() if args.what == "devices"
                                                                           else ctr())
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
