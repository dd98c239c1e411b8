"""The reasoner and summariser interfaces and their registries.

A reasoner streams step-wise diagnostic reasoning as text pieces; a summariser turns any
reasoning/report text into a :class:`Summary`. Factories are registered by name (one
:class:`~medrag.registry.Registry` each; the built-in backends register themselves when the registry
first imports their modules) and built lazily from :class:`Settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

from medrag.reading.base import ImageReading
from medrag.records import CXRImage, Neighbour, Summary
from medrag.registry import Registry

if TYPE_CHECKING:
    from medrag.config import Settings

#: Section headings every reasoner should produce, in order.
SECTIONS: tuple[str, ...] = (
    "Technical assessment",
    "Lungs",
    "Pleura",
    "Heart and mediastinum",
    "Bones and devices",
    "Similar-case evidence",
    "Impression",
)


@dataclass(frozen=True)
class ReasoningRequest:
    """What a reasoner gets: the image (if any), the question (if any), neighbours, measurements."""

    image: CXRImage | None = None
    question: str = ""
    neighbours: tuple[Neighbour, ...] = ()
    measurements: dict[str, float] = field(default_factory=dict)
    #: what the image readers saw (None for a text question or when no reader ran)
    reading: ImageReading | None = None


@runtime_checkable
class Reasoner(Protocol):
    """Streams reasoning text. ``name`` is the backend, ``model`` the model id that ran."""

    name: str
    model: str

    def stream(self, request: ReasoningRequest) -> Iterator[str]:
        """Yield pieces of text; their concatenation is the full reasoning."""
        ...


@runtime_checkable
class Summariser(Protocol):
    """Condenses reasoning or report text into a label and findings."""

    name: str
    model: str

    def summarise(self, text: str) -> Summary:
        """A one-line label and CheXpert-style findings."""
        ...


#: what a spec's factory builds (a Reasoner or a Summariser)
B = TypeVar("B")


@dataclass(frozen=True)
class BackendSpec(Generic[B]):
    """A registry entry for a reasoner or summariser backend."""

    name: str
    factory: Callable[[Settings], B]
    description: str = ""
    offline: bool = True


_REASONERS: Registry[BackendSpec[Reasoner]] = Registry(
    "reasoner", ("medrag.reasoners.evidence", "medrag.reasoners.hf", "medrag.reasoners.openai")
)
_SUMMARISERS: Registry[BackendSpec[Summariser]] = Registry(
    "summariser", ("medrag.reasoners.rules", "medrag.reasoners.hf", "medrag.reasoners.openai")
)


def register_reasoner(spec: BackendSpec[Reasoner]) -> None:
    """Add (or replace) a reasoner backend."""
    _REASONERS.register(spec.name, spec)


def register_summariser(spec: BackendSpec[Summariser]) -> None:
    """Add (or replace) a summariser backend."""
    _SUMMARISERS.register(spec.name, spec)


def build_reasoner(name: str, settings: Settings) -> Reasoner:
    """Build reasoner ``name`` (BackendUnavailableError when its model is missing).

    An unknown name raises :class:`ConfigError` listing the registered ones.
    """
    return _REASONERS.get(name).factory(settings)


def build_summariser(name: str, settings: Settings) -> Summariser:
    """Build summariser ``name`` (BackendUnavailableError when its model is missing).

    An unknown name raises :class:`ConfigError` listing the registered ones.
    """
    return _SUMMARISERS.get(name).factory(settings)


def reasoner_names() -> list[str]:
    """Registered reasoner backends, sorted."""
    return _REASONERS.names()


def summariser_names() -> list[str]:
    """Registered summariser backends, sorted."""
    return _SUMMARISERS.names()
