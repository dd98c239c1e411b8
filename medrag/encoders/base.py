"""The encoder interface and its registry.

An image encoder turns decoded CXR pixels (2-D float32 arrays in [0, 1]) into L2-normalised
float32 vectors; a text encoder does the same for strings. An encoder with both towers (CLIP)
implements both. Factories are registered by name and built lazily from :class:`Settings`,
so no weights load until an encoder is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from medrag.registry import Registry

if TYPE_CHECKING:
    from medrag.config import Settings


@runtime_checkable
class ImageEncoder(Protocol):
    """Images → vectors. ``version`` changes whenever vectors would change (weights, fitted state)."""

    name: str
    version: str
    dim: int

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, each row L2-normalised. Inputs: 2-D float32 arrays in [0, 1]."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Texts → vectors (same contract as :class:`ImageEncoder`)."""

    name: str
    version: str
    dim: int

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, each row L2-normalised."""
        ...


@runtime_checkable
class FittableEncoder(Protocol):
    """An image encoder with state fitted on the library (e.g. PCA whitening)."""

    def fit(self, images: Sequence[np.ndarray]) -> None:
        """Fit on library images; updates ``version``."""
        ...

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run (or fitted state was loaded)."""
        ...

    def save_state(self, path: Path) -> None:
        """Persist the fitted state (the factory loads it from ``settings.models_dir``)."""
        ...

    def load_state(self, path: Path) -> None:
        """Load a state written by :meth:`save_state`."""
        ...


@dataclass(frozen=True)
class EncoderSpec:
    """A registry entry: how to build an encoder and what it needs."""

    name: str
    kind: str  # "image", "text" or "image+text"
    factory: Callable[[Settings], object]
    description: str = ""
    weight_free: bool = True


#: Built-in encoders register themselves when their module is imported, on the first lookup.
registry: Registry[EncoderSpec] = Registry(
    "encoder", [f"medrag.encoders.{module}" for module in ("classic", "text", "openclip", "xrv")]
)


def register_encoder(spec: EncoderSpec) -> None:
    """Add (or replace) an encoder factory."""
    registry.register(spec.name, spec)


def encoder_names(kind: str | None = None) -> list[str]:
    """Registered names, optionally only those whose kind includes ``kind`` ("image"/"text")."""
    return registry.names(None if kind is None else (lambda spec: kind in spec.kind))


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registry entry for ``name``; the error lists valid names."""
    return registry.get(name)


def build_encoder(name: str, settings: Settings) -> object:
    """Build the encoder called ``name`` (may load weights; raises BackendUnavailableError if missing)."""
    return get_encoder_spec(name).factory(settings)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)
