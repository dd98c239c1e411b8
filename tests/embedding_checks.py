"""Compare embeddings by what retrieval uses (direction and neighbour order), not element by element.

The same input embedded in a batch or alone, or on another x86-64 CPU (AVX-512 vs AVX2 kernels in
torch, oneDNN and BLAS), is summed in a different order: its vector moves by about 1e-4 per element.
Retrieval only sees cosines, so two embeddings agree when each pair has cosine >= MIN_COSINE and
searching a library with either ranks it the same way, apart from candidates that tie within TIE.
"""

from __future__ import annotations

import numpy as np

#: Kernel rounding leaves cosines within 1e-7 of 1; two different images stay below (tiny CLIP: 0.9994 at most).
MIN_COSINE = 0.9999
#: Candidates whose similarities differ by less than this may swap places (the UI shows 3 decimals).
TIE = 1e-3


def cosines(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Row-by-row cosine of two (n, d) arrays, in float64."""
    a = np.atleast_2d(np.asarray(expected, dtype=np.float64))
    b = np.atleast_2d(np.asarray(actual, dtype=np.float64))
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_embeddings_agree(
    expected: np.ndarray,
    actual: np.ndarray,
    library: np.ndarray | None = None,
    *,
    min_cosine: float = MIN_COSINE,
    tie: float = TIE,
) -> None:
    """``actual`` holds the same embeddings as ``expected`` (row by row), as far as retrieval can tell.

    Each pair's cosine is at least ``min_cosine``, and searching ``library`` (default: ``expected``)
    with ``actual[i]`` ranks every candidate as ``expected[i]`` does, except swaps within ``tie``.
    """
    a = np.atleast_2d(np.asarray(expected, dtype=np.float64))
    b = np.atleast_2d(np.asarray(actual, dtype=np.float64))
    assert a.shape == b.shape, (a.shape, b.shape)
    cos = cosines(a, b)
    assert (cos >= min_cosine).all(), f"cosines {np.round(cos, 6).tolist()} below {min_cosine}"
    candidates = a if library is None else np.atleast_2d(np.asarray(library, dtype=np.float64))
    for row, (query_a, query_b) in enumerate(zip(a, b, strict=True)):
        order = np.argsort(-(candidates @ query_a), kind="stable")
        scores_b = (candidates @ query_b)[order]
        # how far, under ``actual``, a candidate scores above one that ``expected`` ranks before it
        inversion = float(np.max(scores_b - np.minimum.accumulate(scores_b)))
        assert inversion <= tie, f"row {row}: neighbours reordered by {inversion:.2e} (> tie {tie})"
