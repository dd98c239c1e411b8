"""``medrag history``: list (a page, read in SQL), show one, or export past analyses."""

from __future__ import annotations

import argparse

from medrag.cli.common import Subparsers, workbench
from medrag.cli.output import block, clean, echo
from medrag.errors import MedRAGError

#: Rows listed when no ``--limit`` is given (an export writes every row unless a limit is given).
LIST_ROWS = 20
#: The columns a listing reads (light ones only: never the reasoning text or the neighbours JSON).
LIST_COLUMNS = (
    "id", "created_at", "input_kind", "input_name", "question", "label", "reasoner_backend", "total_seconds",
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _show(args: argparse.Namespace) -> int:
    wb = workbench(args)
    analysis = wb.store.get_analysis(args.show)
    if analysis is None:
        raise MedRAGError(f"No analysis #{args.show}; run `medrag history` to list them.")
    what = analysis.input_name or analysis.question[:60]
    echo(f"#{analysis.analysis_id} {analysis.created_at} {analysis.input_kind} {what}")
    echo(f"Label: {analysis.label}   backend: {analysis.reasoner_backend} / {analysis.reasoner_model}")
    for note in analysis.all_notes:
        echo(f"  note: {note}")
    for stage, message in analysis.failures.items():
        echo(f"  [{stage} failed] {message}")
    block(analysis.reasoning or "(no reasoning)", indent="  ")
    echo("Neighbours: " + ", ".join(f"{n.label} ({n.score:.2f})" for n in analysis.neighbours))
    return 0


def _export(args: argparse.Namespace) -> int:
    from medrag.export import export_history

    wb = workbench(args)
    result = export_history(
        wb.store, args.export, limit=args.limit, force=args.force, search=args.search,
        protected=[wb.settings.data_dir],
    )
    echo(f"Wrote {result.rows} analyses to {result.path} ({result.format}, {result.bytes:,} bytes)")
    return 0


def _list(args: argparse.Namespace) -> int:
    wb = workbench(args)
    limit = args.limit or LIST_ROWS
    with wb.store.session():
        frame = wb.store.history_page(args.offset, limit, search=args.search, columns=LIST_COLUMNS)
        total = wb.store.count_history(args.search) if len(frame) == limit or args.offset else len(frame)
    if frame.empty:
        if args.offset and total:
            echo(f"No analyses after the newest {args.offset} (there are {total}).")
        elif args.search:
            echo(f"No analyses match {args.search!r}.")
        else:
            echo("No analyses yet: run `medrag analyze IMAGE`.")
        return 0
    for row in frame.to_dict("records"):
        what = clean(row["input_name"] or (row["question"] or "")[:50])
        label = clean(row["label"] or "")
        echo(
            f"#{row['id']:<5} {str(row['created_at'])[:19]}  {clean(row['input_kind']):<5} {what[:40]:<40} "
            f"{label[:40]:<40} {clean(row['reasoner_backend'] or '')}  {float(row['total_seconds'] or 0):.2f}s"
        )
    if total > len(frame):
        first, last = args.offset + 1, args.offset + len(frame)
        echo(f"({first}-{last} of {total}; --offset {last} for more, --search TEXT to narrow)")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """List, show or export past analyses."""
    if args.show is not None:
        return _show(args)
    if args.export:
        return _export(args)
    return _list(args)


def add_parsers(sub: Subparsers) -> None:
    """Add ``history`` to the ``medrag`` subcommands."""
    p = sub.add_parser("history", help="past analyses: list, --show ID, --export FILE")
    p.add_argument(
        "--limit", type=_positive, default=None,
        help=f"list: rows to show (default {LIST_ROWS}); export: only the newest N (default: all)",
    )
    p.add_argument("--offset", type=_not_negative, default=0, help="list: skip the newest N rows")
    p.add_argument("--search", help="only rows whose label, file name, question, notes or tags contain this")
    p.add_argument("--show", type=int, help="show one analysis by id")
    p.add_argument(
        "--export", metavar="FILE",
        help="write the history to FILE.csv or FILE.parquet (never inside the data folder)",
    )
    p.add_argument("--force", action="store_true", help="export: replace FILE if it exists")
    p.set_defaults(func=cmd_history)
