"""The medspaCy pipeline the labeler runs: sentencizer, target matcher and ConText, built once per process.

The rules come from ``rules.toml`` (:mod:`medrag.labels.rules`). medSpaCy is imported only here, on
first use, so ``import medrag.labels`` stays light and a broken spaCy build surfaces as
:class:`BackendUnavailableError` with the fix in its message.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

from medrag.errors import BackendUnavailableError
from medrag.labels.rules import Pattern, Rules, load_rules

_NLP: Any = None
#: Guards both the lazy build and each pipeline call: the matchers and the sentence splitter keep
#: per-call state, and labeling a report takes milliseconds.
NLP_LOCK = threading.Lock()


def build_nlp(rules: Rules) -> Any:
    """A new medspaCy pipeline for ``rules`` (raises :class:`BackendUnavailableError` if medspaCy is broken)."""
    saved_filters = list(warnings.filters)
    try:
        import medspacy
        from medspacy.context import ConTextRule
        from medspacy.ner import TargetRule
    except Exception as exc:  # a broken spaCy/thinc build raises ValueError, not ImportError
        raise BackendUnavailableError(
            f"The rule labeler needs medspaCy, which failed to import ({type(exc).__name__}: {exc}). "
            "Reinstall the environment with `pip install -r requirements.txt`; medspaCy needs a spaCy/thinc "
            "build that matches the installed numpy."
        ) from exc
    finally:
        # medspaCy's matcher module silences every warning in the process on import; undo that.
        # (typeshed declares warnings.filters a read-only Sequence; at run time it is the module's list)
        warnings.filters[:] = saved_filters  # type: ignore[index]
    nlp = medspacy.load(
        medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher", "medspacy_context"],
        load_rules=False,
    )
    # spaCy's rule sentencizer on . ! ? and line breaks: PyRuSH splits radiology text no better here
    # and takes half of the labeling time.
    nlp.add_pipe("sentencizer", first=True, config={"punct_chars": [".", "!", "?", "\n"]})
    nlp.get_pipe("medspacy_target_matcher").add(
        [
            TargetRule(literal=f"{category}:{i}", category=category, pattern=pattern)
            for category, patterns in rules.targets.items()
            for i, pattern in enumerate(merge_regexes(patterns))
        ]
    )
    nlp.get_pipe("medspacy_context").add(
        [
            ConTextRule(
                literal=f"{group.category}:{group.direction}:{group.max_scope}:{i}",
                category=group.category,
                pattern=pattern,
                direction=group.direction,
                max_scope=group.max_scope,
            )
            for group in rules.modifiers
            for i, pattern in enumerate(merge_regexes(group.patterns))
        ]
    )
    return nlp


def merge_regexes(patterns: Sequence[Pattern]) -> list[Pattern]:
    """Token patterns as they are, then all regexes as one alternation (in their order)."""
    # medspaCy's regex matcher rebuilds the doc text once per pattern: one alternation per rule
    # group keeps labeling fast.
    regexes = [p for p in patterns if isinstance(p, str)]
    merged: list[Pattern] = [p for p in patterns if not isinstance(p, str)]
    if regexes:
        merged.append("|".join(f"(?:{r})" for r in regexes))
    return merged


def get_nlp() -> Any:
    """The process's pipeline, built on first call (raises :class:`BackendUnavailableError` if it cannot be)."""
    global _NLP
    if _NLP is None:
        with NLP_LOCK:
            if _NLP is None:
                _NLP = build_nlp(load_rules())
    return _NLP


__all__ = ["NLP_LOCK", "build_nlp", "get_nlp", "merge_regexes"]
