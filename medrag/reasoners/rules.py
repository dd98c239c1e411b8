"""The offline ``rules`` summariser: the rule labeler (:mod:`medrag.labels`) behind the Summariser interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medrag.labels import label_text
from medrag.labels.nlp import get_nlp
from medrag.reasoners.base import BackendSpec, register_summariser
from medrag.records import Summary

if TYPE_CHECKING:
    from medrag.config import Settings


class RulesSummariser:
    """The offline summariser: medspaCy target phrases + ConText rules (see :func:`medrag.labels.label_text`)."""

    name = "rules"
    model = "medspacy-context"

    def summarise(self, text: str) -> Summary:
        """A one-line label and a status for every finding."""
        return label_text(text)


def _factory(settings: Settings) -> RulesSummariser:
    get_nlp()  # fail here, with the fix in the message, rather than mid-analysis
    return RulesSummariser()


register_summariser(
    BackendSpec(
        name="rules",
        factory=_factory,
        description="Rule-based labeler: medspaCy target phrases with radiology ConText negation/uncertainty",
        offline=True,
    )
)

__all__ = ["RulesSummariser"]
