"""``evidence``: the offline, weight-free reasoner.

It does not read the image the way a radiologist or a vision-language model would. It reports simple
image measurements and what the most similar library cases say (their labels and report sentences,
weighted by similarity), section by section, and says so plainly. Text is streamed word by word so
every front end shows it the same way a model's output would appear.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from medrag.reasoners.base import SECTIONS, BackendSpec, ReasoningRequest, register_reasoner
from medrag.records import Neighbour

if TYPE_CHECKING:
    from medrag.config import Settings

DISCLAIMER = (
    "This reading is retrieval-based: it combines simple image measurements with the labels and reports "
    "of the most similar cases in the local library. It is not a model's reading of the image and not a "
    "diagnosis (education and research only)."
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
        tech.append(f"Exposure looks {exposure}: mean intensity {m['mean_intensity']:.2f}, contrast {m['contrast']:.2f}.")
    if "clipped_fraction" in m and m["clipped_fraction"] > 0.05:
        tech.append(f"{m['clipped_fraction']:.0%} of pixels are clipped, which hides detail.")
    if "sharpness" in m:
        tech.append(f"Sharpness index {m['sharpness']:.3g}" + (" (soft image)." if m["sharpness"] < 1e-3 else "."))
    if "lung_asymmetry" in m:
        asym = m["lung_asymmetry"]
        side = "no marked difference between the lung fields"
        if abs(asym) > 0.08:
            # measure() reports left minus right (patient's sides): positive means the left field is whiter.
            side = f"the patient's {'left' if asym > 0 else 'right'} lung field is whiter (more opaque) than the other (asymmetry {asym:+.2f})"
        lines["Lungs"].append(f"Measured brightness: {side}.")
    if "ctr" in m and 0.2 < m["ctr"] < 0.9:
        ctr = m["ctr"]
        # The image estimate reads high (median 0.54 on NIH normals), so 0.6 rather than the textbook 0.5.
        verdict = "within the usual range for this estimate" if ctr <= 0.6 else "high, which on a PA film suggests an enlarged cardiac silhouette"
        lines["Heart and mediastinum"].append(f"Estimated cardiothoracic ratio {ctr:.2f}, {verdict} (rough image estimate).")
    return lines


class EvidenceReasoner:
    """Step-wise reasoning from measurements and similar cases; offline and deterministic."""

    name = "evidence"
    model = "retrieval-evidence-v1"

    def compose(self, request: ReasoningRequest) -> str:
        """The whole reasoning text (``stream`` yields it in pieces)."""
        neighbours = list(request.neighbours)
        by_section: dict[str, list[str]] = defaultdict(list)
        for section, lines in _measurement_lines(request.measurements).items():
            by_section[section].extend(lines)
        # Report sentences of the closest cases, routed to their section, most similar first.
        quoted: dict[str, list[str]] = defaultdict(list)
        for n in neighbours[:5]:
            for sentence in _sentences(n.report)[:12]:
                section = _section_of(sentence)
                if section and len(quoted[section]) < 3 and sentence not in quoted[section]:
                    quoted[section].append(f"case {n.rank} ({n.score:.2f}): “{sentence[:220]}”")
        votes = label_votes(neighbours)
        parts: list[str] = [DISCLAIMER, ""]
        if request.question:
            parts += [f"Question: {request.question.strip()[:500]}", ""]
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
        lines.append("Similarity-weighted label votes: " + ", ".join(f"{label} {share:.0%}" for label, share in votes) + ".")
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
                text = f"Similar cases suggest a normal chest radiograph: no acute cardiopulmonary abnormality {weight}."
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
