"""``medrag eval reading``'s arithmetic: AUC, F1, patient bootstrap, view accuracy, localisation, Dice."""

from __future__ import annotations

import math

import numpy as np

from medrag.evaluation.reading import (
    LabelledImage,
    auc,
    bootstrap_ci,
    dice,
    evaluate_reading,
    f1,
    parse_boxes,
    parse_nih_labels,
)
from medrag.reading.base import FindingRead, ImageReading, Overlays


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert math.isclose(auc(y, s), pairwise, rel_tol=0, abs_tol=1e-12)
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_f1_and_dice() -> None:
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == 0.5
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert dice(a, b) == 0.5 and dice(a, a) == 1.0


def test_nih_labels_and_boxes_parse() -> None:
    assert parse_nih_labels("Effusion|Infiltration|Hernia") == {"effusion", "opacity"}
    assert parse_boxes("Pneumonia:301,298,108,90|Infiltrate:1,2,3,4") == (
        ("pneumonia", 301.0, 298.0, 108.0, 90.0), ("opacity", 1.0, 2.0, 3.0, 4.0))


def test_bootstrap_resamples_patients_not_images() -> None:
    # Two patients with ten identical films each: a per-image bootstrap would be tight; by patient it spans both.
    groups = ["a"] * 10 + ["b"] * 10
    values = np.array([0.0] * 10 + [1.0] * 10)
    low, high = bootstrap_ci(groups, lambda ix: float(values[ix].mean()), rounds=300)
    assert low == 0.0 and high == 1.0


def _reading(p_effusion: float, view: str, peak: tuple[int, int] | None = None) -> ImageReading:
    heatmap = None
    if peak is not None:
        heatmap = np.zeros((8, 8), np.float32)
        heatmap[peak] = 1.0
    status = "present" if p_effusion >= 0.5 else "absent"
    return ImageReading(findings={"effusion": FindingRead("effusion", status, p_effusion)}, view=view,
                        overlays=Overlays(heatmap=heatmap, heatmap_finding="effusion"))


def test_evaluate_reading_scores_findings_views_and_boxes() -> None:
    items = [
        (LabelledImage("c1", "p1", frozenset({"effusion"}), "PA", (("effusion", 0, 0, 128, 128),), (256, 256)),
         _reading(0.9, "PA", peak=(1, 1))),
        (LabelledImage("c2", "p2", frozenset(), "AP"), _reading(0.2, "AP")),
        (LabelledImage("c3", "p3", frozenset({"effusion"}), "AP", (("effusion", 200, 200, 50, 50),), (256, 256)),
         _reading(0.6, "PA", peak=(1, 1))),
        (LabelledImage("c4", "p4", frozenset(), "PA"), _reading(0.7, "PA")),
    ]
    report = evaluate_reading(items, findings=("effusion",), rounds=50)
    assert report.per_finding["effusion"]["auc"] == 0.75
    assert math.isclose(report.per_finding["effusion"]["f1"], 0.8)
    assert report.view_accuracy == 0.75
    assert report.boxes == 2 and report.localisation == 0.5
    assert '"auc": 0.75' in report.to_json()
