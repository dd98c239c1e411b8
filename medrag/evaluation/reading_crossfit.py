"""The whole reading's F1 with the classifier's calibration, thresholds and normal margin cross-fitted by patient.

``medrag eval reading`` scores the shipped calibration and F1 thresholds. On the classifier's own held-out NIH
films those were fitted on the very films being scored, which makes the figure optimistic. On another library
they were fitted on NIH's prevalences, not this library's. ``medrag eval reading --cross-fit N`` (and
``bench/bench_reading_crossfit.py``) therefore reads every labelled film of the library once, through the
anatomy reader and the classifier. Then, for each of N seeded halvings of the patients, it refits on one half
and reads the other half with what it fitted: the classifier's Platt calibration and F1 threshold per class, the
fused classes' calibration and threshold (``medrag-fusion.json``), and the merge's normal margin (the best of
``margins`` on the fitting half). It scores the result the way ``medrag eval reading`` does. No film is scored
by numbers fitted on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from medrag.errors import ConfigError
from medrag.evaluation.reading import F1_FINDINGS, LabelledImage, ReadingReport, evaluate_reading
from medrag.reading.base import ImageReading
from medrag.reading.calibration import (
    MIN_POSITIVES,
    ClassCalibration,
    LibraryCalibration,
    RecalibratedCnn,
    with_fused_numbers,
)
from medrag.reading.cnn import classifier_identity
from medrag.reading.cnn_reader import CLASS_FINDINGS, MedragCnnReader
from medrag.reading.combine import NORMAL_MARGIN, merge_readings
from medrag.reading.fusion import FusionModel, anatomy_features
from medrag.records import Case

#: The normal margins each fitting half chooses from (the shipped :data:`NORMAL_MARGIN` among them).
DEFAULT_MARGINS: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0)


@dataclass
class CrossFitFilm:
    """One labelled film read once: the anatomy reading and the classifier's outputs."""

    label: LabelledImage
    anatomy: ImageReading
    size: tuple[int, int]
    #: the classifier's logits per class (before calibration), recovered from its calibrated output
    logits: dict[str, float]
    #: its shipped calibrated probabilities (what the fusion reads)
    probabilities: dict[str, float]


@dataclass
class CrossFitRow:
    """The whole reading scored with numbers fitted on ``fit`` films."""

    fit: str
    report: ReadingReport
    margins: list[float]


