"""The whole reading's F1 with the classifier's calibration and thresholds cross-fitted on patient halves.

``medrag eval reading`` on the classifier's held-out NIH films scores the shipped calibration and F1
thresholds, which were fitted on those same films: optimistic. This reads every held-out film once (both
readers), then for each seed splits the patients in two halves, refits the classifier's Platt calibration
and F1 threshold per class on one half, reads the other half's films through the shipped reader and merge
with them (``MedragCnnReader`` on the refitted probabilities, ``merge_readings`` with the anatomy reading),
and scores the whole reading the way ``medrag eval reading`` does. Where the measurements are fused with the
classifier (``medrag-fusion.json``), the fused score's calibration and threshold are refitted on the half the
same way; ``--no-fusion`` reads without it, for the side-by-side figure.

    medrag --data-dir /tmp/nihdata ingest ../shared/data/nih-train --labels ../shared/data/nih-train/labels.csv
    python bench/bench_reading_crossfit.py --data-dir /tmp/nihdata --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common  # noqa: F401  (thread limits before numpy and torch)
import numpy as np

from medrag.config import load_settings
from medrag.evaluation.reading import F1_FINDINGS, LabelledImage, evaluate_reading
from medrag.evaluation.reading_run import labelled_cases
from medrag.imaging import load_image
from medrag.reading.base import ImageReading
from medrag.reading.cnn_reader import CLASS_FINDINGS, MedragCnnReader
from medrag.reading.combine import NORMAL_MARGIN, merge_readings
from medrag.reading.fusion import FusionModel, anatomy_features, default_fusion
from medrag.training.cnn_eval import best_f1_threshold, fit_platt, halves
from medrag.workbench import Workbench


@dataclass
class Film:
    label: LabelledImage
    anatomy: ImageReading
    size: tuple[int, int]
    #: the classifier's logits per class (before calibration), recovered from its calibrated output
    logits: dict[str, float]
    #: its shipped calibrated probabilities (what the fusion reads)
    probabilities: dict[str, float]


class RefittedCnn:
    """Stands in for ``CnnReader``: one film's refitted probabilities and its half's thresholds."""

    def __init__(self, meta: dict[str, Any], probabilities: dict[str, float], thresholds: dict[str, float]) -> None:
        self.meta, self.thresholds, self._probabilities = meta, thresholds, probabilities

    def forward(self, pixels: np.ndarray) -> SimpleNamespace:
        return SimpleNamespace(probabilities=self._probabilities)

    def heatmap(self, pixels: np.ndarray, name: str) -> np.ndarray:
        return np.zeros(pixels.shape, np.float32)  # where is not scored here


def _logit(probability: float, a: float, b: float) -> float:
    p = min(max(probability, 1e-12), 1 - 1e-12)
    return (float(np.log(p / (1 - p))) - b) / a


def read_films(data_dir: Path) -> tuple[list[Film], dict[str, Any]]:
    """Every held-out labelled film, read once by the anatomy reader and the classifier."""
    wb = Workbench(load_settings(data_dir=data_dir))
    frame = wb.store.cases_frame()
    cases = list(wb.store.get_cases(list(frame["case_id"])).values())
    members = {m.name: m for m in wb.backends.reader.members}
    anatomy, cnn = members["anatomy"], members["medrag-cnn"]
    meta = cnn.cnn.meta  # type: ignore[attr-defined]
    a, b = meta["calibration"]["a"], meta["calibration"]["b"]
    films = []
    for case, label in labelled_cases(cases, cnn.trained_patients()):  # type: ignore[attr-defined]
        image = load_image(Path(case.image_path))
        pixels = image.pixels
        size = (int(pixels.shape[0]), int(pixels.shape[1]))
        if not label.size[0]:
            label = LabelledImage(label.case_id, label.patient_id, label.findings, label.view, label.boxes, size)
        probabilities = cnn.cnn.forward(pixels).probabilities  # type: ignore[attr-defined]
        logits = {c: _logit(p, a[c], b[c]) for c, p in probabilities.items()}
        films.append(Film(label, anatomy.read(pixels, view_hint=case.view or None), size, logits, probabilities))
    return films, meta


def fused_scores(films: list[Film], fusion: FusionModel) -> dict[str, np.ndarray]:
    """Each fused class's score before calibration (the standardised sum), per film."""
    out: dict[str, list[float]] = {c: [] for c in fusion.classes}
    for film in films:
        x = fusion.vector(anatomy_features(film.anatomy))
        for c, model in fusion.classes.items():
            out[c].append(model.score(film.probabilities[c], x))
    return {c: np.array(v) for c, v in out.items()}


