"""Data for the anatomy models: the shared real films, phantom sets, patient splits, checksums and bootstrap CIs.

Real images are read from ../shared/data beside the repository (never copied into it). Everything is
deterministic for a seed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medrag.errors import ConfigError
from medrag.fsutil import file_sha256
from medrag.phantoms import FINDING_NAMES, generate_phantom
from medrag.reading.phantom_masks import phantom_masks

#: ../shared/data beside the repository's root.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

#: Patients known to be the same person under two ids (cxr-masks README, caveat 3).
SAME_PERSON = {"ieee8023_178": "ieee8023_97"}


def shared_folder(name: str) -> Path:
    """``../shared/data/<name>``, or ConfigError saying where it was looked for."""
    folder = SHARED_DATA / name
    if not (folder / "labels.csv").is_file():
        raise ConfigError(f"{folder}/labels.csv not found: put the shared data sets beside the repository "
                          "(../shared/data) to train or evaluate the anatomy models.")
    return folder


def read_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of ``folder/labels.csv``."""
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_grey(path: Path) -> np.ndarray:
    """An image file as float32 grey pixels in [0, 1]."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Antialiased resize of a float image to ``size`` x ``size``."""
    return np.asarray(
        Image.fromarray(pixels.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
    )


def data_list_sha256(entries: Sequence[tuple[str, str]]) -> str:
    """sha256 of a training-data list: sorted (name, sha256) pairs as JSON."""
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


def split_patients(patients: Sequence[str], held_out_share: float, seed: int) -> tuple[set[str], set[str]]:
    """(train, held-out) patient sets: a seeded shuffle of the distinct patients, same-person ids merged."""
    merged = sorted({SAME_PERSON.get(p, p) for p in patients})
    order = np.random.default_rng(seed).permutation(len(merged))
    n_held = max(1, int(round(len(merged) * held_out_share)))
    held = {merged[i] for i in order[:n_held]}
    train = {p for p in patients if SAME_PERSON.get(p, p) not in held}
    held_all = {p for p in patients if SAME_PERSON.get(p, p) in held}
    return train, held_all


@dataclass(frozen=True)
class MaskedFilm:
    """A real film of cxr-masks with its lung mask (both at their stored size)."""

    name: str
    patient: str
    view: str
    pixels: np.ndarray
    lungs: np.ndarray  # bool
    #: (file, sha256) of the image and of its mask, paths relative to ../shared/data
    files: tuple[tuple[str, str], ...] = ()


def load_cxr_masks() -> tuple[list[MaskedFilm], list[tuple[str, str]]]:
    """Every cxr-masks film with its lung mask, and the (file, sha256) list of what was read."""
    folder = shared_folder("cxr-masks")
    films: list[MaskedFilm] = []
    hashes: list[tuple[str, str]] = []
    for row in read_rows(folder):
        image_path, mask_path = folder / row["image"], folder / row["lungs_mask"]
        files = ((f"cxr-masks/{row['image']}", file_sha256(image_path)),
                 (f"cxr-masks/{row['lungs_mask']}", file_sha256(mask_path)))
        films.append(MaskedFilm(row["image"], row["patient_id"], row["view"], load_grey(image_path),
                                load_grey(mask_path) > 0.5, files))
        hashes += files
    return films, hashes


def phantom_specs(count: int, seed_base: int, seed: int) -> list[tuple[frozenset[str], int]]:
    """``count`` phantom (findings, seed) pairs: 30 % normal, 50 % one finding, 20 % two findings."""
    rng = np.random.default_rng(seed)
    specs: list[tuple[frozenset[str], int]] = []
    for i in range(count):
        draw = rng.uniform()
        k = 0 if draw < 0.3 else (1 if draw < 0.8 else 2)
        names = frozenset(str(n) for n in rng.choice(FINDING_NAMES, size=k, replace=False)) if k else frozenset()
        specs.append((names, seed_base + i))
    return specs


def render_phantoms(specs: Sequence[tuple[frozenset[str], int]], size: int = 256
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, lungs, heart) per spec, ``size`` px, masks soft in [0, 1]."""
    out = []
    for findings, seed in specs:
        lungs, heart = phantom_masks(findings, seed, size)
        out.append((generate_phantom(findings, seed, size), lungs, heart))
    return out


def bootstrap_ci(values: Sequence[float], groups: Sequence[str] | None = None, *, resamples: int = 2000,
                 seed: int = 0, statistic: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float, float]:
    """(estimate, low, high): the statistic and its 95 % percentile bootstrap CI.

    With ``groups`` (e.g. patient ids) whole groups are resampled (a cluster bootstrap), so a patient's
    several images count as one draw.
    """
    vals = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, len(vals), size=(resamples, len(vals)))
        stats = np.array([statistic(vals[row]) for row in idx])
    else:
        keys = sorted(set(groups))
        members = [np.flatnonzero(np.asarray(groups) == k) for k in keys]
        stats = np.empty(resamples)
        for r in range(resamples):
            pick = rng.integers(0, len(keys), size=len(keys))
            stats[r] = statistic(vals[np.concatenate([members[i] for i in pick])])
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(statistic(vals)), float(low), float(high)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    inter = float(np.logical_and(pred, truth).sum())
    total = float(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * inter / total


__all__ = [
    "SHARED_DATA", "MaskedFilm", "bootstrap_ci", "data_list_sha256", "dice", "load_cxr_masks",
    "load_grey", "phantom_specs", "read_rows", "render_phantoms", "resize", "shared_folder", "split_patients",
]
