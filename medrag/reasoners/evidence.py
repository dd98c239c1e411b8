"""``evidence``: the offline reasoner.

With an image reading (``request.reading``: lung and heart outlines, zone opacities, costophrenic angles,
the view, devices and the trained classifier's calibrated probabilities) each section says what was
measured where and how sure it is, the impression restates exactly those findings, and similar cases are
quoted only in the similar-case section. Without one (a text question, or no reader configured) it falls
back to what the most similar library cases say, and says so. A question gets a direct answer first, with
the evidence for and against. Text is streamed word by word, as a model's output would appear.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from medrag.reading.base import ImageReading
from medrag.reasoners.answer import answer_from_neighbours, answer_lines
from medrag.reasoners.base import SECTIONS, BackendSpec, ReasoningRequest, register_reasoner
from medrag.reasoners.reading_text import impression, section_lines
from medrag.records import Neighbour

if TYPE_CHECKING:
    from medrag.config import Settings

DISCLAIMER = (
    "This reading is retrieval-based: it combines simple image measurements with the labels and reports "
    "of the most similar cases in the local library. It is not a model's reading of the image and not a "
    "diagnosis (education and research only)."
)
READING_DISCLAIMER = (
    "This reading comes from MedRAG's offline image readers (segmentation, measurements and a small "
    "classifier trained on about 1,200 NIH films) plus the most similar library cases. It is a teaching "
    "aid with known error rates, not a diagnosis (education and research only)."
)

# Which report sentences belong to which section (first match wins, in this order).
_SECTION_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Bones and devices", ("rib", "fracture", "spine", "clavicle", "osseous", "bone", "tube", "line", "catheter",
                           "pacemaker", "device", "wire", "sternotomy", "port", "scoliosis", "degenerative")),
    ("Pleura", ("pleura", "effusion", "pneumothorax", "costophrenic", "meniscus")),
    ("Heart and mediastinum", ("heart", "cardiac", "cardio", "mediastin", "aort", "hilar", "hila", "pericard")),
    ("Lungs", ("lung", "pulmonary", "opacit", "consolidat", "nodul", "mass", "edema", "oedema", "atelecta",
               "airspace", "air space", "infiltrat", "pneumonia", "interstitial", "kerley", "emphysema", "hyperinfl")),
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text or "") if len(s.strip()) > 3]


def _section_of(sentence: str) -> str | None:
    lowered = sentence.lower()
    for section, words in _SECTION_KEYWORDS:
        if any(word in lowered for word in words):
            return section
    return None


def label_votes(neighbours: Sequence[Neighbour]) -> list[tuple[str, float]]:
    """Labels of the neighbours with similarity-weighted vote shares (summing to 1), best first."""
    weights: dict[str, float] = defaultdict(float)
    for n in neighbours:
        weights[n.label or "unlabelled"] += max(n.score, 0.0) + 1e-6
    total = sum(weights.values()) or 1.0
    return sorted(((label, w / total) for label, w in weights.items()), key=lambda item: -item[1])


def _measurement_lines(m: dict[str, float]) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = defaultdict(list)
    if not m:
        return lines
    tech = lines["Technical assessment"]
    if "width" in m and "height" in m:
        tech.append(f"Image {int(m['width'])}×{int(m['height'])} px.")
    if "mean_intensity" in m and "contrast" in m:
        exposure = "adequate"
        if m["mean_intensity"] < 0.25:
            exposure = "dark (possibly over-penetrated)"
        elif m["mean_intensity"] > 0.75:
            exposure = "bright (possibly under-penetrated)"
        tech.append(
            f"Exposure looks {exposure}: mean intensity {m['mean_intensity']:.2f}, contrast {m['contrast']:.2f}."
        )
    if "clipped_fraction" in m and m["clipped_fraction"] > 0.05:
        tech.append(f"{m['clipped_fraction']:.0%} of pixels are clipped, which hides detail.")
    if "sharpness" in m:
        tech.append(f"Sharpness index {m['sharpness']:.3g}" + (" (soft image)." if m["sharpness"] < 1e-3 else "."))
    if "lung_asymmetry" in m:
        asym = m["lung_asymmetry"]
        side = "no marked difference between the lung fields"
        if abs(asym) > 0.08:
            # measure() reports left minus right (patient's sides): positive means the left field is whiter.
            side = (
                f"the patient's {'left' if asym > 0 else 'right'} lung field is whiter (more opaque) than the other "
                f"(asymmetry {asym:+.2f})"
            )
        lines["Lungs"].append(f"Measured brightness: {side}.")
    if "ctr" in m and 0.2 < m["ctr"] < 0.9:
        ctr = m["ctr"]
        # The image estimate reads high (median 0.54 on NIH normals), so 0.6 rather than the textbook 0.5.
        verdict = (
            "within the usual range for this estimate"
            if ctr <= 0.6
            else "high, which on a PA film suggests an enlarged cardiac silhouette"
        )
        lines["Heart and mediastinum"].append(
            f"Estimated cardiothoracic ratio {ctr:.2f}, {verdict} (rough image estimate)."
        )
    return lines


class EvidenceReasoner:
    """Step-wise reasoning from measurements and similar cases; offline and deterministic."""

    name = "evidence"
    model = "evidence-v2"

    def compose(self, request: ReasoningRequest) -> str:
        """The whole reasoning text (``stream`` yields it in pieces)."""
        if request.reading is not None and request.reading.findings:
            return self._compose_from_reading(request, request.reading)
        return self._compose_from_neighbours(request)

    def _compose_from_reading(self, request: ReasoningRequest, reading: ImageReading) -> str:
        neighbours = list(request.neighbours)
        body = section_lines(reading)
        for section, lines in _measurement_lines(request.measurements).items():
            if section == "Technical assessment":
                body[section].extend(lines)
        parts: list[str] = [READING_DISCLAIMER, ""]
        if request.question:
            question = request.question.strip()[:500]
            parts += [f"Question: {question}", "", "**Answer.**", *answer_lines(request.question, reading), ""]
        for section in SECTIONS:
            parts.append(f"**{section}.**")
            if section == "Similar-case evidence":
                parts.extend(self._evidence_lines(neighbours, label_votes(neighbours)))
                parts.extend(self._quotes(neighbours))
            elif section == "Impression":
                parts.append(impression(reading))
            else:
                parts.extend(body.get(section) or ["Nothing measured or found for this section."])
            parts.append("")
        for note in reading.notes:
            parts.append(f"Note: {note}")
        return "\n".join(parts).strip() + "\n"

    @staticmethod
    def _quotes(neighbours: Sequence[Neighbour]) -> list[str]:
        quoted = []
        for n in neighbours[:3]:
            sentence = next(iter(_sentences(n.report)), "")
            if sentence:
                quoted.append(f"Case {n.rank} ({n.score:.2f}) report: “{sentence[:200]}”")
        return quoted

    def _compose_from_neighbours(self, request: ReasoningRequest) -> str:
        neighbours = list(request.neighbours)
        by_section: dict[str, list[str]] = defaultdict(list)
        for section, lines in _measurement_lines(request.measurements).items():
            by_section[section].extend(lines)
        # Report sentences of the closest cases, routed to their section, most similar first.
        quoted: dict[str, list[str]] = defaultdict(list)
        for n in neighbours[:5]:
            for sentence in _sentences(n.report)[:12]:
                where = _section_of(sentence)
                if where and len(quoted[where]) < 3 and sentence not in quoted[where]:
                    quoted[where].append(f"case {n.rank} ({n.score:.2f}): “{sentence[:220]}”")
        votes = label_votes(neighbours)
        parts: list[str] = [DISCLAIMER, ""]
        if request.question:
            parts += [f"Question: {request.question.strip()[:500]}", "", "**Answer.**",
                      answer_from_neighbours(request.question, votes, has_image=request.image is not None), ""]
        for section in SECTIONS:
            parts.append(f"**{section}.**")
            if section == "Technical assessment" and request.image is None:
                parts.append("No image was given; this answer draws on the library cases most related to the question.")
            elif section == "Similar-case evidence":
                parts.extend(self._evidence_lines(neighbours, votes))
            elif section == "Impression":
                parts.append(self._impression(votes, neighbours))
            else:
                body = by_section.get(section, []) + [f"Similar {q}" for q in quoted.get(section, [])]
                parts.extend(body or ["No specific measurement or similar-case statement for this section."])
            parts.append("")
        return "\n".join(parts).strip() + "\n"

    @staticmethod
    def _evidence_lines(neighbours: Sequence[Neighbour], votes: Sequence[tuple[str, float]]) -> list[str]:
        if not neighbours:
            return ["No similar cases were found (the library may be empty or not indexed)."]
        lines = [f"The {len(neighbours)} most similar library cases:"]
        for n in neighbours:
            marker = " [synthetic]" if n.synthetic and n.dataset != "synthetic" else ""
            lines.append(f"- #{n.rank}: {n.label or 'unlabelled'} (similarity {n.score:.2f}, {n.dataset}{marker})")
        shares = ", ".join(f"{label} {share:.0%}" for label, share in votes)
        # A paragraph of its own: a line straight after the list would be read as part of its last item.
        lines += ["", f"Similarity-weighted label votes: {shares}."]
        return lines

    @staticmethod
    def _impression(votes: Sequence[tuple[str, float]], neighbours: Sequence[Neighbour]) -> str:
        if not votes:
            return "No impression: there is no similar-case evidence to draw on."
        label, share = votes[0]
        finding = label.replace(" + ", " and ")
        weight = f"(weighted vote {share:.0%} of {len(neighbours)} cases)"
        # The wording carries the strength of the evidence, so the labeler reads it as present or uncertain.
        if label.lower() in {"normal", "no finding", "no findings"}:
            if share >= 0.6:
                text = (
                    f"Similar cases suggest a normal chest radiograph: no acute cardiopulmonary abnormality {weight}."
                )
            else:
                text = f"Indeterminate: the similar cases are mixed; the largest group is normal {weight}."
        elif share >= 0.6:
            text = f"Findings most consistent with {finding} {weight}."
        elif share >= 0.4:
            text = f"Possible {finding} {weight}."
        else:
            text = f"Indeterminate: the similar cases disagree; possible {finding} {weight}."
        return f"{text} Verify against the image."

    def stream(self, request: ReasoningRequest) -> Iterator[str]:
        """Yield the reasoning word by word (whitespace kept, so the pieces join to :meth:`compose`)."""
        for match in re.finditer(r"\S+\s*", self.compose(request)):
            yield match.group(0)


def _factory(settings: Settings) -> EvidenceReasoner:
    return EvidenceReasoner()


register_reasoner(BackendSpec(name="evidence", factory=_factory, description="offline, retrieval-based", offline=True))
