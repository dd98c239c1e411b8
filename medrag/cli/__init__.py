"""The ``medrag`` command line: demo | ingest | index | analyze | search | web | history | eval | models | …

One module per command group, each with ``add_parsers(subparsers)``; :data:`COMMAND_MODULES` lists them in
the order ``medrag --help`` shows them. Everything printed goes through :mod:`medrag.cli.output`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from medrag.cli.common import DISCLAIMER
from medrag.cli.output import echo
from medrag.errors import MedRAGError

#: The command modules, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "medrag.cli.library",
    "medrag.cli.analysis",
    "medrag.cli.history",
    "medrag.cli.evaluate",
    "medrag.cli.models",
    "medrag.cli.teaching",
    "medrag.cli.auth",
    "medrag.cli.maintenance",
)
#: Command modules that may be absent from an installation (their commands are then not offered).
OPTIONAL_MODULES = frozenset({"medrag.cli.maintenance"})


def _command_modules() -> list[str]:
    return [m for m in COMMAND_MODULES if m not in OPTIONAL_MODULES or importlib.util.find_spec(m) is not None]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="medrag", description=f"Chest X-ray case workbench. {DISCLAIMER}")
    parser.add_argument("--data-dir", help="data folder (default: $MEDRAG_DATA_DIR or ./data)")
    parser.add_argument("--database-url", help="shared PostgreSQL store, postgresql://… ($MEDRAG_DATABASE_URL)")
    parser.add_argument("--image-encoder", help="classic (default), biomedclip, openclip, xrv")
    parser.add_argument("--reasoner", help="evidence (default, offline), hf, openai")
    parser.add_argument("--summariser", help="rules (default, offline), hf, openai")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _command_modules():
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medrag`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from medrag.logsetup import log_to_file

    log_to_file(Path(args.data_dir) if getattr(args, "data_dir", None) else None)
    try:
        return int(args.func(args) or 0)
    except MedRAGError as exc:
        echo(f"error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        return 130


__all__ = ["COMMAND_MODULES", "DISCLAIMER", "build_parser", "main"]
