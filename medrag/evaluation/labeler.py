"""Labeler quality on real radiology reports: the Open-i (Indiana University) chest X-ray collection.

The reports ship inside the torchxrayvision wheel (``torchxrayvision/data/NLMCXR_reports.tgz``, 3,955
XML files, CC BY-NC-ND 4.0). Each report has free-text FINDINGS and IMPRESSION and MeSH *major* terms
assigned by human indexers. We label findings + impression with :func:`medrag.labels.label_text` and
compare with the findings implied by the MeSH major terms (:data:`MESH_TO_FINDING`), per finding:
precision, recall and F1 of "present" versus "not present" (uncertain counts as not present).

The MeSH mapping (first component of a major term, e.g. ``Pleural Effusion/left/small`` →
``Pleural Effusion``), and why:

* ``normal`` → "no finding" (the indexers' term for a report with nothing abnormal); a report whose only
  terms are devices or image quality (:data:`NON_PATHOLOGY`) is "no finding" too (CheXpert's convention).
* Cardiomegaly → cardiomegaly (all grades, including "borderline": the indexers count it).
* Pleural Effusion, Hydropneumothorax, Hemopneumothorax, Hemothorax → effusion (pleural fluid);
  Pericardial Effusion is not pleural and is not mapped.
* Pneumothorax, Hydropneumothorax, Hemopneumothorax → pneumothorax (pleural air).
* Consolidation → consolidation.
* Opacity, Airspace Disease, Infiltrate → opacity: the names indexers give a parenchymal opacity;
  Density → opacity only when qualified "lung" (the term is also used for bone and soft tissue).
* Opacity or Density qualified "round" → nodule/mass too (a round opacity is a nodule).
* Cardiac Shadow qualified "enlarged" or "borderline" → cardiomegaly.
* Pulmonary Atelectasis → atelectasis.
* Pulmonary Edema, Pulmonary Congestion, Heart Failure → edema: radiographic vascular congestion is
  the first grade of hydrostatic edema and "CHF" on a radiograph means its signs (CheXpert labels all
  three as Edema).
* Nodule, Mass → nodule/mass. Granuloma / Calcified Granuloma are not mapped: a calcified granuloma
  is a benign healed lesion that reports and indexers keep apart from an indeterminate nodule.
* Pneumonia → pneumonia.
* Fractures, Bone → fracture (healed fractures included: still visible on the image).
* Catheters, Indwelling; Tube, Inserted; Implanted Medical Device; Medical Device; Stents;
  Surgical Instruments → support devices (reported, not in the macro score).
* Emphysema, Pulmonary Emphysema, Bullous Emphysema, Pulmonary Disease, Chronic Obstructive →
  emphysema. Subcutaneous and Mediastinal Emphysema are air in soft tissue, not lung disease, and are
  not mapped.

Reports indexed "No Indexing" and reports with neither findings nor impression text are skipped.
"""

from __future__ import annotations

import importlib.util
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrag.errors import LibraryError

#: Findings in the macro F1 (the brief's target set; consolidation and support devices are reported too).
MACRO_FINDINGS: tuple[str, ...] = (
    "cardiomegaly",
    "effusion",
    "pneumothorax",
    "opacity",
    "atelectasis",
    "edema",
    "nodule/mass",
    "pneumonia",
    "fracture",
    "emphysema",
    "no finding",
)
REPORTED_FINDINGS: tuple[str, ...] = (*MACRO_FINDINGS, "consolidation", "support devices")

#: First component of a MeSH major term (lower case) → the findings it implies.
MESH_TO_FINDING: dict[str, tuple[str, ...]] = {
    "normal": ("no finding",),
    "cardiomegaly": ("cardiomegaly",),
    "pleural effusion": ("effusion",),
    "hemothorax": ("effusion",),
    "hydropneumothorax": ("effusion", "pneumothorax"),
    "hemopneumothorax": ("effusion", "pneumothorax"),
    "pneumothorax": ("pneumothorax",),
    "consolidation": ("consolidation",),
    "opacity": ("opacity",),
    "airspace disease": ("opacity",),
    "infiltrate": ("opacity",),
    "pulmonary atelectasis": ("atelectasis",),
    "pulmonary edema": ("edema",),
    "pulmonary congestion": ("edema",),
    "heart failure": ("edema",),
    "nodule": ("nodule/mass",),
    "mass": ("nodule/mass",),
    "pneumonia": ("pneumonia",),
    "fractures, bone": ("fracture",),
    "catheters, indwelling": ("support devices",),
    "tube, inserted": ("support devices",),
    "implanted medical device": ("support devices",),
    "medical device": ("support devices",),
    "stents": ("support devices",),
    "surgical instruments": ("support devices",),
    "emphysema": ("emphysema",),
    "pulmonary emphysema": ("emphysema",),
    "bullous emphysema": ("emphysema",),
    "pulmonary disease, chronic obstructive": ("emphysema",),
}

