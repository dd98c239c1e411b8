"""How good the offline readers are: the held-out figures their weights carry, the targets, the last library eval.

Two sources, both already measured (nothing is computed here): the metadata committed beside each model's
weights (``medrag/reading/weights/*.json``: held-out patients of the training data, with 95 % bootstrap
intervals), and the last ``medrag eval reading`` run on this data folder (saved to
``<data>/eval/reading.json``). The Settings page shows both; the targets are issue #11's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrag.fsutil import atomic_write_text

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "reading" / "weights"
#: Where ``medrag eval reading`` keeps its last report, under the data folder.
EVAL_FILE = Path("eval") / "reading.json"
#: The command that refreshes :data:`EVAL_FILE`.
EVAL_COMMAND = "medrag eval reading --masks ../shared/data/cxr-masks"


@dataclass(frozen=True)
class QualityRow:
    """One measured figure beside its target."""

    model: str
    measure: str
    value: float | None
    ci95: tuple[float, float] | None
    target: float | None
    data: str

    @property
    def met(self) -> bool | None:
        """Whether the value reaches the target (None without a target or a value)."""
        if self.target is None or self.value is None or math.isnan(self.value):
            return None
        return self.value >= self.target


#: Issue #11's targets, by (model, measure).
TARGETS: dict[tuple[str, str], float] = {
    ("segmenter", "lung Dice, real films"): 0.92, ("segmenter", "lung Dice, phantoms"): 0.92,
    ("segmenter", "heart Dice, phantoms"): 0.90, ("view", "PA/AP accuracy, NIH films"): 0.95,
    ("medrag-cnn", "AUC effusion"): 0.80, ("medrag-cnn", "AUC cardiomegaly"): 0.80,
    ("medrag-cnn", "AUC edema"): 0.78, ("medrag-cnn", "AUC atelectasis"): 0.72,
    ("medrag-cnn", "macro AUC"): 0.75, ("medrag-cnn", "macro F1"): 0.45, ("medrag-cnn", "localisation"): 0.60,
    ("medrag-cnn + anatomy", "AUC effusion"): 0.80, ("medrag-cnn + anatomy", "AUC cardiomegaly"): 0.80,
    ("medrag-cnn + anatomy", "AUC edema"): 0.78, ("medrag-cnn + anatomy", "macro AUC"): 0.75,
    ("medrag-cnn + anatomy", "macro F1"): 0.45,
    ("anatomy", "localisation (opacity peak)"): 0.60, ("anatomy", "localisation (finding's point)"): 0.60,
}
#: A library eval scores the whole reading (every reader merged), not one model.
READING = "reading (all readers)"
TARGETS.update({(READING, measure): target for (model, measure), target in list(TARGETS.items())
                if model == "medrag-cnn"})
TARGETS.update({(READING, "macro F1, cross-fitted"): 0.45, (READING, "F1 no finding, cross-fitted"): 0.80})


def _row(model: str, measure: str, value: Any, ci: Any, data: str) -> QualityRow:
    bounds = list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else []
    numeric = all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds)
    interval = (float(bounds[0]), float(bounds[1])) if bounds and numeric else None
    number = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return QualityRow(model, measure, number, interval, TARGETS.get((model, measure)), data)


def load_json(name: str, folder: Path) -> dict[str, Any]:
    """The JSON object in ``folder / name`` ({} when the file is missing, unreadable or not an object)."""
    try:
        loaded = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def model_quality(folder: Path = WEIGHTS_DIR) -> list[QualityRow]:
    """The held-out figures stored with the shipped weights (a model whose metadata is missing is left out)."""
    rows: list[QualityRow] = []
    seg = load_json("segment.json", folder).get("metrics", {})
    for key, measure in (("real_lung_dice", "lung Dice, real films"), ("phantom_lung_dice", "lung Dice, phantoms"),
                         ("phantom_heart_dice", "heart Dice, phantoms")):
        if key in seg:
            figures = seg[key]
            where = (f"{figures.get('n')} held-out films of {figures.get('patients')} patients (cxr-masks)"
                     if "patients" in figures else f"{figures.get('n')} held-out phantoms")
            rows.append(_row("segmenter", measure, figures.get("mean"), figures.get("ci95"), where))
    view = load_json("view.json", folder).get("meta", {}).get("held_out_nih", {})
    if view:
        rows.append(_row("view", "PA/AP accuracy, NIH films", view.get("accuracy"), view.get("ci95"),
                         f"{view.get('films')} films of {view.get('patients')} held-out patients"))
    cnn = load_json("medrag-cnn.json", folder)
    held = cnn.get("metrics", {}).get("held_out", {})
    patients = cnn.get("data", {}).get("held_out_patients")
    where = f"{patients} held-out NIH patients" if patients else "held-out NIH patients"
    for name, figures in held.get("per_class", {}).items():
        rows.append(_row("medrag-cnn", f"AUC {name}", figures.get("auc"), figures.get("auc_ci95"),
                         f"{where}, {figures.get('positives')} positives"))
    for key, measure in (("macro_auc", "macro AUC"), ("macro_f1", "macro F1")):
        if key in held:
            rows.append(_row("medrag-cnn", measure, held[key].get("value"), held[key].get("ci95"), where))
    rows += _fusion_rows(load_json("medrag-fusion.json", folder), where)
    local = cnn.get("metrics", {}).get("localisation", {})
    if isinstance(local, dict) and "share" in local:
        rows.append(_row("medrag-cnn", "localisation", local.get("share"), local.get("ci95"),
                         f"{local.get('boxes', '?')} NIH expert boxes (heatmap peak inside)"))
    placed = load_json("opacity_template.json", folder).get("localisation", {})
    if isinstance(placed, dict) and "share" in placed:
        rows.append(_row("anatomy", "localisation (opacity peak)", placed.get("share"), placed.get("ci95"),
                         f"{placed.get('boxes', '?')} NIH expert boxes (the middle of the opacity map's densest "
                         "region inside)"))
    pointed = load_json("opacity_template.json", folder).get("localisation_finding", {})
    if isinstance(pointed, dict) and "share" in pointed:
        rows.append(_row("anatomy", "localisation (finding's point)", pointed.get("share"), pointed.get("ci95"),
                         f"{pointed.get('boxes', '?')} NIH expert boxes (the point for the box's finding inside; "
                         "its rules were settled on these boxes)"))
    return rows


def _fusion_rows(fusion: dict[str, Any], where: str) -> list[QualityRow]:
    """The classes the measurements are fused into, and the macro figures with them (the reading's own)."""
    held = fusion.get("metrics", {}).get("held_out", {})
    model, per_class = "medrag-cnn + anatomy", held.get("per_class", {})
    rows = [_row(model, f"AUC {name}", per_class.get(name, {}).get("auc"), per_class.get(name, {}).get("auc_ci95"),
                 f"{where}, measurements fused") for name in fusion.get("classes", {})]
    for key, measure in (("macro_auc", "macro AUC"), ("macro_f1", "macro F1")):
        if key in held:
            rows.append(_row(model, measure, held[key].get("value"), held[key].get("ci95"), where))
    return rows


def save_library_eval(data_dir: Path, payload: dict[str, Any], command: str, when: str) -> Path:
    """Keep the last ``medrag eval reading`` report in the data folder (for the Settings page)."""
    path = data_dir / EVAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"command": command, "date": when, "report": payload}, indent=1))
    return path


