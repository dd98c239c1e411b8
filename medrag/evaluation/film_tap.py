"""What the refits of ``medrag eval reading --cross-fit / --write-calibration`` need, kept while the eval reads.

The eval reads every labelled film with the whole reader; the refits need each film's anatomy reading and the
classifier's calibrated output (:class:`~medrag.evaluation.reading_crossfit.CrossFitFilm`). Reading every film
a second time for them doubled the fit (186 s on the 972 cxr-real films). A :class:`FilmTap` instead records
both as the eval's own reader produces them, so each film is read once.
"""

from __future__ import annotations

from typing import Any

from medrag.evaluation.reading import LabelledImage
from medrag.evaluation.reading_crossfit import CrossFitFilm, logits_of, readers_for_cross_fit
from medrag.reading.base import ImageReading
from medrag.reading.combine import CombinedReader


class _Recorded:
    """A reader that passes each reading on and leaves it with the tap."""

    def __init__(self, inner: Any, tap: FilmTap) -> None:
        self.inner, self.tap = inner, tap
        self.name = inner.name

    def read(self, pixels: Any, *, view_hint: str | None = None) -> ImageReading:
        reading: ImageReading = self.inner.read(pixels, view_hint=view_hint)
        self.tap.anatomy = reading
        return reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FilmTap:
    """Wraps ``reader``'s anatomy and medrag-cnn members (raises ConfigError without them, as the refits do).

    Call :meth:`start` before each film's read and :meth:`keep` after it; :attr:`films` then holds what
    :func:`~medrag.evaluation.reading_crossfit.read_films` would have read."""

    def __init__(self, reader: CombinedReader) -> None:
        anatomy, cnn = readers_for_cross_fit(reader.members)
        if cnn not in reader.members:
            # A library's calibration is on this reader: the refits start from the shipped numbers instead.
            raise ValueError("FilmTap needs a reader with the shipped calibration (library_calibration=False)")
        self.meta = cnn.cnn.meta
        self.films: list[CrossFitFilm] = []
        self.skipped = 0
        self.anatomy: ImageReading | None = None
        self.output: Any = None
        reader.members = [_Recorded(m, self) if m is anatomy else m for m in reader.members]
        cnn.on_output = self._output

    def _output(self, output: Any) -> None:
        self.output = output

    def start(self) -> None:
        """Forget the last film (a reader that fails on this one must not leave the last film's reading)."""
        self.anatomy = self.output = None

    def keep(self, label: LabelledImage, _reading: ImageReading) -> None:
        """Keep the film just read (counted in :attr:`skipped` when a reader failed on it)."""
        if self.anatomy is None or self.output is None:
            self.skipped += 1
            return
        probabilities = dict(self.output.probabilities)
        self.films.append(CrossFitFilm(label, self.anatomy, label.size, logits_of(probabilities, self.meta),
                                       probabilities))


__all__ = ["FilmTap"]
