"""Rule-based findings labeler (medspaCy target matcher + ConText).

``label_text(text)`` turns a radiology report or a reasoner's output into a :class:`Summary`:
a status for every name in :data:`medrag.records.FINDINGS` and a concise label such as
"Cardiomegaly with small left pleural effusion".

How a mention becomes a status:

* Target phrases (synonyms, plural and adjectival forms) are matched per finding.
* ConText modifiers tuned for radiology language mark each mention negated ("no", "without",
  "negative for", "free of", "resolved"...), uncertain ("may represent", "cannot exclude",
  "possible", "likely", "suggestive of", "versus"...), hypothetical ("if", "evaluate for",
  "recommend") or historical ("history of"). Pseudo-triggers ("no change in", "not only")
  stop "no"/"not" from negating what follows.
* Four statuses. Across mentions: present beats uncertain beats absent (explicitly negated) beats
  not mentioned. Hypothetical and historical mentions, like never-mentioned findings, are "not mentioned".
* Sections that do not describe this image (indication, history, comparison, technique,
  similar-case evidence, references) are skipped.
* "no finding" is present only when nothing abnormal is present or uncertain *and* the text
  says something about the chest (a negated finding or normal-study wording). Abnormalities
  outside the finding list (granuloma, scarring, degenerative change, hyperinflation...) also
  rule "no finding" out. Support devices do not.

Choices worth knowing: "borderline cardiomegaly" is present (a grade, as Open-i's indexers read it);
"probable"/"likely" are uncertain; "infectious process" is abnormal but is not labeled pneumonia
unless the word is used; a "nodular opacity/density" is both a nodule and an opacity.

Texts longer than :data:`MAX_CHARS` are truncated (head of the text plus the last impression
section) and a warning is logged. On the 3,832 indexed Open-i reports the labeler reaches
macro F1 0.93 (:mod:`medrag.evaluation.labeler`).

Modules: ``rules.toml`` (the phrase, modifier, section and wording tables, as data), :mod:`.rules`
(loads and validates them), :mod:`.sections` (sectioning and truncation), :mod:`.nlp` (the medspaCy
pipeline), :mod:`.wording` (the one-line label), :mod:`.labeler` (text to :class:`Summary`). The
``rules`` summariser backend that wraps this lives in :mod:`medrag.reasoners.rules`.
"""

from __future__ import annotations

from medrag.labels.labeler import label_text, label_texts
from medrag.labels.sections import MAX_CHARS, SKIPPED_SECTIONS, strip_skipped_sections, truncate_for_labeling

__all__ = [
    "MAX_CHARS",
    "SKIPPED_SECTIONS",
    "label_text",
    "label_texts",
    "strip_skipped_sections",
    "truncate_for_labeling",
]
