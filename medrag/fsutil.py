"""Atomic and content-addressed file writes: the one place that writes a file so a kill never tears it.

Every writer here uses a unique temp file in the target's folder and ``os.replace``: a reader sees the old
file or the new one, never half of either. ``durable`` adds an fsync of the file (and of the folder after
the rename) so the bytes also survive a power loss, not only a killed process.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    """fsync a folder so a rename inside it is durable (a no-op where the OS does not allow it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(target: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file handle whose contents replace ``target`` only when the block ends without error.

    On any error (a full disk, a kill signal's KeyboardInterrupt) the temp file is removed and ``target`` is
    untouched.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write(target: Path, payload: bytes, *, durable: bool = True) -> None:
    """Write ``payload`` to ``target`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(target, durable=durable) as handle:
        handle.write(payload)


def atomic_write_text(target: Path, text: str, *, durable: bool = True) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    atomic_write(target, text.encode("utf-8"), durable=durable)


def content_path(folder: Path, digest: str, suffix: str) -> Path:
    """Where a content-addressed file lives: ``<folder>/<digest[:2]>/<digest><suffix>``."""
    return Path(folder) / digest[:2] / f"{digest}{suffix}"


def write_content_addressed(
    folder: Path, digest: str, suffix: str, encode: Callable[[], bytes], *, durable: bool = False
) -> Path:
    """Write ``encode()`` once under its digest and return the path; an existing file is never rewritten.

    ``encode`` is only called when the file is missing, so a cache hit costs one ``stat``. Not durable by
    default: content-addressed files (thumbnails, uploads) can always be made again from their source.
    """
    target = content_path(folder, digest, suffix)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, encode(), durable=durable)
    return target


__all__ = ["atomic_write", "atomic_write_text", "atomic_writer", "content_path", "fsync_dir", "write_content_addressed"]


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
