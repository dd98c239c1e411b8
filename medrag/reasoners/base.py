"""The reasoner and summariser interfaces and their registries.

A reasoner streams step-wise diagnostic reasoning as text pieces; a summariser turns any
reasoning/report text into a :class:`Summary`. Factories are registered by name and built
lazily from :class:`Settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from medrag.errors import ConfigError
from medrag.records import CXRImage, Neighbour, Summary

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


@dataclass(frozen=True)
class BackendSpec:
    """A registry entry for a reasoner or summariser backend."""

    name: str
    factory: Callable[["Settings"], object]
    description: str = ""
    offline: bool = True


_REASONERS: dict[str, BackendSpec] = {}
_SUMMARISERS: dict[str, BackendSpec] = {}


def register_reasoner(spec: BackendSpec) -> None:
    """Add (or replace) a reasoner backend."""
    _REASONERS[spec.name] = spec


def register_summariser(spec: BackendSpec) -> None:
    """Add (or replace) a summariser backend."""
    _SUMMARISERS[spec.name] = spec


def _lookup(table: dict[str, BackendSpec], name: str, what: str) -> BackendSpec:
    _load_builtins()
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"Unknown {what} {name!r}; choose one of: {', '.join(sorted(table))}.") from None


def build_reasoner(name: str, settings: "Settings") -> Reasoner:
    """Build reasoner ``name`` (raises BackendUnavailableError when its model is missing)."""
    return _lookup(_REASONERS, name, "reasoner").factory(settings)  # type: ignore[return-value]


def build_summariser(name: str, settings: "Settings") -> Summariser:
    """Build summariser ``name`` (raises BackendUnavailableError when its model is missing)."""
    return _lookup(_SUMMARISERS, name, "summariser").factory(settings)  # type: ignore[return-value]


def reasoner_names() -> list[str]:
    """Registered reasoner backends."""
    _load_builtins()
    return sorted(_REASONERS)


def summariser_names() -> list[str]:
    """Registered summariser backends."""
    _load_builtins()
    return sorted(_SUMMARISERS)


_BUILTINS_LOADED = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib

    for module in ("medrag.reasoners.evidence", "medrag.reasoners.hf", "medrag.reasoners.openai", "medrag.labels"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