def refit_and_read(films: list[Film], meta: dict[str, Any], fit: np.ndarray, apply: np.ndarray,
                   fusion: FusionModel | None, normal_margin: float) -> list[tuple[LabelledImage, ImageReading]]:
    """Refit the calibration and thresholds on the ``fit`` films; read the ``apply`` films with them."""
    classes = list(films[0].logits)
    truth = {c: np.array([int(CLASS_FINDINGS.get(c, c) in f.label.findings) for f in films]) for c in classes}
    logits = {c: np.array([f.logits[c] for f in films]) for c in classes}
    fused = fused_scores(films, fusion) if fusion else {}
    probabilities: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    for c in classes:
        a, b = fit_platt(logits[c][fit], truth[c][fit])
        probabilities[c] = 1.0 / (1.0 + np.exp(-(a * logits[c] + b)))
        thresholds[c] = best_f1_threshold(probabilities[c][fit], truth[c][fit])
    refitted = None
    if fusion:
        per_class = {}
        for c, model in fusion.classes.items():
            a, b = fit_platt(fused[c][fit], truth[c][fit])
            t = best_f1_threshold(1.0 / (1.0 + np.exp(-(a * fused[c][fit] + b))), truth[c][fit])
            per_class[c] = replace(model, a=a, b=b, threshold=t)
        refitted = replace(fusion, classes=per_class)
    pairs = []
    for i in np.where(apply)[0]:
        own = {c: float(probabilities[c][i]) for c in classes}
        if refitted:  # the fusion reads the classifier's shipped probability, then is calibrated afresh
            own.update({c: films[i].probabilities[c] for c in refitted.classes})
        cnn = RefittedCnn(meta, own, thresholds)
        cnn_reading = MedragCnnReader(cnn).read(np.zeros((64, 64), np.float32))  # type: ignore[arg-type]
        if refitted:
            cnn_reading = refitted.fuse(cnn_reading, films[i].anatomy)
        merged = merge_readings([films[i].anatomy, cnn_reading], size=films[i].size, normal_margin=normal_margin)
        pairs.append((films[i].label, merged))
    return pairs


def score(films: list[Film], meta: dict[str, Any], fit_mask: list[np.ndarray], apply_mask: list[np.ndarray],
          fusion: FusionModel | None, margins: list[float]) -> tuple[Any, list[float]]:
    """Per ``fit_mask``: refit there, choose the normal margin of ``margins`` that reads those same films best
    (macro F1), then read the matching ``apply_mask`` films with both. The report over all of them, and the
    margins chosen."""
    pairs: list[tuple[LabelledImage, ImageReading]] = []
    chosen = []
    for fit, apply in zip(fit_mask, apply_mask, strict=True):
        best = margins[0]
        if len(margins) > 1:
            best = max(margins, key=lambda m: evaluate_reading(
                refit_and_read(films, meta, fit, fit, fusion, m), rounds=0).macro_f1)
        chosen.append(best)
        pairs += refit_and_read(films, meta, fit, apply, fusion, best)
    return evaluate_reading(pairs, rounds=50), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a data folder with the NIH-labelled library")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-fusion", action="store_true", help="read without the measurements fused in")
    parser.add_argument("--normal-margins", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0],
                        help="the choices for combine.NORMAL_MARGIN, chosen on each fitting half "
                        f"(one value: fixed; shipped: {NORMAL_MARGIN})")
    args = parser.parse_args()
    films, meta = read_films(args.data_dir)
    fusion = None if args.no_fusion else default_fusion()
    everyone = np.ones(len(films), dtype=bool)
    rows: list[dict[str, Any]] = []
    in_sample, chosen = score(films, meta, [everyone], [everyone], fusion, args.normal_margins)
    rows.append({"fit": "all held-out films (as shipped)", "report": in_sample, "margins": chosen})
    for seed in args.seeds:
        half = halves([f.label.patient_id for f in films], seed)
        report, chosen = score(films, meta, [half != 0, half != 1], [half == 0, half == 1], fusion,
                               args.normal_margins)
        rows.append({"fit": f"other half of the patients, seed {seed}", "report": report, "margins": chosen})
    print(f"{len(films)} held-out films of {len({f.label.patient_id for f in films})} patients\n")
    print("| thresholds fitted on | normal margin | macro F1 | only present | " + " | ".join(F1_FINDINGS) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(F1_FINDINGS))
    for row in rows:
        r = row["report"]
        cells = " | ".join(f"{r.per_finding[f]['f1']:.3f}" for f in F1_FINDINGS)
        margins = " / ".join(f"{m:g}" for m in row["margins"])
        print(f"| {row['fit']} | {margins} | {r.macro_f1:.3f} | {r.macro_f1_present:.3f} | {cells} |")
    crossed = [row["report"].macro_f1 for row in rows[1:]]
    if crossed:
        print(f"\ncross-fitted macro F1: mean {np.mean(crossed):.3f} over {len(crossed)} halvings")
    if args.json:
        args.json.write_text(json.dumps([{"fit": row["fit"], "macro_f1": row["report"].macro_f1,
                                          "macro_f1_present": row["report"].macro_f1_present,
                                          "normal_margins": row["margins"],
                                          "f1": {f: row["report"].per_finding[f]["f1"] for f in F1_FINDINGS}}
                                         for row in rows], indent=2))


if __name__ == "__main__":
    main()