#: (term, any of these qualifiers) → findings: terms whose meaning depends on a qualifier.
MESH_QUALIFIED: dict[tuple[str, frozenset[str]], tuple[str, ...]] = {
    ("cardiac shadow", frozenset({"enlarged", "borderline"})): ("cardiomegaly",),
    ("opacity", frozenset({"round"})): ("nodule/mass",),
    ("density", frozenset({"round"})): ("nodule/mass",),
    ("density", frozenset({"lung"})): ("opacity",),
}
#: Terms that are not pathology: a report with only these is "no finding" (CheXpert's convention:
#: tubes, lines and devices and image quality do not make a study abnormal).
NON_PATHOLOGY: frozenset[str] = frozenset(
    {
        "normal", "catheters, indwelling", "tube, inserted", "implanted medical device", "medical device",
        "stents", "surgical instruments", "technical quality of image unsatisfactory",
    }
)

_TGZ_NAME = "NLMCXR_reports.tgz"


@dataclass(frozen=True)
class OpenIReport:
    """One Open-i report: ids, the free-text sections and the MeSH major terms."""

    uid: str
    findings: str
    impression: str
    mesh_major: list[str]
    image_ids: list[str]
    indication: str = ""
    comparison: str = ""

    @property
    def text(self) -> str:
        """Findings and impression as one report text (what the labeler reads)."""
        parts = []
        if self.findings:
            parts.append(f"FINDINGS: {self.findings}")
        if self.impression:
            parts.append(f"IMPRESSION: {self.impression}")
        return "\n".join(parts)

    def truth(self) -> set[str]:
        """The findings implied by the MeSH major terms (see :data:`MESH_TO_FINDING`)."""
        out: set[str] = set()
        pathology = False
        for term in self.mesh_major:
            head, *qualifiers = [part.strip().lower() for part in term.split("/")]
            found = set(MESH_TO_FINDING.get(head, ()))
            for (q_head, q_any), findings in MESH_QUALIFIED.items():
                if head == q_head and q_any & set(qualifiers):
                    found.update(findings)
            out.update(found)
            if head not in NON_PATHOLOGY:
                pathology = True
        if not pathology:
            out.add("no finding")
        return out


def default_reports_path() -> Path | None:
    """The Open-i tgz inside the installed torchxrayvision package, or None if it is not installed."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / _TGZ_NAME
        if candidate.is_file():
            return candidate
    return None


def _text(node: ET.Element | None) -> str:
    return " ".join("".join(node.itertext()).split()) if node is not None else ""


def parse_openi_xml(data: bytes | str) -> OpenIReport:
    """Parse one Open-i XML report (raises :class:`LibraryError` if it is not one)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise LibraryError(
            f"Not a readable Open-i XML report ({exc}); check the file is an ecgen-radiology XML."
        ) from exc
    uid_node = root.find("uId")
    uid = uid_node.get("id", "") if uid_node is not None else ""
    if not uid:
        raise LibraryError("The XML has no <uId id=...>: it is not an Open-i report; pass the NLMCXR reports.")
    sections = {
        (node.get("Label") or "").upper(): _text(node) for node in root.iter("AbstractText")
    }
    mesh = root.find("MeSH")
    major = [_text(m) for m in mesh.findall("major")] if mesh is not None else []
    images = [node.get("id", "") for node in root.findall("parentImage") if node.get("id")]
    return OpenIReport(
        uid=uid,
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        mesh_major=[m for m in major if m],
        image_ids=images,
        indication=sections.get("INDICATION", ""),
        comparison=sections.get("COMPARISON", ""),
    )


def _iter_xml(path: Path) -> Iterator[tuple[str, bytes]]:
    # Streamed, with size limits: a small archive can hold a member that inflates to gigabytes.
    from medrag.archive import iter_xml_documents

    return iter_xml_documents(path)


def read_openi_reports(path: Path | str | None = None) -> list[OpenIReport]:
    """All reports in an Open-i tgz, a folder of XML files or one XML file, sorted by numeric uid.

    ``None`` reads the copy shipped in torchxrayvision. Files that are not Open-i reports are skipped;
    if none are found :class:`LibraryError` says where to get them.
    """
    source = Path(path) if path is not None else default_reports_path()
    if source is None or not source.exists():
        raise LibraryError(
            f"Open-i reports not found at {source or 'the torchxrayvision package'}; install torchxrayvision "
            f"(it ships data/{_TGZ_NAME}) or pass the path to the reports."
        )
    reports = []
    for _, data in _iter_xml(source):
        try:
            reports.append(parse_openi_xml(data))
        except LibraryError:
            continue
    if not reports:
        raise LibraryError(f"No Open-i XML reports in {source}; pass NLMCXR_reports.tgz or its extracted folder.")
    reports.sort(key=lambda r: (int("".join(c for c in r.uid if c.isdigit()) or 0), r.uid))
    return reports


