"""XML documents from a folder, one file or a tar archive, read with size limits.

A small ``.tgz`` can hold a member that inflates to gigabytes: members are read one at a time from the
compressed stream (tarfile's streaming mode, never the whole archive), each member's declared size is
checked before a byte of it is decompressed, and the total of the declared sizes and the number of
members are capped too. A file that is over a limit ends the read with a :class:`LibraryError` naming it.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from medrag.errors import LibraryError
from medrag.textsafe import printable

#: Largest XML document read (an Open-i report is a few KiB; the whole NLMCXR set is about 30 MiB).
MAX_XML_MEMBER_BYTES = 64 * 2**20
#: Largest total of the member sizes an archive may declare (everything in it, XML or not).
MAX_ARCHIVE_TOTAL_BYTES = 2 * 2**30
#: Most members an archive may hold (NLMCXR_reports.tgz has 3,955).
MAX_ARCHIVE_MEMBERS = 200_000


def human_size(size: int) -> str:
    """``size`` bytes as ``"4.0 GiB"``, ``"64 MiB"``, ``"12 KiB"`` or ``"17 bytes"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 and value != int(value) else f"{value:.0f} {unit}"
    return f"{size} bytes"


def _shown(name: str) -> str:
    return repr(printable(name, keep_newlines=False)[:200])


def _too_large(what: str, size: int, limit: int) -> LibraryError:
    shown = human_size(size)
    if shown == human_size(limit):
        shown += f" ({size:,} bytes)"
    return LibraryError(
        f"{what} is {shown}, over the {human_size(limit)} limit for one XML document; "
        "an Open-i report is a few KiB: check that this is the reports archive (NLMCXR_reports.tgz)."
    )


def iter_xml_documents(
    path: Path,
    *,
    max_member_bytes: int | None = None,
    max_total_bytes: int | None = None,
    max_members: int | None = None,
) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every ``*.xml`` in a folder (recursively), of one XML file, or in a tar archive
    (plain, gzip, bzip2 or xz).

    The limits default to :data:`MAX_XML_MEMBER_BYTES`, :data:`MAX_ARCHIVE_TOTAL_BYTES` and
    :data:`MAX_ARCHIVE_MEMBERS` (read at call time). Raises :class:`LibraryError` for an unreadable
    archive and for the first file or member over a limit, before reading it.
    """
    member_cap = MAX_XML_MEMBER_BYTES if max_member_bytes is None else max_member_bytes
    total_cap = MAX_ARCHIVE_TOTAL_BYTES if max_total_bytes is None else max_total_bytes
    count_cap = MAX_ARCHIVE_MEMBERS if max_members is None else max_members
    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            if file.is_file():
                yield str(file), _read_file(file, member_cap)
        return
    if path.suffix.lower() == ".xml":
        yield str(path), _read_file(path, member_cap)
        return
    yield from _iter_tar(path, member_cap, total_cap, count_cap)


def _read_file(file: Path, cap: int) -> bytes:
    size = file.stat().st_size
    if size > cap:
        raise _too_large(f"the file {_shown(str(file))}", size, cap)
    with file.open("rb") as handle:
        # One byte more than the stat said (the file may have grown since); not cap + 1, as a buffered
        # read allocates all it is asked for before reading.
        data = handle.read(size + 1)
    if len(data) > max(size, cap):
        raise _too_large(f"the file {_shown(str(file))}", len(data), cap)
    return data


def _iter_tar(path: Path, member_cap: int, total_cap: int, count_cap: int) -> Iterator[tuple[str, bytes]]:
    total = 0
    try:
        # "r|*": a forward-only stream, so memory holds one member at most, whatever the archive's size.
        with tarfile.open(path, "r|*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > count_cap:
                    raise LibraryError(
                        f"{path} holds more than {count_cap:,} members; an Open-i reports archive has a few "
                        "thousand: check that this is NLMCXR_reports.tgz."
                    )
                total += max(member.size, 0)
                if total > total_cap:
                    raise LibraryError(
                        f"{path} unpacks to more than {human_size(total_cap)} (at the member "
                        f"{_shown(member.name)}); an Open-i reports archive is about 30 MiB: check that this "
                        "is NLMCXR_reports.tgz."
                    )
                if not (member.isfile() and member.name.lower().endswith(".xml")):
                    continue
                if member.size > member_cap:
                    raise _too_large(f"the archive member {_shown(member.name)}", member.size, member_cap)
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                # Exactly the declared size: a buffered read allocates all it is asked for up front.
                yield member.name, handle.read(member.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise LibraryError(
            f"Cannot read Open-i reports from {path} ({exc}); pass the NLMCXR_reports.tgz, a folder of XML or one XML."
        ) from exc


__all__ = [
    "MAX_ARCHIVE_MEMBERS",
    "MAX_ARCHIVE_TOTAL_BYTES",
    "MAX_XML_MEMBER_BYTES",
    "human_size",
    "iter_xml_documents",
]
