"""Retrieval quality: leave-one-patient-out precision@k and mAP@k.

Every vector is a query against all the others, except the query patient's own images (a patient's
second film is not a fair neighbour). A candidate is *relevant* when it has the query's label.
Search is exact (a dense inner-product matrix, computed in blocks), because this is evaluation.

Definitions (per query, then averaged over queries):

* ``P@k`` = relevant among the top ``min(k, C)`` candidates / ``min(k, C)``, where ``C`` is the number
  of candidates (all images of other patients). With the usual library size ``C >> k``, so this is the
  standard ``relevant in top k / k``.
* ``AP@k`` = sum over ranks ``i <= k`` with a relevant hit of ``P@i``, divided by ``min(R, k)``, where
  ``R`` is the number of relevant candidates in the whole library (0 when ``R == 0``).
* Ties in score are broken by library order, so results are deterministic.

Queries whose patient owns every image (no candidates) are skipped and not counted in ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medrag.errors import InputError

_BLOCK = 512  # queries per block: bounds the score matrix held at once to 512 × n floats


@dataclass(frozen=True)
class RetrievalScores:
    """Mean metrics over ``n`` queries."""

    n: int
    precision: dict[int, float]
    map_at: dict[int, float]

    def to_dict(self) -> dict[str, float | int]:
        """``{"n": .., "p_at_1": .., ..., "map_at_10": ..}`` (mAP at the largest k only)."""
        out: dict[str, float | int] = {"n": self.n}
        for k, value in sorted(self.precision.items()):
            out[f"p_at_{k}"] = round(value, 4)
        for k, value in sorted(self.map_at.items()):
            out[f"map_at_{k}"] = round(value, 4)
        return out


@dataclass(frozen=True)
class RetrievalReport:
    """Leave-one-patient-out retrieval metrics overall, per group (dataset) and per label."""

    overall: RetrievalScores
    by_dataset: dict[str, RetrievalScores] = field(default_factory=dict)
    by_label: dict[str, RetrievalScores] = field(default_factory=dict)
    ks: tuple[int, ...] = (1, 5, 10)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"overall": {...}, "by_dataset": {ds: {...}}, "by_label": {label: {...}}}``."""
        return {
            "overall": self.overall.to_dict(),
            "by_dataset": {name: s.to_dict() for name, s in sorted(self.by_dataset.items())},
            "by_label": {name: s.to_dict() for name, s in sorted(self.by_label.items())},
        }

    def to_table(self) -> str:
        """A fixed-width table for the terminal, one row per slice."""
        metric_names = [f"P@{k}" for k in self.ks] + [f"mAP@{max(self.ks)}"]
        header = f"{'slice':<24}{'n':>6}" + "".join(f"{m:>9}" for m in metric_names)
        lines = [header, "-" * len(header)]

        def row(name: str, s: RetrievalScores) -> str:
            values = [s.precision[k] for k in self.ks] + [s.map_at[max(self.ks)]]
            return f"{name:<24}{s.n:>6}" + "".join(f"{v:>9.3f}" for v in values)

        lines.append(row("overall", self.overall))
        for name, s in sorted(self.by_dataset.items()):
            lines.append(row(f"dataset={name}", s))
        for name, s in sorted(self.by_label.items()):
            lines.append(row(f"label={name}", s))
        return "\n".join(lines)


def _codes(values: Sequence[str]) -> np.ndarray:
    _, inverse = np.unique(np.asarray([str(v) for v in values], dtype=object), return_inverse=True)
    return inverse.astype(np.int64)


def _check_lengths(n: int, **columns: Sequence[str] | None) -> None:
    for name, column in columns.items():
        if column is not None and len(column) != n:
            raise InputError(
                f"{name} has {len(column)} entries but there are {n} vectors; pass one per vector."
            )