@dataclass
class CrossFitResult:
    """The in-sample row (fitted on every film, as shipped thresholds are) and one row per halving."""

    films: int
    patients: int
    rows: list[CrossFitRow] = field(default_factory=list)

    @property
    def cross_fitted(self) -> list[CrossFitRow]:
        """The rows whose films were read with numbers fitted on the other half."""
        return self.rows[1:]

    def mean(self, finding: str | None = None) -> float:
        """Mean cross-fitted macro F1 (or one finding's F1) over the halvings (NaN without any)."""
        values = [r.report.macro_f1 if finding is None else r.report.per_finding[finding]["f1"]
                  for r in self.cross_fitted]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data (saved with the library eval)."""
        return {
            "films": self.films, "patients": self.patients, "halvings": len(self.cross_fitted),
            "macro_f1_mean": self.mean(), "f1_mean": {f: self.mean(f) for f in F1_FINDINGS},
            "rows": [{"fit": r.fit, "macro_f1": r.report.macro_f1, "macro_f1_present": r.report.macro_f1_present,
                      "normal_margins": r.margins, "f1": {f: r.report.per_finding[f]["f1"] for f in F1_FINDINGS}}
                     for r in self.rows],
        }


class _RefittedCnn:
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


def logits_of(probabilities: dict[str, float], meta: dict[str, Any]) -> dict[str, float]:
    """The classifier's logits per class, recovered from its output calibrated with the shipped ``meta``'s numbers."""
    a, b = meta["calibration"]["a"], meta["calibration"]["b"]
    return {c: _logit(p, a[c], b[c]) for c, p in probabilities.items()}


def readers_for_cross_fit(members: Sequence[Any]) -> tuple[Any, MedragCnnReader]:
    """The anatomy reader and the classifier among ``members``, or a ConfigError saying how to enable them."""
    named = {getattr(m, "name", ""): m for m in members}
    cnn = named.get("medrag-cnn")
    if "anatomy" not in named or not isinstance(cnn, MedragCnnReader):
        raise ConfigError("--cross-fit refits the anatomy and medrag-cnn readers' numbers, but this session reads "
                          f"with {sorted(named) or 'no readers'}; set MEDRAG_READERS=anatomy,medrag-cnn")
    if isinstance(cnn.cnn, RecalibratedCnn):  # refits start from the shipped numbers, never a library's
        cnn = MedragCnnReader(cnn.cnn.inner)
    return named["anatomy"], cnn


def read_films(pairs: list[tuple[Case, LabelledImage]], anatomy: Any, cnn: MedragCnnReader, *,
               use_view: bool = True, on_progress: Callable[[int, int], None] | None = None) -> list[CrossFitFilm]:
    """Each labelled case read once by the anatomy reader and the classifier (unreadable images skipped)."""
    from medrag.errors import MedRAGError
    from medrag.imaging import load_image

    meta = cnn.cnn.meta
    films = []
    for done, (case, label) in enumerate(pairs, start=1):
        try:
            pixels = load_image(Path(case.image_path)).pixels
        except (MedRAGError, OSError):
            continue
        size = (int(pixels.shape[0]), int(pixels.shape[1]))
        if not label.size[0]:
            label = LabelledImage(label.case_id, label.patient_id, label.findings, label.view, label.boxes, size)
        probabilities = cnn.cnn.forward(pixels).probabilities
        reading = anatomy.read(pixels, view_hint=(case.view or None) if use_view else None)
        films.append(CrossFitFilm(label, reading, size, logits_of(probabilities, meta), probabilities))
        if on_progress is not None:
            on_progress(done, len(pairs))
    return films


def _fused_scores(films: list[CrossFitFilm], fusion: FusionModel) -> dict[str, np.ndarray]:
    """Each fused class's score before calibration (the standardised sum), per film."""
    out: dict[str, list[float]] = {c: [] for c in fusion.classes}
    for film in films:
        x = fusion.vector(anatomy_features(film.anatomy))
        for c, model in fusion.classes.items():
            out[c].append(model.score(film.probabilities[c], x))
    return {c: np.array(v) for c, v in out.items()}


@dataclass
class RefitNumbers:
    """Calibration and thresholds fitted on some films: per classifier class, and per fused class."""

    classes: dict[str, ClassCalibration]
    fused: dict[str, ClassCalibration]


def refit(films: list[CrossFitFilm], meta: dict[str, Any], fit: np.ndarray, fusion: FusionModel | None,
          only: frozenset[str] | None = None) -> RefitNumbers:
    """Platt calibration and F1 threshold per class fitted on the ``fit`` films (classes outside ``only``, when
    given, keep the shipped numbers)."""
    from medrag.training.cnn_eval import best_f1_threshold, fit_platt

    classes = list(films[0].logits)
    truth = {c: np.array([int(CLASS_FINDINGS.get(c, c) in f.label.findings) for f in films]) for c in classes}

    def fitted(score: np.ndarray, y: np.ndarray) -> ClassCalibration:
        a, b = fit_platt(score, y)
        return ClassCalibration(a, b, best_f1_threshold(1.0 / (1.0 + np.exp(-(a * score + b))), y))

    own = {}
    for c in classes:
        if only is not None and c not in only:
            own[c] = ClassCalibration(float(meta["calibration"]["a"][c]), float(meta["calibration"]["b"][c]),
                                      float(meta["thresholds"][c]))
        else:
            own[c] = fitted(np.array([f.logits[c] for f in films])[fit], truth[c][fit])
    fused = {}
    if fusion:
        scores = _fused_scores(films, fusion)
        for c, model in fusion.classes.items():
            fused[c] = (ClassCalibration(model.a, model.b, model.threshold) if only is not None and c not in only
                        else fitted(scores[c][fit], truth[c][fit]))
    return RefitNumbers(own, fused)


