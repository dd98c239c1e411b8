"""Keeps the library's thumbnails in step with its cases: any that went missing are made again from the image.

Thumbnails are content-addressed copies (``<data>/thumbs/<hash[:2]>/<hash>.jpg``) that can always be
re-made from the case's source image, so a deleted one is never a loss: ``ingest`` (even of unchanged
files), ``demo`` and ``index --rebuild`` call :func:`restore_missing_thumbnails`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from medrag.config import Settings
from medrag.errors import MedRAGError

#: At most this many cases are named in a note (the rest are counted).
NAMED_CASES = 10


@dataclass
class ThumbnailReport:
    """What :func:`restore_missing_thumbnails` did."""

    #: thumbnails written again from their source image
    restored: int = 0
    #: "case id (image path)" of cases whose thumbnail is missing and whose image cannot be read either
    lost: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Lines for an import report (none when nothing was missing)."""
        found = []
        if self.restored:
            found.append(f"re-created {self.restored} missing thumbnails from their images")
        if self.lost:
            more = f" and {len(self.lost) - NAMED_CASES} more" if len(self.lost) > NAMED_CASES else ""
            found.append(
                f"{len(self.lost)} cases have lost their thumbnail and their image cannot be read: "
                f"{', '.join(self.lost[:NAMED_CASES])}{more}; put the images back or re-import them"
            )
        return found


class CaseFiles(Protocol):
    """What :func:`restore_missing_thumbnails` needs of a store (the DuckDB and the PostgreSQL one alike)."""

    def case_files(self) -> list[tuple[str, str, str]]:
        """(case_id, image path, thumbnail path) of every case, paths absolute."""
        ...

    def set_thumb_paths(self, thumbs: Mapping[str, str]) -> None:
        """Point cases (case_id → thumbnail path) at re-created thumbnails."""
        ...


def restore_missing_thumbnails(store: CaseFiles, settings: Settings) -> ThumbnailReport:
    """Re-create every case's missing thumbnail from its source image; returns how many, and which could not be."""
    from medrag.imaging import load_image, save_thumbnail

    report = ThumbnailReport()
    moved: dict[str, str] = {}
    for case_id, image_path, thumb_path in store.case_files():
        if thumb_path and os.path.isfile(thumb_path):
            continue
        try:
            image = load_image(Path(image_path)) if image_path else None
        except (MedRAGError, OSError):
            image = None
        # A source whose pixels changed since the import is not this case's image any more.
        if image is None or image.pixel_hash != case_id:
            report.lost.append(f"{case_id[:12]} ({image_path or 'no image path'})")
            continue
        made = str(save_thumbnail(image, settings.thumbs_dir))
        report.restored += 1
        if made != thumb_path:
            moved[case_id] = made
    store.set_thumb_paths(moved)
    return report


__all__ = ["CaseFiles", "ThumbnailReport", "restore_missing_thumbnails"]