@dataclass(frozen=True)
class FindingScore:
    """Counts and scores for one finding (present vs not present)."""

    finding: str
    tp: int
    fp: int
    fn: int
    support: int
    uncertain: int = 0

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0 when nothing was predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0 when there are no positives."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class LabelerReport:
    """Per-finding scores of the rule labeler on Open-i, plus macro F1 over :data:`MACRO_FINDINGS`."""

    scores: dict[str, FindingScore]
    n_reports: int
    n_skipped: int
    seconds: float
    source: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over :data:`MACRO_FINDINGS`."""
        return sum(self.scores[f].f1 for f in MACRO_FINDINGS) / len(MACRO_FINDINGS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (per-finding counts and scores, macro F1, run facts)."""
        return {
            "source": self.source,
            "n_reports": self.n_reports,
            "n_skipped": self.n_skipped,
            "seconds": round(self.seconds, 2),
            "macro_f1": round(self.macro_f1, 4),
            "macro_findings": list(MACRO_FINDINGS),
            "findings": {
                name: {
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                    "f1": round(s.f1, 4),
                    "tp": s.tp,
                    "fp": s.fp,
                    "fn": s.fn,
                    "support": s.support,
                    "uncertain": s.uncertain,
                }
                for name, s in self.scores.items()
            },
        }

    def to_table(self) -> str:
        """A fixed-width text table, one row per finding, then the macro F1."""
        lines = [f"{'finding':<16}{'prec':>7}{'recall':>8}{'F1':>7}{'TP':>6}{'FP':>6}{'FN':>6}{'support':>9}{'unc':>6}"]
        for name, s in self.scores.items():
            mark = "" if name in MACRO_FINDINGS else " *"
            lines.append(
                f"{name + mark:<16}{s.precision:>7.3f}{s.recall:>8.3f}{s.f1:>7.3f}{s.tp:>6}{s.fp:>6}{s.fn:>6}"
                f"{s.support:>9}{s.uncertain:>6}"
            )
        lines.append(f"macro F1 ({len(MACRO_FINDINGS)} findings) = {self.macro_f1:.4f} over {self.n_reports} reports")
        lines.append("* not in the macro F1")
        return "\n".join(lines)


def evaluate_labeler(
    reports_path: Path | None = None, limit: int | None = None, keep_errors: int = 0
) -> LabelerReport:
    """Label Open-i findings + impression with the rule labeler and score it against MeSH major terms.

    ``reports_path`` defaults to the tgz in torchxrayvision; ``limit`` takes the first N usable reports
    (sorted by uid); ``keep_errors`` keeps that many disagreements per finding in ``errors`` for inspection.
    """
    from medrag.labels import label_texts

    started = time.perf_counter()
    reports = read_openi_reports(reports_path)
    usable = [
        r for r in reports if r.text and not any(m.split("/")[0].strip().lower() == "no indexing" for m in r.mesh_major)
    ]
    skipped = len(reports) - len(usable)
    if limit is not None:
        usable = usable[:limit]
    summaries = label_texts([r.text for r in usable])
    counts = {f: {"tp": 0, "fp": 0, "fn": 0, "support": 0, "uncertain": 0} for f in REPORTED_FINDINGS}
    errors: list[dict[str, Any]] = []
    per_finding_errors: dict[str, int] = {f: 0 for f in REPORTED_FINDINGS}
    for report, summary in zip(usable, summaries, strict=True):
        truth = report.truth()
        for finding in REPORTED_FINDINGS:
            predicted = summary.findings[finding] == "present"
            actual = finding in truth
            c = counts[finding]
            c["support"] += actual
            c["uncertain"] += summary.findings[finding] == "uncertain"
            if predicted and actual:
                c["tp"] += 1
            elif predicted:
                c["fp"] += 1
            elif actual:
                c["fn"] += 1
            if predicted != actual and per_finding_errors[finding] < keep_errors:
                per_finding_errors[finding] += 1
                errors.append(
                    {
                        "uid": report.uid,
                        "finding": finding,
                        "kind": "fp" if predicted else "fn",
                        "status": summary.findings[finding],
                        "mesh": report.mesh_major,
                        "text": report.text,
                        "label": summary.label,
                    }
                )
    scores = {f: FindingScore(finding=f, **c) for f, c in counts.items()}
    return LabelerReport(
        scores=scores,
        n_reports=len(usable),
        n_skipped=skipped,
        seconds=time.perf_counter() - started,
        source=str(reports_path or default_reports_path()),
        errors=errors,
    )
