"""The NIH films medrag-cnn trains on: nih-train plus cxr-real's NIH films it lacks, labels, boxes, split.

Images are read from ../shared/data beside the repository (never copied into it). Deterministic for a seed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medrag.errors import ConfigError
from medrag.fsutil import file_sha256
from medrag.reading.cnn import CLASSES, NIH_TO_CLASS

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class Film:
    """One NIH film: where it is, whose it is, its label vector and its boxes (x, y, w, h as fractions)."""

    name: str
    path: Path
    patient: str
    labels: tuple[int, ...]
    boxes: tuple[tuple[str, float, float, float, float], ...]


def _label_vector(finding_labels: str) -> tuple[int, ...]:
    present = {NIH_TO_CLASS[f] for f in finding_labels.split("|") if f in NIH_TO_CLASS}
    return tuple(int(c in present) for c in CLASSES)


def _boxes(text: str, width: float, height: float) -> tuple[tuple[str, float, float, float, float], ...]:
    out = []
    for part in filter(None, (text or "").split("|")):
        label, _, nums = part.partition(":")
        x, y, w, h = (float(v) for v in nums.split(","))
        if label in NIH_TO_CLASS:
            out.append((NIH_TO_CLASS[label], x / width, y / height, w / width, h / height))
    return tuple(out)


def load_films(data: Path) -> tuple[list[Film], dict[str, str]]:
    """nih-train plus the NIH films of cxr-real it lacks; and the sha256 of the label files read."""
    nih, real = data / "nih-train", data / "cxr-real"
    if not (nih / "labels.csv").is_file():
        raise ConfigError(f"{nih}/labels.csv not found: put the shared data beside the repository (../shared/data) "
                          "or pass --data")
    films: dict[str, Film] = {}
    with open(nih / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            stem = Path(row["image"]).stem
            films[stem] = Film(row["image"], nih / row["image"], row["patient_id"],
                               _label_vector(row["finding_labels"]), _boxes(row.get("bbox", ""), 256.0, 256.0))
    label_files = {"nih-train/labels.csv": file_sha256(nih / "labels.csv")}
    if (real / "labels.csv").is_file():
        label_files["cxr-real/labels.csv"] = file_sha256(real / "labels.csv")
        with open(real / "labels.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                stem = Path(row["image"]).stem.removeprefix("nih_")
                if row["dataset"] != "nih":
                    continue
                boxes = _boxes(row.get("bbox_xywh_in_output_px", ""), float(row["width"]), float(row["height"]))
                if stem in films:  # the same NIH file: keep nih-train's copy, borrow a box it lacks
                    if boxes and not films[stem].boxes:
                        old = films[stem]
                        films[stem] = Film(old.name, old.path, old.patient, old.labels, boxes)
                    continue
                films[stem] = Film("cxr-real/" + row["image"], real / row["image"], row["patient_id"],
                                   _label_vector(row["fine_label"]), boxes)
    return [films[k] for k in sorted(films)], label_files


def data_sha256(films: list[Film]) -> str:
    """sha256 of the training-data list: sorted (image name, file sha256) pairs as JSON."""
    pairs = sorted((f.name, file_sha256(f.path)) for f in films)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def split_patients(films: list[Film], holdout: float, seed: int, tries: int = 400) -> np.ndarray:
    """Boolean held-out mask over films: boxed patients plus a patient sample whose class shares best match."""
    patients = sorted({f.patient for f in films})
    boxed = {f.patient for f in films if f.boxes}
    by_patient: dict[str, list[int]] = {}
    for i, f in enumerate(films):
        by_patient.setdefault(f.patient, []).append(i)
    labels = np.array([f.labels for f in films])
    totals = labels.sum(0).clip(min=1)
    rng = np.random.default_rng(seed)
    free = [p for p in patients if p not in boxed]
    best, best_score = None, math.inf
    for _ in range(tries):
        order = rng.permutation(len(free))
        held = set(boxed)
        count = sum(len(by_patient[p]) for p in held)
        for k in order:
            if count >= holdout * len(films):
                break
            held.add(free[k])
            count += len(by_patient[free[k]])
        mask = np.array([f.patient in held for f in films])
        score = float((((labels[mask].sum(0) / totals) - holdout) ** 2).sum())
        if score < best_score:
            best, best_score = mask, score
    assert best is not None
    return best


def read_gray(path: Path, side: int = 256) -> torch.Tensor:
    """A film as a (1, side, side) float tensor in [0, 1]."""
    with Image.open(path) as img:
        gray = img.convert("L")
        if gray.size != (side, side):
            gray = gray.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=None)
        return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)[None]


__all__ = ["SHARED_DATA", "Film", "data_sha256", "load_films", "read_gray", "split_patients"]
