"""Reading a zip someone else made (a colleague's lesson set, an upload in the browser) with limits.

A member's name must be a plain relative path (no ``..``, no absolute path, no drive, no control
characters); links and folders are skipped; the number of members, each member's size and the total are
capped *before* anything is decompressed, and each read stops at the size the member declared, so a
small zip that inflates to gigabytes is refused instead of filling the disk.
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from medrag.errors import InputError
from medrag.fsutil import atomic_write
from medrag.textsafe import printable

#: Most members one zip may hold.
MAX_MEMBERS = 5_000
#: Largest single member (a chest X-ray PNG is well under this; a 16-bit DICOM can be ~50 MiB).
MAX_MEMBER_BYTES = 128 * 2**20
#: Largest total the members may declare.
MAX_TOTAL_BYTES = 4 * 2**30


@dataclass
class Extracted:
    """What :func:`extract_zip` wrote, and what it left out (name, why)."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _shown(name: str) -> str:
    return repr(printable(name, keep_newlines=False)[:120])


def safe_name(name: str) -> PurePosixPath | None:
    """The member name as a safe relative path, or None when it is not one (``..``, absolute, odd characters)."""
    text = name.replace("\\", "/")
    if not text or text.startswith("/") or printable(text, keep_newlines=False) != text or ":" in text.split("/")[0]:
        return None
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def _open(source: bytes | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(
            f"This is not a readable zip file ({exc}); export it again or upload the images one by one."
        ) from exc


def members(archive: zipfile.ZipFile) -> list[tuple[PurePosixPath, zipfile.ZipInfo]]:
    """The regular-file members with safe names, after checking the count and the declared sizes."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"The zip holds {len(infos):,} members, more than the {MAX_MEMBERS:,} MedRAG reads; split it.")
    total = sum(max(i.file_size, 0) for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise InputError(
            f"The zip unpacks to {total / 2**30:.1f} GiB, over the {MAX_TOTAL_BYTES // 2**30} GiB limit; split it."
        )
    out = []
    for info in infos:
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_ISLNK(mode):
            continue
        name = safe_name(info.filename)
        if name is None:
            raise InputError(
                f"The zip member {_shown(info.filename)} has an unsafe name (an absolute path or '..'); "
                "it was not made by MedRAG: re-create the zip."
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise InputError(
                f"The zip member {_shown(info.filename)} is {info.file_size / 2**20:.0f} MiB, over the "
                f"{MAX_MEMBER_BYTES // 2**20} MiB limit for one file."
            )
        out.append((name, info))
    return out


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes: at most its declared size (which :func:`members` has checked)."""
    try:
        with archive.open(info) as handle:
            data = handle.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise InputError(f"The zip member {_shown(info.filename)} cannot be read ({exc}); the zip is damaged.") from exc
    if len(data) > info.file_size:
        raise InputError(f"The zip member {_shown(info.filename)} is larger than it declares; the zip is damaged.")
    return data


def read_zip(source: bytes | Path) -> dict[str, bytes]:
    """Every regular member of a (small) zip by its safe name: for a lesson-set bundle."""
    with _open(source) as archive:
        return {str(name): read_member(archive, info) for name, info in members(archive)}


def extract_zip(source: bytes | Path, target: Path, suffixes: tuple[str, ...]) -> Extracted:
    """Write the members whose names end in ``suffixes`` under ``target`` (keeping their folders)."""
    result = Extracted()
    with _open(source) as archive:
        for name, info in members(archive):
            if name.parts[0] == "__MACOSX" or name.name.startswith("._"):
                continue  # macOS resource forks, not images
            if not name.name.lower().endswith(suffixes):
                result.skipped.append((str(name), "not an image or a labels CSV"))
                continue
            path = target.joinpath(*name.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, read_member(archive, info), durable=False)
            result.files.append(path)
    return result


__all__ = [
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_TOTAL_BYTES",
    "Extracted",
    "extract_zip",
    "members",
    "read_member",
    "read_zip",
    "safe_name",
]
