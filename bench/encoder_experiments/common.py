"""Shared helpers for the classic-encoder experiments: load cxr-real, score an embedding.

Decoded images are cached as one .npz under $TMPDIR (never in the repository).
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medrag.evaluation.retrieval import RetrievalReport, leave_one_patient_out

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "cxr-real"
CACHE = Path(tempfile.gettempdir()) / "medrag_cxr_real_cache.npz"


def load_rows() -> list[dict[str, str]]:
    """labels.csv rows."""
    with open(REAL / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def load_image(path: Path) -> np.ndarray:
    """Grayscale float32 [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def load_all() -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Every image (cached in a temp .npz) with its labels.csv row."""
    rows = load_rows()
    if CACHE.exists():
        data = np.load(CACHE, allow_pickle=True)
        return list(data["images"]), rows
    images = [load_image(REAL / r["image"]) for r in rows]
    arr = np.empty(len(images), dtype=object)
    arr[:] = images
    np.savez(CACHE, images=arr)
    return images, rows


def subset(images: list[np.ndarray], rows: list[dict[str, str]], dataset: str | None,
           labels: Sequence[str] | None = ("normal", "pneumonia")) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    keep = [i for i, r in enumerate(rows)
            if (dataset is None or r["dataset"] == dataset) and (labels is None or r["label"] in labels)]
    return [images[i] for i in keep], [rows[i] for i in keep]


def score(vectors: np.ndarray, rows: list[dict[str, str]]) -> RetrievalReport:
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return leave_one_patient_out(v, [r["label"] for r in rows], [r["patient_id"] for r in rows],
                                 [r["dataset"] for r in rows])


def timed_embed(fn: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Vectors and ms per image."""
    t = time.perf_counter()
    out = np.stack([fn(im) for im in images])
    return out, (time.perf_counter() - t) * 1000 / len(images)


os.environ.setdefault("OMP_NUM_THREADS", "1")
