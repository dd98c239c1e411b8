"""The MedRAG exception tree.

Every message says what went wrong *and what to do next*. Callers (CLI, app) show
``str(error)`` to the user; they never show a traceback for a ``MedRAGError``.
"""

from __future__ import annotations


class MedRAGError(Exception):
    """Base class of every error MedRAG raises on purpose."""


class ConfigError(MedRAGError):
    """A setting, path or backend name is wrong."""


class InputError(MedRAGError):
    """Something the user gave us (file, text, CSV) cannot be used."""


class ImageError(InputError):
    """An image file cannot be read as a chest X-ray."""


class NotAnImageError(ImageError):
    """The bytes are not an image format MedRAG reads (PNG, JPEG, DICOM, ...)."""


class TruncatedImageError(ImageError):
    """The file is cut short or corrupt."""


class EmptyInputError(InputError):
    """The file or text is empty."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than MedRAG accepts (decompression-bomb guard)."""


class UnsupportedImageError(ImageError):
    """A readable image that MedRAG does not support (multi-frame, no pixel data, codec missing...)."""


class LibraryError(MedRAGError):
    """The case library or an import (folder, CSV, XML, parquet) has a problem."""


class IndexMismatchError(MedRAGError):
    """A saved index was built with another encoder or is out of date; re-index."""


class StoreError(MedRAGError):
    """The DuckDB store cannot be used."""


class StoreLockedError(StoreError):
    """Another process holds the database and did not release it in time."""


class StoreDamagedError(StoreError):
    """The database file is damaged (truncated, overwritten blocks): restore a backup or run ``medrag repair``."""


class StoreMovedError(StoreError):
    """The database file was moved, deleted or replaced while this process was using it: restart."""


class DiskFullError(StoreError):
    """The disk holding the data folder is full; nothing was written, free space and run again."""


class BackupError(StoreError):
    """A backup cannot be made, or a file is not a complete backup that can be restored."""


class BackendUnavailableError(MedRAGError):
    """A model backend (weights, server, package) is not available here."""


class WebSearchError(MedRAGError):
    """A web-search provider failed or is not configured."""


class PermissionDeniedError(MedRAGError):
    """A learner asked for something only the educator may do (delete, edit, see others' answers)."""


class GuardRefusal(MedRAGError):
    """The domain guard refused a request (not a medical-imaging question / not a chest X-ray)."""
