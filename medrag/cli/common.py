"""What several ``medrag`` commands share: the disclaimer, the workbench from the global options, neighbour rows."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medrag.cli.output import clean, echo

if TYPE_CHECKING:
    from medrag.records import Neighbour
    from medrag.workbench import Workbench

DISCLAIMER = "MedRAG is for education and research only - not for clinical use."


def workbench(args: argparse.Namespace) -> Workbench:
    """The :class:`~medrag.workbench.Workbench` for the global options (``--data-dir``, encoders, backends)."""
    from medrag.config import load_settings
    from medrag.workbench import Workbench

    overrides = {
        "data_dir": Path(args.data_dir) if args.data_dir else None,
        "database_url": getattr(args, "database_url", None),
        "image_encoder": args.image_encoder,
        "reasoner": args.reasoner,
        "summariser": args.summariser,
        "k": getattr(args, "k", None),
        "ray_gpus": getattr(args, "ray_gpus", None),
    }
    return Workbench(load_settings(**overrides))


def print_neighbours(neighbours: Sequence[Neighbour]) -> None:
    """One line per similar case: rank, score, label, dataset, id and the start of its report."""
    if not neighbours:
        echo("  (no similar cases)")
    for n in neighbours:
        synthetic = " [synthetic]" if n.synthetic else ""
        snippet = clean(" ".join(n.report.split()))[:90]
        label, dataset = clean(n.label), clean(n.dataset)
        echo(f"  #{n.rank}  {n.score:6.3f}  {label:<28} {dataset:<10}{synthetic}  {clean(n.case_id)[:12]}  {snippet}")


#: What ``add_parser`` is called on: the ``medrag`` subcommands (each command module's ``add_parsers(sub)``).
Subparsers = argparse._SubParsersAction  # the stdlib's own name for it; there is no public alias
