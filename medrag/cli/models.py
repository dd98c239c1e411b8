"""``medrag models list | pull NAME | import NAME PATH``: the model weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from medrag.cli.common import Subparsers
from medrag.cli.output import echo
from medrag.errors import MedRAGError


def cmd_models(args: argparse.Namespace) -> int:
    """List, download or import model weights."""
    from medrag.config import load_settings
    from medrag.weights import import_model, list_models, pull_model

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    if args.action == "pull":
        if not args.name:
            raise MedRAGError("Name the model to pull, e.g. `medrag models pull biomedclip`.")
        echo(pull_model(args.name, settings))
        return 0
    if args.action == "import":
        if not args.name or not args.path:
            raise MedRAGError("Usage: medrag models import NAME PATH")
        echo(import_model(args.name, Path(args.path), settings))
        return 0
    for status in list_models(settings):
        echo(status)
    return 0


def add_parsers(sub: Subparsers) -> None:
    """Add ``models`` to the ``medrag`` subcommands."""
    p = sub.add_parser("models", help="model weights: list | pull NAME | import NAME PATH")
    p.add_argument("action", nargs="?", choices=["list", "pull", "import"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("path", nargs="?")
    p.set_defaults(func=cmd_models)
