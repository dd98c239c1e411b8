"""Spaced repetition for practice quizzes: Leitner boxes, replayed from the stored answers.

Each case a learner has met sits in a box, 1 to :data:`BOXES`. A right answer moves it up one box, a wrong
answer back to box 1. A practice round is one quiz session; a case in box ``b`` is due again
:data:`INTERVALS` ``[b - 1]`` rounds after it was last asked, so a case answered wrong comes back in the very
next round while one answered right five times waits sixteen. The boxes are not stored: they are replayed
from the answers (:func:`replay`), so the history is the one source of truth and the schedule is exactly
reproducible. Everything here is deterministic for a given history and seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: How many boxes there are.
BOXES = 5
#: Rounds between reviews of a case in box 1, 2, … :data:`BOXES`.
INTERVALS: tuple[int, ...] = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Card:
    """Where one case stands for one learner: its box and the round it was last asked in."""

    box: int
    last_round: int

    def due_round(self) -> int:
        """The first round in which this case is due again."""
        return self.last_round + INTERVALS[self.box - 1]


def replay(history: Iterable[tuple[int, str, bool]]) -> dict[str, Card]:
    """The cards after a history of ``(round, case key, answered right)``, taken in round order.

    Within a round the answers keep their order; a case asked twice in one round moves once per answer.
    """
    cards: dict[str, Card] = {}
    for round_no, key, correct in sorted(history, key=lambda event: event[0]):
        box = cards[key].box if key in cards else 1  # a new case starts in box 1
        cards[key] = Card(box=min(box + 1, BOXES) if correct else 1, last_round=int(round_no))
    return cards


def rounds_of(sessions: Sequence[str]) -> dict[str, int]:
    """Session ids (oldest first, repeats allowed) → their round number (0, 1, 2, …)."""
    out: dict[str, int] = {}
    for session in sessions:
        out.setdefault(session, len(out))
    return out


def schedule(keys: Sequence[str], cards: dict[str, Card], round_no: int, seed: int | None = None) -> list[str]:
    """Every key, in the order a practice round should ask them.

    First the cases that are due (lowest box first, then the longest unseen), then new cases (in the order
    given, or shuffled by ``seed`` when one is given), then the rest by the round they become due.
    """
    due = [k for k in keys if k in cards and cards[k].due_round() <= round_no]
    new = [k for k in keys if k not in cards]
    later = [k for k in keys if k in cards and cards[k].due_round() > round_no]
    due.sort(key=lambda k: (cards[k].box, cards[k].last_round, k))
    if seed is not None:
        random.Random(seed).shuffle(new)
    later.sort(key=lambda k: (cards[k].due_round(), cards[k].box, k))
    return [*due, *new, *later]


__all__ = ["BOXES", "INTERVALS", "Card", "replay", "rounds_of", "schedule"]
