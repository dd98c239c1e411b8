"""The small interface :func:`medrag.pipeline.analyze` needs from an engine (the Workbench is one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from medrag.config import Settings
from medrag.reading.base import ImageReading
from medrag.reasoners import Reasoner, Summariser
from medrag.records import Case, CXRImage, Neighbour

if TYPE_CHECKING:
    from medrag.analysis import Analysis


class AnalysisEngine(Protocol):
    """What one analysis uses: backends, search, the web cache and the history."""

    settings: Settings

    @property
    def text_encoder(self) -> Any:
        """The text encoder the domain guard embeds questions with."""
        ...

    @property
    def reasoner(self) -> Reasoner:
        """The reasoning backend that will run."""
        ...

    @property
    def summariser(self) -> Summariser:
        """The summariser backend that will run."""
        ...

    @property
    def image_encoder_name(self) -> str:
        """The name of the image encoder searches use."""
        ...

    @property
    def text_encoder_name(self) -> str:
        """The name of the text encoder text searches use."""
        ...

    @property
    def web_cache(self) -> Any:
        """Where web results are cached (``get(key)`` / ``put(key, provider, results)``), or None."""
        ...

    def check_location(self) -> None:
        """Raise a StoreError when the data folder moved away under the running process."""
        ...

    def read_image(self, image: CXRImage) -> ImageReading | None:
        """What the configured image readers see (None when none is configured)."""
        ...

    def embed_image(self, image: CXRImage | np.ndarray) -> np.ndarray:
        """The query vector of an image."""
        ...

    def embed_question(self, text: str) -> tuple[str, np.ndarray]:
        """(index kind, vector) of a text query."""
        ...

    def search_vector(
        self, kind: str, vector: np.ndarray, k: int | None = None, *, label: str | None = None,
        dataset: str | None = None, exclude: set[str] | None = None,
    ) -> list[Neighbour]:
        """The k nearest library cases."""
        ...

    def library_case(self, case_id: str) -> Case | None:
        """The library case with this id (a case's id is its pixels' hash), None when the library has none."""
        ...

    def save_analysis(self, analysis: Analysis) -> int:
        """Append the analysis to the history; returns its id."""
        ...


__all__ = ["AnalysisEngine"]
