"""``medrag backup | restore | repair``: keep a verified copy of the database, put one back, salvage a damaged one."""

from __future__ import annotations

import argparse
from pathlib import Path

from medrag.cli.common import Subparsers
from medrag.cli.output import echo
from medrag.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    from medrag.config import load_settings

    return load_settings(data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None)


def _rows(rows: dict[str, int]) -> str:
    shown = {t: n for t, n in rows.items() if n or t in ("cases", "analyses")}
    return ", ".join(f"{n:,} {t}" for t, n in shown.items() if t != "meta")


def cmd_backup(args: argparse.Namespace) -> int:
    """Write a verified copy of the database (default ``<data>/backups/medrag-<time>.duckdb``)."""
    from medrag.backup import backup, manifest_path

    target, manifest = backup(_settings(args), Path(args.path) if args.path else None, force=args.force)
    echo(f"Backed up {_rows(manifest.rows)} to {target} ({manifest.size:,} bytes, checked).")
    echo(f"Manifest: {manifest_path(target)} (sha256 {manifest.sha256[:16]}…); restore with `medrag restore {target}`.")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Put a backup made by ``medrag backup`` in place of the database (the current one is kept aside)."""
    from medrag.backup import restore

    manifest, aside = restore(_settings(args), Path(args.path))
    echo(f"Restored {_rows(manifest.rows)} from {args.path} (made {manifest.created_at}).")
    if aside is not None:
        echo(f"The database it replaced is kept as {aside}.")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Salvage what is readable of a damaged database into a new one; exit 1 when rows were lost."""
    from medrag.repair import repair

    settings = _settings(args)
    report = repair(settings, force=args.force)
    if not report.damaged:
        echo(f"{settings.db_path} reads in full: nothing to repair (pass --force to rewrite it anyway).")
        return 0
    if report.patched:
        echo(f"To read it: {report.patched}.")
    for table, (found, kept) in report.tables.items():
        if found is None:
            echo(f"  {table}: {kept:,} rows kept (how many it had is unreadable)")
        elif found or kept:
            lost = f", {found - kept:,} lost" if found > kept else ""
            echo(f"  {table}: {kept:,} of {found:,} rows kept{lost}")
    for table, (n, columns) in report.partial.items():
        echo(f"  {table}: {n:,} of those rows kept without their {', '.join(columns)} (unreadable)")
    for table, n in report.orphans.items():
        echo(f"  {table}: {n:,} rows dropped (their case was lost)")
    echo(f"The repaired database is {settings.db_path}; the damaged file is kept as {report.aside}.")
    if report.lost or report.partial or not report.tables:
        echo(
            "Some rows were lost: `medrag ingest FOLDER` brings lost cases back from their images, "
            "and `medrag index` re-embeds them."
        )
        return 1
    return 0


def add_parsers(sub: Subparsers) -> None:
    """Add ``backup``, ``restore`` and ``repair`` to the ``medrag`` subcommands."""
    p = sub.add_parser("backup", help="write a checked copy of the database (safe while the app runs)")
    p.add_argument("path", nargs="?", help="backup file (default: <data>/backups/medrag-<time>.duckdb)")
    p.add_argument("--force", action="store_true", help="replace an existing file of that name")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="put back a backup made by `medrag backup` (the current one is kept aside)")
    p.add_argument("path", help="the backup file (its .json manifest must be beside it)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("repair", help="salvage a damaged database into a new one (exit 1 when rows were lost)")
    p.add_argument("--force", action="store_true", help="rewrite the database even when it reads in full")
    p.set_defaults(func=cmd_repair)


__all__ = ["add_parsers", "cmd_backup", "cmd_repair", "cmd_restore"]