def _per_query_metrics(
    vectors: np.ndarray, label_codes: np.ndarray, patient_codes: np.ndarray, ks: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision[n, len(ks)], ap[n], valid[n]) for every query, by exact blocked search."""
    n = vectors.shape[0]
    kmax = max(ks)
    precision = np.zeros((n, len(ks)), dtype=np.float64)
    ap = np.zeros(n, dtype=np.float64)
    candidates = n - np.bincount(patient_codes)[patient_codes]
    label_counts = np.bincount(label_codes, minlength=label_codes.max() + 1)
    # relevant candidates = same label minus the query patient's own images with that label
    own_same = np.zeros(n, dtype=np.int64)
    for code in np.unique(patient_codes):
        members = np.flatnonzero(patient_codes == code)
        counts = np.bincount(label_codes[members], minlength=label_counts.size)
        own_same[members] = counts[label_codes[members]]
    relevant_total = label_counts[label_codes] - own_same
    valid = candidates > 0

    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        scores = vectors[start:stop] @ vectors.T
        scores[patient_codes[start:stop, None] == patient_codes[None, :]] = -np.inf
        take = min(kmax, n)
        # stable sort on -score breaks ties by library order (deterministic)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :take]
        rel = label_codes[top] == label_codes[start:stop, None]
        ranks_ok = np.arange(take)[None, :] < np.minimum(candidates[start:stop], take)[:, None]
        rel &= ranks_ok
        hits = np.cumsum(rel, axis=1)
        for j, k in enumerate(ks):
            depth = np.minimum(np.minimum(k, candidates[start:stop]), take)
            got = hits[np.arange(stop - start), np.maximum(depth - 1, 0)]
            precision[start:stop, j] = np.where(depth > 0, got / np.maximum(depth, 1), 0.0)
        prec_at_i = hits / np.arange(1, take + 1)[None, :]
        ap_num = (prec_at_i * rel)[:, :kmax].sum(axis=1)
        ap_den = np.minimum(relevant_total[start:stop], kmax)
        ap[start:stop] = np.where(ap_den > 0, ap_num / np.maximum(ap_den, 1), 0.0)
    return precision, ap, valid


def _mean_scores(
    precision: np.ndarray, ap: np.ndarray, mask: np.ndarray, ks: tuple[int, ...]
) -> RetrievalScores:
    n = int(mask.sum())
    if n == 0:
        return RetrievalScores(0, {k: 0.0 for k in ks}, {max(ks): 0.0})
    return RetrievalScores(
        n,
        {k: float(precision[mask, j].mean()) for j, k in enumerate(ks)},
        {max(ks): float(ap[mask].mean())},
    )


def leave_one_patient_out(
    vectors: np.ndarray,
    labels: Sequence[str],
    patient_ids: Sequence[str],
    groups: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> RetrievalReport:
    """Leave-one-patient-out P@k and mAP@max(k), overall, per group and per label.

    ``vectors`` are (n, dim) embeddings compared by inner product (L2-normalise them first for cosine).
    ``groups`` (e.g. the dataset of each image) only slices the report: candidates always come from the
    whole set. Raises :class:`InputError` when lengths disagree or ``ks`` is empty.
    """
    vecs = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if vecs.ndim != 2:
        raise InputError(f"vectors must be a 2-D (n, dim) array, got shape {vecs.shape}.")
    n = vecs.shape[0]
    _check_lengths(n, labels=labels, patient_ids=patient_ids, groups=groups)
    ks_t = tuple(sorted({int(k) for k in ks}))
    if not ks_t or ks_t[0] < 1:
        raise InputError(f"ks must be positive integers such as (1, 5, 10), got {tuple(ks)}.")
    if n == 0:
        empty = _mean_scores(np.zeros((0, len(ks_t))), np.zeros(0), np.zeros(0, dtype=bool), ks_t)
        return RetrievalReport(empty, {}, {}, ks_t)

    label_codes = _codes(labels)
    patient_codes = _codes(patient_ids)
    precision, ap, valid = _per_query_metrics(vecs, label_codes, patient_codes, ks_t)

    labels_arr = np.asarray([str(v) for v in labels], dtype=object)
    by_label = {
        str(name): _mean_scores(precision, ap, valid & (labels_arr == name), ks_t)
        for name in sorted(set(labels_arr))
    }
    by_dataset: dict[str, RetrievalScores] = {}
    if groups is not None:
        groups_arr = np.asarray([str(v) for v in groups], dtype=object)
        by_dataset = {
            str(name): _mean_scores(precision, ap, valid & (groups_arr == name), ks_t)
            for name in sorted(set(groups_arr))
        }
    return RetrievalReport(_mean_scores(precision, ap, valid, ks_t), by_dataset, by_label, ks_t)


def chance_precision(labels: Sequence[str], patient_ids: Sequence[str]) -> float:
    """Expected P@k of a random ranking under the same leave-one-patient-out rule.

    For each query: the share of its candidates (other patients' images) that carry its label;
    averaged over queries that have candidates. It does not depend on k.
    """
    _check_lengths(len(labels), patient_ids=patient_ids)
    if len(labels) == 0:
        return 0.0
    label_codes = _codes(labels)
    patient_codes = _codes(patient_ids)
    n = label_codes.size
    n_labels = int(label_codes.max()) + 1
    label_counts = np.bincount(label_codes, minlength=n_labels)
    shares = []
    for code in np.unique(patient_codes):
        members = np.flatnonzero(patient_codes == code)
        own = np.bincount(label_codes[members], minlength=n_labels)
        candidates = n - members.size
        if candidates == 0:
            continue
        relevant = label_counts[label_codes[members]] - own[label_codes[members]]
        shares.extend((relevant / candidates).tolist())
    return float(np.mean(shares)) if shares else 0.0
