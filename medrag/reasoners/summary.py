"""What the model summarisers (``openai``, ``hf``) share: a label from the model, findings from the rules.

A model is good at one concise label line; the CheXpert-style findings come from the rule labeler
(:func:`medrag.labels.label_text`) so they stay comparable across backends. When the model's answer
holds no usable label, the rule label stands in and the summary says so in a note.
"""

from __future__ import annotations

from collections.abc import Callable

from medrag.errors import BackendUnavailableError
from medrag.records import Summary

#: Shown with the label when a model summariser returned nothing usable and the rule label stands in.
NO_MODEL_LABEL = "The model gave no usable label; the rule-based label is shown."

_PREFIXES = ("label:", "summary:", "impression:")


def clean_label(text: str, max_chars: int = 120) -> str:
    """The first meaningful line of a model's label answer, without quotes, markdown or a ``Label:`` prefix."""
    for line in text.splitlines():
        line = line.strip().lstrip("#*->• ").strip()
        lowered = line.lower()
        for prefix in _PREFIXES:
            if lowered.startswith(prefix):
                line = line[len(prefix) :].strip()
                break
        line = line.strip("\"'`*_ ").rstrip(".").strip()
        if line:
            return line[:max_chars].rstrip()
    return ""


def summarise_with_model(text: str, ask_model: Callable[[str], str], *, backend: str) -> Summary:
    """The label ``ask_model(text)`` answers (cleaned) with the rule labeler's findings for ``text``.

    The rule labeler runs first, so a broken install fails before a slow model call. An empty
    answer keeps the rule label and adds :data:`NO_MODEL_LABEL` to the notes.
    """
    try:
        # Imported here: medrag.labels registers its own backend in the registry this package defines.
        from medrag.labels import label_text
    except ImportError as exc:
        raise BackendUnavailableError(
            f"The {backend} summariser needs medrag.labels for findings; reinstall MedRAG "
            "(`pip install -r requirements.txt`)."
        ) from exc
    rules = label_text(text)
    label = clean_label(ask_model(text))
    notes = rules.notes if label else (*rules.notes, NO_MODEL_LABEL)
    return Summary(label=label or rules.label, findings=dict(rules.findings), backend=backend, notes=notes)


__all__ = ["NO_MODEL_LABEL", "clean_label", "summarise_with_model"]
