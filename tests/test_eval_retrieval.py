"""Leave-one-patient-out retrieval metrics: hand-checked examples and a naive reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrag.errors import InputError
from medrag.evaluation.retrieval import chance_precision, leave_one_patient_out


def _at(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


# Four unit vectors at 0°, 30°, 50°, 90°, labels x y x y, one patient each. Similarity falls with angle:
#   q0 (x, 0°):  p1 30°(y) p2 50°(x) p3 90°(y) -> rel 0 1 0: P@1 0, P@2 1/2, P@3 1/3; R=1, AP@3 = (1/2)/1
#   q1 (y, 30°): p2 20°(x) p0 30°(x) p3 60°(y) -> rel 0 0 1: P@1 0, P@2 0,   P@3 1/3; AP = (1/3)/1
#   q2 (x, 50°): p1 20°(y) p3 40°(y) p0 50°(x) -> rel 0 0 1: P@1 0, P@2 0,   P@3 1/3; AP = 1/3
#   q3 (y, 90°): p2 40°(x) p1 60°(y) p0 90°(x) -> rel 0 1 0: P@1 0, P@2 1/2, P@3 1/3; AP = 1/2
# Means: P@1 0, P@2 1/4, P@3 1/3, mAP@3 = (1/2 + 1/3 + 1/3 + 1/2) / 4 = 5/12.
VECS = _at([0, 30, 50, 90])
LABELS = ["x", "y", "x", "y"]
PATIENTS = ["A", "B", "C", "D"]


def test_hand_computed_example() -> None:
    report = leave_one_patient_out(VECS, LABELS, PATIENTS, groups=["g1", "g1", "g2", "g2"], ks=(1, 2, 3))
    s = report.overall
    assert s.n == 4
    assert s.precision[1] == pytest.approx(0.0)
    assert s.precision[2] == pytest.approx(0.25)
    assert s.precision[3] == pytest.approx(1 / 3)
    assert s.map_at[3] == pytest.approx(5 / 12)
    # per label: x = q0, q2 -> P@2 (1/2 + 0)/2; mAP (1/2 + 1/3)/2. y = q1, q3 -> same numbers.
    for label in ("x", "y"):
        assert report.by_label[label].n == 2
        assert report.by_label[label].precision[2] == pytest.approx(0.25)
        assert report.by_label[label].map_at[3] == pytest.approx(5 / 12)
    # per group: g1 = q0, q1 -> mAP (1/2 + 1/3)/2; g2 = q2, q3 -> (1/3 + 1/2)/2
    assert report.by_dataset["g1"].map_at[3] == pytest.approx(5 / 12)
    assert report.by_dataset["g2"].precision[1] == pytest.approx(0.0)


def test_own_patient_is_never_a_candidate() -> None:
    # q0 and q1 belong to patient A and are identical; q2 (B) is far away with another label.
    vecs = _at([0, 0, 90])
    report = leave_one_patient_out(vecs, ["x", "x", "y"], ["A", "A", "B"], ks=(1,))
    # each A query's only candidate is q2 (label y): P@1 = 0; q2's candidates are both x: P@1 = 0.
    assert report.overall.precision[1] == 0.0
    # without the patient rule the twins would find each other: give them separate patients.
    report2 = leave_one_patient_out(vecs, ["x", "x", "y"], ["A", "A2", "B"], ks=(1,))
    # q0 -> q1 (x, hit), q1 -> q0 (hit), q2 -> a twin (miss): 2/3
    assert report2.overall.precision[1] == pytest.approx(2 / 3)


def test_fewer_candidates_than_k_and_lonely_queries() -> None:
    # Three patients; k = 10 exceeds the 2 candidates each query has, so P@10 = hits / 2.
    vecs = _at([0, 10, 90])
    report = leave_one_patient_out(vecs, ["x", "x", "y"], ["A", "B", "C"], ks=(10,))
    # q0: q1(x) q2(y) -> 1/2; q1: q0(x) q2(y) -> 1/2; q2: 0/2. Mean 1/3.
    assert report.overall.precision[10] == pytest.approx(1 / 3)
    # A single patient owning everything has no candidates: nothing is evaluated.
    alone = leave_one_patient_out(vecs, ["x", "x", "y"], ["A", "A", "A"], ks=(1,))
    assert alone.overall.n == 0


def _naive(vecs: np.ndarray, labels: list[str], patients: list[str], k: int) -> tuple[float, float]:
    """Straightforward loops: the reference the vectorised code must match."""
    precisions, aps = [], []
    for q in range(len(vecs)):
        cands = [i for i in range(len(vecs)) if patients[i] != patients[q]]
        if not cands:
            continue
        scores = {i: float(vecs[q] @ vecs[i]) for i in cands}
        ranked = sorted(cands, key=lambda i: (-scores[i], i))[:k]
        rel = [labels[i] == labels[q] for i in ranked]
        precisions.append(sum(rel) / len(ranked))
        total_rel = sum(labels[i] == labels[q] for i in cands)
        hits, ap = 0, 0.0
        for rank, r in enumerate(rel, start=1):
            if r:
                hits += 1
                ap += hits / rank
        aps.append(ap / min(total_rel, k) if total_rel else 0.0)
    return float(np.mean(precisions)), float(np.mean(aps))


def test_matches_naive_reference_on_random_data() -> None:
    rng = np.random.default_rng(3)
    n = 60
    vecs = rng.standard_normal((n, 8)).astype(np.float32)
    labels = [str(v) for v in rng.integers(0, 3, n)]
    patients = [str(v) for v in rng.integers(0, 25, n)]
    report = leave_one_patient_out(vecs, labels, patients, ks=(1, 5, 10))
    # Exact on any CPU: the matrix product and the per-pair dots round differently (~1e-6), but no two
    # candidates of this data score closer than 4e-5, so both rank alike and the precisions are equal.
    for k in (1, 5, 10):
        p, ap = _naive(vecs, labels, patients, k)
        assert report.overall.precision[k] == pytest.approx(p, abs=1e-9)
        if k == 10:
            assert report.overall.map_at[10] == pytest.approx(ap, abs=1e-9)


def test_blocked_search_matches_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import medrag.evaluation.retrieval as retrieval

    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((50, 6)).astype(np.float32)
    labels = [str(v) for v in rng.integers(0, 2, 50)]
    patients = [str(i // 2) for i in range(50)]
    whole = leave_one_patient_out(vecs, labels, patients).to_dict()
    monkeypatch.setattr(retrieval, "_BLOCK", 7)
    # other block shapes take other BLAS kernels; the closest two candidates here differ by 7e-5 ≫ 1e-6
    assert leave_one_patient_out(vecs, labels, patients).to_dict() == whole


def test_report_dict_and_table_shapes() -> None:
    report = leave_one_patient_out(VECS, LABELS, PATIENTS, groups=["nih", "nih", "kermany", "kermany"])
    data = report.to_dict()
    json.dumps(data)
    assert set(data) == {"overall", "by_dataset", "by_label"}
    assert set(data["by_dataset"]) == {"nih", "kermany"}
    assert set(data["by_dataset"]["nih"]) == {"n", "p_at_1", "p_at_5", "p_at_10", "map_at_10"}
    table = report.to_table()
    assert "dataset=nih" in table and "label=x" in table and "mAP@10" in table
    assert len(table.splitlines()) == 2 + 1 + 2 + 2


def test_chance_precision_hand_examples() -> None:
    # x x y x, one patient each: an x query has 2 x among 3 candidates (2/3), the y query 0/3.
    assert chance_precision(["x", "x", "y", "x"], ["A", "B", "C", "D"]) == pytest.approx(0.5)
    # The twins of patient A only see the y image; the y image only sees x: chance 0.
    assert chance_precision(["x", "x", "y"], ["A", "A", "B"]) == 0.0
    assert chance_precision([], []) == 0.0


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError, match="labels"):
        leave_one_patient_out(VECS, ["x"], PATIENTS)
    with pytest.raises(InputError, match="groups"):
        leave_one_patient_out(VECS, LABELS, PATIENTS, groups=["g"])
    with pytest.raises(InputError, match="ks"):
        leave_one_patient_out(VECS, LABELS, PATIENTS, ks=())
    with pytest.raises(InputError, match="2-D"):
        leave_one_patient_out(VECS[0], LABELS[:1], PATIENTS[:1])