def read_with(films: list[CrossFitFilm], meta: dict[str, Any], apply: np.ndarray, numbers: RefitNumbers,
              fusion: FusionModel | None, normal_margin: float) -> list[tuple[LabelledImage, ImageReading]]:
    """Read the ``apply`` films through the shipped reader and merge with ``numbers`` in place of the shipped."""
    refitted = with_fused_numbers(fusion, numbers.fused) if fusion else None
    thresholds = {c: v.threshold for c, v in numbers.classes.items()}
    pairs = []
    for i in np.where(apply)[0]:
        own = {c: v.probability(films[i].logits[c]) for c, v in numbers.classes.items()}
        if refitted:  # the fusion reads the classifier's shipped probability, then is calibrated afresh
            own.update({c: films[i].probabilities[c] for c in refitted.classes})
        cnn = _RefittedCnn(meta, own, thresholds)
        cnn_reading = MedragCnnReader(cnn).read(np.zeros((64, 64), np.float32))  # type: ignore[arg-type]
        if refitted:
            cnn_reading = refitted.fuse(cnn_reading, films[i].anatomy)
        merged = merge_readings([films[i].anatomy, cnn_reading], size=films[i].size, normal_margin=normal_margin)
        pairs.append((films[i].label, merged))
    return pairs


def best_margin(films: list[CrossFitFilm], meta: dict[str, Any], fit: np.ndarray, numbers: RefitNumbers,
                fusion: FusionModel | None, margins: Sequence[float]) -> float:
    """The normal margin of ``margins`` that reads the ``fit`` films best (macro F1) with ``numbers``."""
    if len(margins) == 1:
        return float(margins[0])
    return float(max(margins, key=lambda m: evaluate_reading(
        read_with(films, meta, fit, numbers, fusion, m), rounds=0).macro_f1))


def score(films: list[CrossFitFilm], meta: dict[str, Any], fit_masks: list[np.ndarray],
          apply_masks: list[np.ndarray], fusion: FusionModel | None, margins: Sequence[float],
          rounds: int = 50, only: frozenset[str] | None = None) -> tuple[ReadingReport, list[float]]:
    """Per fitting mask: refit there, choose the normal margin of ``margins`` that reads those same films best
    (macro F1), then read the matching ``apply_masks`` films with both. The report over all of them, and the
    margins chosen."""
    pairs: list[tuple[LabelledImage, ImageReading]] = []
    chosen = []
    for fit, apply in zip(fit_masks, apply_masks, strict=True):
        numbers = refit(films, meta, fit, fusion, only)
        best = best_margin(films, meta, fit, numbers, fusion, margins)
        chosen.append(best)
        pairs += read_with(films, meta, apply, numbers, fusion, best)
    return evaluate_reading(pairs, rounds=rounds), chosen


def cross_fit(films: list[CrossFitFilm], meta: dict[str, Any], fusion: FusionModel | None, *,
              seeds: Sequence[int] = (0, 1, 2), margins: Sequence[float] = DEFAULT_MARGINS,
              rounds: int = 50, only: frozenset[str] | None = None) -> CrossFitResult:
    """The in-sample row, then one cross-fitted row per seed (halves of the patients, each read by the other's fit).

    Fewer than four patients cannot be halved into two fitting sets: a ConfigError says so."""
    from medrag.training.cnn_eval import halves

    patients = [f.label.patient_id for f in films]
    if len(set(patients)) < 4:
        raise ConfigError(f"--cross-fit needs labelled films of at least 4 patients outside the classifier's "
                          f"training set; this library has {len(set(patients))}")
    result = CrossFitResult(films=len(films), patients=len(set(patients)))
    everyone = np.ones(len(films), dtype=bool)
    in_sample, chosen = score(films, meta, [everyone], [everyone], fusion, margins, rounds, only)
    in_sample_fit = "every film (in sample; on the classifier's held-out films, the shipped fit)"
    result.rows.append(CrossFitRow(in_sample_fit, in_sample, chosen))
    for seed in seeds:
        half = halves(patients, seed)
        report, chosen = score(films, meta, [half != 0, half != 1], [half == 0, half == 1], fusion, margins,
                               rounds, only)
        result.rows.append(CrossFitRow(f"the other half of the patients, seed {seed}", report, chosen))
    return result


