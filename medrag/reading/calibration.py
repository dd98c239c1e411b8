"""A library's own calibration of the reading: its classifier probabilities, thresholds and normal margin.

The shipped calibration and F1 thresholds were fitted on NIH's held-out films, so they follow NIH's
prevalences. A library with other prevalences (the cxr-real films are 4 % normal, NIH's 38 %) reads better
with numbers fitted on its own labelled films: cross-fitted by patient on cxr-real, macro F1 0.256 → 0.308
(BENCHMARKS.md). ``medrag eval reading --write-calibration`` fits them on every labelled film of the library
outside the classifier's training patients and writes ``<data>/models/reading-calibration.json`` with the
cross-fitted figures that justify it. :func:`medrag.reading.combine.build_readers` then reads that library's
analyses with them, and every reading says so in a note. ``--calibration off`` (or the switch on the Settings
page) reads with the shipped numbers again and keeps the fit for ``--calibration on``; ``--remove-calibration``
deletes it.

Only the calibration moves: a refit cannot reorder the films, so every AUC stays the shipped one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from medrag.errors import ConfigError
from medrag.fsutil import atomic_write_text
from medrag.reading.fusion import FusionModel

#: Where a library's calibration lives, under its data folder.
CALIBRATION_FILE = Path("models") / "reading-calibration.json"
#: The command that writes it.
WRITE_COMMAND = "medrag eval reading --write-calibration"
#: The command that goes back to the shipped numbers.
REMOVE_COMMAND = "medrag eval reading --remove-calibration"
#: The commands that switch a written calibration off and on again (the Settings page's switch does the same).
SWITCH_COMMAND = "medrag eval reading --calibration {state}"
#: A class is refitted only with at least this many positive films; otherwise it keeps the shipped numbers.
MIN_POSITIVES = 10


@dataclass(frozen=True)
class ClassCalibration:
    """Platt ``sigmoid(a * score + b)`` on a class's raw score, and its F1 threshold on the result."""

    a: float
    b: float
    threshold: float

    def probability(self, score: float) -> float:
        """The calibrated probability of a raw score (logit or fused score)."""
        return float(1.0 / (1.0 + math.exp(-(self.a * score + self.b))))


@dataclass(frozen=True)
class LibraryCalibration:
    """What ``--write-calibration`` fitted on one library, and the figures that measured it."""

    cnn_weights_sha256: str
    #: classifier classes refitted on the classifier's raw (flip-averaged) logit
    classes: dict[str, ClassCalibration]
    #: fused classes refitted on the fused score (used while the fusion is active)
    fused: dict[str, ClassCalibration]
    normal_margin: float
    films: int
    patients: int
    date: str
    #: the cross-fitted macro F1 with the shipped numbers and with this library's (each half fitted on the other),
    #: and per class (``per_class``: positives, F1 with the shipped numbers and cross-fitted with the library's)
    figures: dict[str, Any] = field(default_factory=dict)
    #: False: written but switched off, so the library's analyses read with the shipped numbers
    active: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        def numbers(group: dict[str, ClassCalibration]) -> dict[str, dict[str, float]]:
            return {c: {"a": v.a, "b": v.b, "threshold": v.threshold} for c, v in group.items()}

        return {"name": "reading-calibration", "cnn_weights_sha256": self.cnn_weights_sha256,
                "classes": numbers(self.classes), "fused": numbers(self.fused), "normal_margin": self.normal_margin,
                "films": self.films, "patients": self.patients, "date": self.date, "figures": self.figures,
                "active": self.active, "command": WRITE_COMMAND}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LibraryCalibration:
        """Parse :meth:`to_dict`'s data (KeyError, TypeError or ValueError when malformed)."""
        def numbers(group: dict[str, Any]) -> dict[str, ClassCalibration]:
            out = {c: ClassCalibration(float(v["a"]), float(v["b"]), float(v["threshold"])) for c, v in group.items()}
            if not all(math.isfinite(x) for v in out.values() for x in (v.a, v.b, v.threshold)):
                raise ValueError("a calibration number is not finite")
            return out

        margin = float(data["normal_margin"])
        if not math.isfinite(margin) or margin <= 0:
            raise ValueError(f"normal margin {margin} is not a positive number")
        active = data.get("active", True)  # files written before the switch existed are in use
        if not isinstance(active, bool):
            raise ValueError(f"'active' is {active!r}, not true or false")
        return cls(str(data["cnn_weights_sha256"]), numbers(data["classes"]), numbers(data.get("fused") or {}),
                   margin, int(data["films"]), int(data["patients"]), str(data.get("date", "")),
                   dict(data.get("figures") or {}), active)

    def summary(self) -> str:
        """Where the numbers came from and what they measured ("fitted on its 972 labelled films ...")."""
        crossed = self.figures.get("library_macro_f1")
        shipped = self.figures.get("shipped_macro_f1")
        measured = (f"; cross-fitted macro F1 {crossed:.2f} against {shipped:.2f} with the shipped numbers"
                    if isinstance(crossed, float) and isinstance(shipped, float) else "")
        return f"fitted on its {self.films} labelled films of {self.patients} patients ({self.date}{measured})"

    def note(self) -> str:
        """The sentence every reading with this calibration carries."""
        return (f"Probabilities and thresholds are calibrated to this library: {self.summary()}; "
                f"`{SWITCH_COMMAND.format(state='off')}` (or the switch on the Settings page) reads with the "
                "shipped ones.")

    def apply_to_fusion(self, fusion: FusionModel) -> FusionModel:
        """The fusion with this library's calibration and threshold for each fused class it refitted."""
        return with_fused_numbers(fusion, self.fused)


