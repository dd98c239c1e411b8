"""A direct answer to the user's question, opening the reading: yes / possibly / no, with the evidence
for and against, drawn from the image reading (or, without one, from the similar cases only)."""

from __future__ import annotations

from collections.abc import Sequence

from medrag.reading.base import NOT_ABNORMAL, FindingRead, ImageReading
from medrag.reading.cnn_reader import UNPROVEN_NOTE
from medrag.reasoners.reading_text import display

#: At most this many findings a question names are answered one by one.
MAX_ANSWERED = 3


def asked_findings(question: str) -> list[str]:
    """The findings a question names ("Is there consolidation?" → ["consolidation"]); "no finding" when it
    asks whether the film is normal."""
    from medrag.labels import label_text

    findings = label_text(question).findings
    named = [name for name, status in findings.items() if status != "not mentioned" and name != "no finding"]
    if not named and findings.get("no finding") in ("present", "uncertain"):
        return ["no finding"]
    return named[:MAX_ANSWERED]


def _for_and_against(read: FindingRead, reading: ImageReading) -> tuple[list[str], list[str], list[str]]:
    """Evidence for, evidence against, and caveats (a classifier at chance on this finding is neither)."""
    support: list[str] = []
    against: list[str] = []
    parts = [part for part in read.evidence.split("; ") if part]
    caveats = [part for part in parts if UNPROVEN_NOTE in part]
    if read.probability is not None and not caveats:  # a probability at chance is no evidence either way
        (support if read.probability >= 0.5 else against).append(f"classifier probability {read.probability:.2f}")
    evidence = "; ".join(part for part in parts if part not in caveats)
    if evidence:
        support.append(evidence) if read.status != "absent" else against.append(evidence)
    flagged = reading.flagged_zones()
    if read.name in ("consolidation", "pneumonia", "opacity", "atelectasis", "edema"):
        if flagged:
            support.append("increased opacity in the " + " and ".join(flagged[:2]))
        elif reading.zones:
            against.append("no lung zone is markedly more opaque than normal films")
    if read.name == "cardiomegaly" and reading.ctr is not None:
        (support if reading.ctr > 0.5 else against).append(f"cardiothoracic ratio {reading.ctr:.2f}")
        if not reading.ctr_reliable:
            against.append("the AP projection magnifies the heart, so the ratio overstates it")
    return support, against, caveats


def _answer_one(read: FindingRead | None, name: str, reading: ImageReading) -> str:
    shown = display(name)
    if read is None or read.status == "not mentioned":
        return f"The image readers do not assess {shown}; see the similar cases below."
    support, against, caveats = _for_and_against(read, reading)
    where = f" in the {' and '.join(read.where[:2])}" if read.where else ""
    if read.status == "present":
        head = f"Yes: {shown}{where} on this film."
    elif read.status == "uncertain":
        head = f"Possibly: possible {shown}{where}, not certain."
    else:
        head = f"No: no {shown} is seen on this film."
    tail = ""
    if support:
        tail += " Evidence for: " + "; ".join(support) + "."
    if against:
        tail += " Evidence against: " + "; ".join(against) + "."
    if caveats:
        tail += " Caveat: " + "; ".join(caveats) + "."
    return head + tail


def answer_lines(question: str, reading: ImageReading) -> list[str]:
    """The answer section's lines for a question about an image with a reading."""
    asked = asked_findings(question)
    if not asked:
        return ["The question names no finding the readers assess; the whole reading follows."]
    if asked == ["no finding"]:
        abnormal = [
            r for r in reading.findings.values() if r.name not in NOT_ABNORMAL and r.status in ("present", "uncertain")
        ]
        if not abnormal:
            return ["Yes: the image readers see no acute abnormality on this film."]
        named = ", ".join(("possible " if r.status == "uncertain" else "") + display(r.name) for r in abnormal[:4])
        return [f"No: the image readers report {named}."]
    return [_answer_one(reading.findings.get(name), name, reading) for name in asked]


def answer_from_neighbours(question: str, votes: Sequence[tuple[str, float]], *, has_image: bool) -> str:
    """Without an image reading, an answer can only point at the similar cases; it says so."""
    basis = "Cannot answer from the image: the image readers did not run." if has_image else "No image was given."
    if not votes:
        return f"{basis} No similar cases were found either."
    label, share = votes[0]
    return (
        f"{basis} This answer draws on the library cases most related to the question, which are mostly "
        f"labelled {label} ({share:.0%} of the similarity-weighted vote); see the sections below."
    )


__all__ = ["MAX_ANSWERED", "answer_from_neighbours", "answer_lines", "asked_findings"]
