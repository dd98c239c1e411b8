"""What every ``medrag backup`` writes beside the file, for either store: the manifest, and the order in which
manifest and file reach their names (so a kill at any moment leaves no backup or a complete one)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from medrag.fsutil import fsync_dir

#: The manifest's own format version.
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, written beside it as JSON."""

    created_at: str
    source: str
    schema_version: int
    rows: dict[str, int]
    size: int
    sha256: str
    format: int = MANIFEST_FORMAT


def manifest_path(backup_file: Path) -> Path:
    """Where a backup's manifest lives: beside it, ``<name>.json``."""
    return backup_file.with_name(backup_file.name + ".json")


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to the disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def manifest_temp(target: Path) -> Path:
    """The temporary name the manifest of ``target`` is written under first."""
    sidecar = manifest_path(target)
    return sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")


def publish(tmp: Path, target: Path, manifest: Manifest) -> None:
    """Give a checked backup in ``tmp`` its name: the manifest first, the file last, so whatever exists under
    the backup's name is complete."""
    sidecar_tmp = manifest_temp(target)
    sidecar_tmp.write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
    fsync_file(sidecar_tmp)
    os.replace(sidecar_tmp, manifest_path(target))
    os.replace(tmp, target)
    fsync_dir(target.parent)


__all__ = ["MANIFEST_FORMAT", "Manifest", "fsync_file", "manifest_path", "manifest_temp", "publish"]