def with_fused_numbers(fusion: FusionModel, numbers: dict[str, ClassCalibration]) -> FusionModel:
    """``fusion`` with ``numbers``' calibration and threshold for each fused class they name (the rest as shipped)."""
    per_class = {c: replace(m, a=numbers[c].a, b=numbers[c].b, threshold=numbers[c].threshold)
                 if c in numbers else m for c, m in fusion.classes.items()}
    return replace(fusion, classes=per_class)


class RecalibratedCnn:
    """A ``CnnReader`` whose probabilities and thresholds are the library's for the classes it refitted.

    ``keep`` names classes whose shipped probability must pass through unchanged (the fused ones: the fusion
    reads the classifier's shipped probability and is recalibrated itself)."""

    def __init__(self, cnn: Any, calibration: LibraryCalibration, keep: frozenset[str] = frozenset()) -> None:
        self.inner, self.calibration = cnn, calibration
        self._refit = {c: v for c, v in calibration.classes.items() if c not in keep}

    @property
    def meta(self) -> dict[str, Any]:
        """The shipped stamp (held-out AUCs, classes): a calibration does not change what the network ranks."""
        return dict(self.inner.meta)

    @property
    def thresholds(self) -> dict[str, float]:
        """The shipped thresholds, with the library's for the classes it refitted."""
        return {**self.inner.thresholds, **{c: v.threshold for c, v in self._refit.items()}}

    def forward(self, pixels: np.ndarray, box: tuple[float, float, float, float] | None = None) -> Any:
        """The shipped forward pass with the refitted classes' probabilities recalibrated from their logits."""
        out = self.inner.forward(pixels, box)
        probabilities = {c: self._refit[c].probability(out.logits[c]) if c in self._refit else p
                         for c, p in out.probabilities.items()}
        return replace(out, probabilities=probabilities)

    def heatmap(self, pixels: np.ndarray, class_name: str,
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """The shipped heatmap (calibration does not move where the network looks)."""
        return self.inner.heatmap(pixels, class_name, box)


def calibration_path(data_dir: Path) -> Path:
    """Where ``data_dir``'s calibration is (whether or not it exists)."""
    return Path(data_dir) / CALIBRATION_FILE


def calibration_stamp(data_dir: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of the library's calibration file, or None without one: what tells a change."""
    try:
        stat = calibration_path(data_dir).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def load_calibration(data_dir: Path) -> LibraryCalibration | None:
    """The library's calibration, or None when it has none; a ConfigError says how to fix a damaged file."""
    path = calibration_path(data_dir)
    if not path.is_file():
        return None
    try:
        return LibraryCalibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read the library's calibration {path} ({exc}); write it again with "
                          f"`{WRITE_COMMAND}` or remove it with `{REMOVE_COMMAND}`") from exc


def save_calibration(data_dir: Path, calibration: LibraryCalibration) -> Path:
    """Write the calibration atomically (a reader never sees half a file) and return its path."""
    path = calibration_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(calibration.to_dict(), indent=1) + "\n")
    return path


def set_calibration_active(data_dir: Path, active: bool) -> LibraryCalibration:
    """Switch the library's written calibration on or off (kept either way, so switching back needs no refit).

    A ConfigError says how to write one when the library has none, or how to mend a damaged file."""
    calibration = load_calibration(data_dir)
    if calibration is None:
        raise ConfigError(f"this library has no calibration of its own to switch {'on' if active else 'off'}; "
                          f"fit one on its labelled films with `{WRITE_COMMAND}`")
    switched = replace(calibration, active=active)
    if switched != calibration:
        save_calibration(data_dir, switched)
    return switched


def remove_calibration(data_dir: Path) -> bool:
    """Remove the library's calibration; False when there was none."""
    path = calibration_path(data_dir)
    if not path.is_file():
        return False
    path.unlink()
    return True


__all__ = ["CALIBRATION_FILE", "MIN_POSITIVES", "REMOVE_COMMAND", "SWITCH_COMMAND", "WRITE_COMMAND",
           "ClassCalibration", "LibraryCalibration", "RecalibratedCnn", "calibration_path", "calibration_stamp",
           "load_calibration", "remove_calibration", "save_calibration", "set_calibration_active",
           "with_fused_numbers"]