def library_eval(data_dir: Path) -> dict[str, Any] | None:
    """The last saved library eval ({"command", "date", "report"}), or None when none was run here."""
    loaded = load_json(EVAL_FILE.name, data_dir / EVAL_FILE.parent)
    return loaded if isinstance(loaded.get("report"), dict) else None


def library_rows(saved: dict[str, Any]) -> list[QualityRow]:
    """The per-finding and summary figures of a saved library eval, as rows beside the targets."""
    report = saved.get("report", {})
    where = (f"{report.get('images')} films of {report.get('patients')} patients in this library "
             f"({report.get('excluded_patients')} training patients left out)")
    rows = [_row(READING, f"AUC {name}", f.get("auc"), f.get("auc_ci"), f"{where}, {f.get('positives')} pos.")
            for name, f in report.get("per_finding", {}).items()]
    rows.append(_row(READING, "macro AUC", report.get("macro_auc"), None, where))
    rows.append(_row(READING, "macro F1", report.get("macro_f1"), None, where))
    crossed = report.get("cross_fit")
    if isinstance(crossed, dict) and crossed.get("halvings"):
        how = f"{where}; mean of {crossed['halvings']} halvings, each half read with the other's fit"
        rows.append(_row(READING, "macro F1, cross-fitted", crossed.get("macro_f1_mean"), None, how))
        rows.append(_row(READING, "F1 no finding, cross-fitted", (crossed.get("f1_mean") or {}).get("no finding"),
                         None, how))
    rows.append(_row("view", "PA/AP accuracy, NIH films", report.get("view_accuracy"), report.get("view_ci"), where))
    rows.append(_row("anatomy", "localisation (finding's point)", report.get("localisation_finding"), None,
                     f"{report.get('boxes')} expert boxes in this library (the point for the box's finding inside)"))
    rows.append(_row("anatomy", "localisation (opacity peak)", report.get("localisation_peak"), None,
                     f"{report.get('boxes')} expert boxes in this library (the reading's peak inside)"))
    rows.append(_row(READING, "localisation", report.get("localisation"), None,
                     f"{report.get('boxes')} expert boxes in this library (peak, heatmap peak or flagged zone)"))
    return [r for r in rows if r.value is not None]


__all__ = ["EVAL_COMMAND", "EVAL_FILE", "READING", "TARGETS", "QualityRow",
           "library_eval", "library_rows", "load_json", "model_quality", "save_library_eval"]
