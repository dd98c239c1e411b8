"""Sizes and fingerprints of weight files (what ``medrag models list`` shows and encoder versions carry)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def directory_size(path: Path) -> int:
    """Bytes on disk under ``path`` (symlinks followed, each file counted once)."""
    if path.is_file():
        return path.stat().st_size
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for fname in files:
            try:
                st = (Path(root) / fname).stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def file_fingerprint(path: Path) -> str:
    """``sha256[:16]-size`` of a weights file, cached per (path, size, mtime) for this process.

    Files in the HF cache are symlinks to blobs named by their sha256, which is used without rehashing.
    """
    real = path.resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        if len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
            digest = real.name
        else:
            with real.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        _FINGERPRINTS[key] = f"{digest[:16]}-{st.st_size}"
    return _FINGERPRINTS[key]


__all__ = ["directory_size", "file_fingerprint"]
