"""The synthetic demo library: which cases it holds, their labels, and writing its PNGs and labels.csv."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from medrag.errors import InputError
from medrag.fsutil import atomic_write
from medrag.phantoms.plan import FINDING_NAMES, validate_findings
from medrag.phantoms.render import generate_phantom
from medrag.phantoms.reports import phantom_report

#: Pairs used in the demo library (clinically plausible co-occurrences).
DEMO_PAIRS: tuple[tuple[str, str], ...] = (
    ("cardiomegaly", "effusion"),
    ("cardiomegaly", "edema"),
    ("effusion", "edema"),
    ("effusion", "consolidation"),
    ("effusion", "nodule/mass"),
    ("pneumothorax", "consolidation"),
)

CSV_COLUMNS: tuple[str, ...] = (
    "image", "label", "report", "patient_id", "view", "dataset", "findings", "synthetic",
)


def label_for(findings: Iterable[str]) -> str:
    """"normal" or the findings joined with " + " in :data:`FINDING_NAMES` order."""
    found = validate_findings(findings)
    ordered = [name for name in FINDING_NAMES if name in found]
    return " + ".join(ordered) if ordered else "normal"


def _slug(label: str) -> str:
    return label.replace(" + ", "+").replace("/", "-").replace(" ", "_")


def demo_mix(n: int, seed: int = 0) -> list[frozenset[str]]:
    """The findings of ``n`` demo cases: ~30% normal, ~50% single findings, ~20% pairs, shuffled."""
    n_normal = round(n * 0.30)
    n_pairs = round(n * 0.20)
    n_single = n - n_normal - n_pairs
    cases: list[frozenset[str]] = [frozenset()] * n_normal
    cases += [frozenset({FINDING_NAMES[i % len(FINDING_NAMES)]}) for i in range(n_single)]
    cases += [frozenset(DEMO_PAIRS[i % len(DEMO_PAIRS)]) for i in range(n_pairs)]
    order = np.random.default_rng([seed, 7]).permutation(len(cases))
    return [cases[i] for i in order]


def _png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    u8 = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(u8, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_if_changed(path: Path, payload: bytes) -> bool:
    """Write ``payload`` unless the file already holds exactly it; True if written.

    Atomic so a reader never sees half a file; not durable (no fsync), because the demo library can
    always be regenerated and 240 fsyncs cost seconds.
    """
    if path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, payload, durable=False)
    return True


def build_demo_library(out_dir: Path, n: int = 240, seed: int = 0, *, size: int = 256) -> Path:
    """Write ``n`` phantom PNGs under ``out_dir/images/<label>/`` and ``out_dir/labels.csv``.

    Columns: image (path relative to ``out_dir``), label, report, patient_id, view, dataset
    ("synthetic"), findings (pipe-separated), synthetic ("true"). Idempotent: files whose bytes
    would not change are not rewritten. Returns the CSV path.
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}.")
    out_dir = Path(out_dir)
    rows: list[dict[str, str]] = []
    for i, found in enumerate(demo_mix(n, seed)):
        case_seed = seed * 1_000_003 + i
        label = label_for(found)
        rel = f"images/{_slug(label)}/syn_{seed}_{i:05d}.png"
        _write_if_changed(out_dir / rel, _png_bytes(generate_phantom(found, case_seed, size)))
        rows.append({
            "image": rel,
            "label": label,
            "report": phantom_report(found, case_seed),
            "patient_id": f"syn-{seed}-{i:05d}",
            "view": "PA",
            "dataset": "synthetic",
            "findings": "|".join(name for name in FINDING_NAMES if name in found),
            "synthetic": "true",
        })
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out_dir / "labels.csv"
    _write_if_changed(csv_path, text.getvalue().encode("utf-8"))
    return csv_path


__all__ = ["CSV_COLUMNS", "DEMO_PAIRS", "build_demo_library", "demo_mix", "label_for"]
