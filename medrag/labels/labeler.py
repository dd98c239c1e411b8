"""From text to a :class:`Summary`: prepare the text, run the pipeline, turn mentions into statuses.

How a mention becomes a status:

* Four statuses: negated mentions are "absent"; uncertain mentions "uncertain"; the rest "present".
  Hypothetical, historical and family mentions do not describe this image, so like never-mentioned
  findings they stay "not mentioned" (a teaching tool must not call what nobody said "absent").
* Across mentions: present beats uncertain beats absent beats not mentioned. When anything abnormal is
  named, "no finding" is "absent".
* "no finding" is present only when nothing abnormal is present or uncertain *and* the text says
  something about the chest (a negated finding or normal-study wording); a reading that calls itself
  indeterminate makes it uncertain. Abnormalities outside the finding list rule it out; support
  devices do not.

Texts are labeled in sentence-aligned chunks, which keeps ConText's pairwise modifier pass cheap.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from medrag.labels.nlp import NLP_LOCK, get_nlp
from medrag.labels.rules import load_rules
from medrag.labels.sections import strip_skipped_sections, truncate_for_labeling
from medrag.labels.wording import Mention, make_label, mention_modifiers
from medrag.records import FINDINGS, FindingStatus, Summary

log = logging.getLogger(__name__)

_RULES = load_rules()
_RANK: dict[str, int] = {"not mentioned": -1, "absent": 0, "uncertain": 1, "present": 2}
_HEDGED_READING = re.compile(_RULES.hedged_reading, re.IGNORECASE)
_CHUNK_CHARS = 600
_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")


def _mentions(docs: Iterable[Any]) -> tuple[list[Mention], list[str], bool]:
    """Finding mentions, other-abnormality mentions (present/uncertain) and whether the text describes the chest."""
    mentions: list[Mention] = []
    others: list[str] = []
    described = False
    for ent in (ent for doc in docs for ent in doc.ents):
        category = ent.label_
        if category in _RULES.normal:
            described = True
            continue
        if category in _RULES.normal_for:
            described = True
            # "not enlarged" is part of the normal wording itself, so its own "not" does not negate it.
            negated = ent._.is_negated and not re.search(r"\bnot\b", ent.text, re.IGNORECASE)
            if not (negated or ent._.is_uncertain or ent._.is_hypothetical):
                for finding in _RULES.normal_for[category]:
                    mentions.append(Mention(finding, "absent", mention_modifiers(ent), ent.text.lower()))
            continue
        if ent._.is_negated:
            described = True
            status: FindingStatus | None = "absent"
        elif ent._.is_hypothetical or ent._.is_historical or ent._.is_family:
            status = None
        elif ent._.is_uncertain:
            status = "uncertain"
        else:
            status = "present"
        if status is None:
            continue
        if category in _RULES.abnormal_only:
            if status != "absent":
                others.append(ent.text.lower())
                described = True
            continue
        for finding in _RULES.category_findings.get(category, ()):
            mentions.append(Mention(finding, status, mention_modifiers(ent), ent.text.lower()))
            described = True
    return mentions, others, described


def _summarise(docs: Iterable[Any], notes: tuple[str, ...] = ()) -> Summary:
    docs = list(docs)
    mentions, others, described = _mentions(docs)
    findings: dict[str, FindingStatus] = {name: "not mentioned" for name in FINDINGS}
    best: dict[str, Mention] = {}
    for mention in mentions:
        current = best.get(mention.finding)
        if current is None or _RANK[mention.status] > _RANK[current.status]:
            best[mention.finding] = mention
            findings[mention.finding] = mention.status
    abnormal = any(
        status in ("present", "uncertain")
        for name, status in findings.items() if name not in ("no finding", "support devices")
    )
    if described and not abnormal and not others:
        hedged = any(_HEDGED_READING.search(doc.text) for doc in docs)
        findings["no finding"] = "uncertain" if hedged else "present"
    elif abnormal or others:
        # Something abnormal was named: "no finding" is contradicted, not merely unmentioned.
        findings["no finding"] = "absent"
    return Summary(label=make_label(findings, best, others), findings=findings, backend="rules", notes=notes)


def _sanitise(text: str) -> str:
    # Control, format (RTL/zero-width) and lone-surrogate characters become spaces: spaCy and the
    # sentence splitter must never see them, and they carry no meaning for labeling.
    text = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in text
    )
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\.{2,}", ".", text)  # "effusion.. Heart" must still end a sentence
    text = re.sub(r"\b(vs|e\.g|i\.e|approx)\.", r"\1", text, flags=re.I)  # not sentence ends
    return re.sub(r"[ \t]*\n[\s]*", "\n", text)


def _prepare(text: str) -> tuple[str, tuple[str, ...]]:
    """The text the labeler reads, and the caveats to show with its result."""
    if not isinstance(text, str):
        text = str(text)
    clipped, truncated = truncate_for_labeling(text)
    if not truncated:
        return strip_skipped_sections(_sanitise(clipped)), ()
    log.warning("Labeler read only %d of %d characters (head and last impression).", len(clipped), len(text))
    note = (
        f"The labeler read {len(clipped):,} of {len(text):,} characters (the start and the last impression); "
        "findings described only in the part it skipped are not in the table."
    )
    return strip_skipped_sections(_sanitise(clipped)), (note,)


def _chunks(text: str, size: int = _CHUNK_CHARS) -> list[str]:
    # ConText compares every pair of modifiers in a doc (quadratic), but its scopes never cross a
    # sentence: labeling sentence-aligned chunks gives the same result and bounds the cost.
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > size:  # a run-on "sentence": cut at the last space before the limit
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            if current:
                chunks.append(current)
                current = ""
            chunks.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if current and len(current) + len(sentence) + 1 > size:
            chunks.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current.strip():
        chunks.append(current)
    return chunks


def label_text(text: str) -> Summary:
    """Label a report or reasoning text: a status for every finding in FINDINGS plus a one-line label.

    Never raises for any ``str`` (texts over :data:`~medrag.labels.sections.MAX_CHARS` are truncated,
    with a logged warning and a note); raises :class:`BackendUnavailableError` only when medspaCy itself
    cannot be loaded.
    """
    return label_texts([text])[0]


def label_texts(texts: Iterable[str], batch_size: int = 64) -> list[Summary]:
    """:func:`label_text` for many texts at once (one pipeline pass over all their chunks)."""
    nlp = get_nlp()
    owners: list[int] = []
    pieces: list[str] = []
    notes: list[tuple[str, ...]] = []
    for index, text in enumerate(texts):
        prepared, caveats = _prepare(text)
        notes.append(caveats)
        for chunk in _chunks(prepared):
            owners.append(index)
            pieces.append(chunk)
    docs: list[list[Any]] = [[] for _ in notes]
    with NLP_LOCK:
        for owner, doc in zip(owners, nlp.pipe(pieces, batch_size=batch_size), strict=True):
            docs[owner].append(doc)
        return [_summarise(group, caveats) for group, caveats in zip(docs, notes, strict=True)]


__all__ = ["label_text", "label_texts"]