def well_sampled(films: list[CrossFitFilm], min_positives: int = MIN_POSITIVES) -> frozenset[str]:
    """The classes with at least ``min_positives`` positive films among ``films`` (the ones a library refits)."""
    return frozenset(c for c, n in positives_per_class(films).items() if n >= min_positives)


def positives_per_class(films: list[CrossFitFilm]) -> dict[str, int]:
    """How many of ``films`` carry each classifier class's finding."""
    return {c: sum(CLASS_FINDINGS.get(c, c) in f.label.findings for f in films) for c in films[0].logits}


def fit_library_calibration(films: list[CrossFitFilm], meta: dict[str, Any], fusion: FusionModel | None,
                            shipped_macro_f1: float, date: str, *, seeds: Sequence[int] = (0, 1, 2),
                            margins: Sequence[float] = DEFAULT_MARGINS, min_positives: int = MIN_POSITIVES,
                            shipped_f1: dict[str, float] | None = None) -> tuple[LibraryCalibration, CrossFitResult]:
    """The library's calibration for its :func:`well_sampled` classes, and the cross-fit that measured it.

    The cross-fit refits exactly those classes; its in-sample row is the fit on every film, so the written
    normal margin is the one that row chose. The figures stored with it set the cross-fitted macro F1 beside
    ``shipped_macro_f1`` (the shipped numbers on the same films), and per class its positives and, for the F1
    findings, the cross-fitted F1 beside ``shipped_f1`` (by finding, when given)."""
    only = well_sampled(films, min_positives)
    result = cross_fit(films, meta, fusion, seeds=seeds, margins=margins, only=only)
    numbers = refit(films, meta, np.ones(len(films), dtype=bool), fusion, only)
    per_class: dict[str, dict[str, Any]] = {}
    for c, positives in positives_per_class(films).items():
        finding = CLASS_FINDINGS.get(c, c)
        per_class[c] = {"positives": positives}
        if finding in F1_FINDINGS:
            per_class[c]["f1_library"] = result.mean(finding)
            if shipped_f1 is not None and finding in shipped_f1:
                per_class[c]["f1_shipped"] = float(shipped_f1[finding])
    figures = {"shipped_macro_f1": float(shipped_macro_f1), "library_macro_f1": result.mean(),
               "library_no_finding_f1": result.mean("no finding"), "halvings": len(result.cross_fitted),
               "refitted_classes": sorted(only), "min_positives": min_positives, "per_class": per_class}
    calibration = LibraryCalibration(classifier_identity(meta),
                                     {c: v for c, v in numbers.classes.items() if c in only},
                                     {c: v for c, v in numbers.fused.items() if c in only},
                                     result.rows[0].margins[0], len(films), result.patients, date, figures)
    return calibration, result


def markdown_table(result: CrossFitResult) -> str:
    """The rows as the markdown table BENCHMARKS.md and ``medrag eval reading --cross-fit`` print."""
    lines = ["| thresholds fitted on | normal margin | macro F1 | only present | " + " | ".join(F1_FINDINGS) + " |",
             "|---|---|---:|---:|" + "---:|" * len(F1_FINDINGS)]
    for row in result.rows:
        r = row.report
        cells = " | ".join(f"{r.per_finding[f]['f1']:.3f}" for f in F1_FINDINGS)
        margins = " / ".join(f"{m:g}" for m in row.margins)
        lines.append(f"| {row.fit} | {margins} | {r.macro_f1:.3f} | {r.macro_f1_present:.3f} | {cells} |")
    return "\n".join(lines)


__all__ = ["DEFAULT_MARGINS", "NORMAL_MARGIN", "CrossFitFilm", "CrossFitResult", "CrossFitRow", "RefitNumbers",
           "best_margin", "cross_fit", "fit_library_calibration", "markdown_table", "positives_per_class",
           "read_films", "readers_for_cross_fit", "read_with", "refit", "score", "well_sampled"]
