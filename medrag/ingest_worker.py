"""The per-image half of an import, run in worker processes: decode, thumbnail, encoder features.

Kept apart from :mod:`medrag.library` so that a spawned worker imports only what it needs (imaging, the
weight-free encoder): the library module pulls in the store, hence DuckDB and pandas, which would add
about 0.25 s of CPU to every worker's start on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeGuard

import numpy as np

from medrag.config import Settings
from medrag.errors import LibraryError, MedRAGError
from medrag.records import Case


@dataclass(frozen=True)
class IngestItem:
    """One image to import, with its metadata. Either ``path`` or ``data`` is set."""

    source_key: str
    label: str
    dataset: str
    path: Path | None = None
    data: bytes | None = None
    report: str = ""
    patient_id: str = ""
    view: str = ""
    synthetic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    mtime_ns: int = 0
    #: the folder name an earlier import may have stored as this file's label, where a labels CSV now gives
    #: another (such a case is relabelled: :meth:`medrag.store.Store.correct_folder_labels`)
    replaces_label: str = ""

    def content(self) -> Path | bytes:
        """The file to decode, else the bytes given in its place."""
        if self.path is not None:
            return self.path
        if self.data is not None:
            return self.data
        raise LibraryError(f"{self.source_key}: the import gave neither a file nor its bytes; re-run the import.")


@dataclass
class PreparedImage:
    """What a worker sends back for one item: the case to store, or why it could not be read."""

    item: IngestItem
    case: Case | None = None
    size: tuple[int, int] = (0, 0)
    #: the encoder's raw features (two-stage encoders) or its final vector
    vector: np.ndarray | None = None
    error: str = ""


_WORKER: dict[str, Any] = {}


def import_encoder(settings: Settings) -> Any:
    """The library's image encoder when it is weight-free (cheap enough to run during import), else None."""
    from medrag.encoders import build_encoder, get_encoder_spec

    if not get_encoder_spec(settings.image_encoder).weight_free:
        return None
    return build_encoder(settings.image_encoder, settings)


class TwoStageEncoder(Protocol):
    """An encoder whose costly ``features`` need no fit and whose cheap ``project`` is fitted on the library."""

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`project` is fitted yet."""
        ...

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Unfitted features of ``images``, one row each."""
        ...

    def project(self, features: np.ndarray) -> np.ndarray:
        """The library vectors of rows made by :meth:`features`."""
        ...


def is_two_stage(encoder: Any) -> TypeGuard[TwoStageEncoder]:
    """Encoders with ``features`` + ``project`` let workers do the costly part before any fit."""
    return encoder is not None and hasattr(encoder, "features") and hasattr(encoder, "project")


def init_worker(settings: Settings, embed: bool, encoder: Any = None) -> None:
    """Set this process up to prepare images: ``encoder`` if given, else build one when ``embed``."""
    _WORKER["settings"] = settings
    _WORKER["encoder"] = encoder if encoder is not None else (import_encoder(settings) if embed else None)


def prepare(item: IngestItem) -> PreparedImage:
    """Decode ``item`` once, write its thumbnail, compute its encoder features; errors are returned, not raised."""
    from medrag.imaging import load_image, save_thumbnail

    settings: Settings = _WORKER["settings"]
    try:
        image = load_image(item.content(), name=item.source_key)
        thumb = save_thumbnail(image, settings.thumbs_dir)
        image_path = str(item.path) if item.path is not None else str(store_original(settings, image))
        meta = {k: image.meta[k] for k in ("format", "bit_depth", "converted_from_rgb", "warnings") if k in image.meta}
        case = Case(
            case_id=image.pixel_hash, label=item.label.strip() or "unlabelled", dataset=item.dataset,
            image_path=image_path, thumb_path=str(thumb), report=item.report, patient_id=item.patient_id,
            view=item.view, synthetic=item.synthetic, extra={**item.extra, "image_meta": meta},
        )
        encoder = _WORKER.get("encoder")
        vector = None
        if is_two_stage(encoder):
            vector = encoder.features([image.pixels])[0]
        elif encoder is not None and getattr(encoder, "is_fitted", True):
            vector = encoder.embed([image.pixels])[0]
        return PreparedImage(item=item, case=case, size=(image.shape[1], image.shape[0]), vector=vector)
    except MedRAGError as exc:
        return PreparedImage(item=item, error=str(exc))
    except Exception as exc:  # one broken file must not end a long import
        return PreparedImage(item=item, error=f"unexpected {type(exc).__name__}: {exc}")


def store_original(settings: Settings, image: Any) -> Path:
    """Content-addressed PNG copy for images that have no file of their own (parquet cells, uploads)."""
    from medrag.imaging import store_original as write_original

    return write_original(image, settings.data_dir / "images")
