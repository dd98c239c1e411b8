"""``medrag demo | ingest | index``: build the case library and its indexes."""

from __future__ import annotations

import argparse
from pathlib import Path

from medrag.cli.common import Subparsers, workbench
from medrag.cli.output import echo

#: At most this many notes and skipped items are listed (the rest are counted).
MAX_LISTED = 20


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the synthetic phantom library and import it."""
    wb = workbench(args)
    report = wb.build_demo(n=args.n, seed=args.seed, progress=True)
    echo(f"Synthetic demo library (phantoms, not real patients): {report.summary()}")
    echo(f"Library now holds {wb.store.count_cases()} cases; images in {wb.settings.demo_dir}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Import a folder / labels CSV / Open-i reports / parquet."""
    wb = workbench(args)
    report = wb.ingest(
        Path(args.path), labels_csv=Path(args.labels) if args.labels else None,
        images_dir=Path(args.images) if args.images else None, progress=True, ray_address=args.ray,
    )
    echo(report.summary())
    for note in report.notes[:MAX_LISTED]:
        echo(f"  note: {note}")
    for where, message in report.errors[:MAX_LISTED]:
        echo(f"  skipped {where}: {message}")
    if len(report.errors) > MAX_LISTED:
        echo(f"  ... and {len(report.errors) - MAX_LISTED} more skipped")
    echo(f"Library now holds {wb.store.count_cases()} cases.")
    return 0 if report.added or report.unchanged or report.duplicates or not report.errors else 1


def cmd_index(args: argparse.Namespace) -> int:
    """Embed new cases and (re)build the indexes; exit 1 when some cases could not be read into them."""
    wb = workbench(args)
    kinds = ["image", "text"] if args.kind == "all" else [args.kind]
    status = 0
    for kind in kinds:
        index = wb.ensure_index(kind, progress=True, rebuild=args.rebuild)
        encoder = wb.image_encoder if kind == "image" else wb.text_encoder
        echo(f"{kind} index: {len(index)} vectors, {index.kind}, encoder {encoder.name} {encoder.version}")
        if kind == "image" and wb.thumbnail_report is not None:
            for note in wb.thumbnail_report.notes():
                echo(f"  note: {note}")
        report = wb.embed_report(kind)
        for line in report.lines() if report is not None else []:
            echo(f"  warning: {line}", err=True)
        if report is not None and report.unreadable:
            status = 1
    return status


def add_parsers(sub: Subparsers) -> None:
    """Add ``demo``, ``ingest`` and ``index`` to the ``medrag`` subcommands."""
    p = sub.add_parser("demo", help="generate and import the synthetic phantom library")
    p.add_argument("--n", type=int, default=240, help="number of cases (default 240)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ingest", help="import a folder (+ labels CSV), Open-i reports or a parquet file")
    p.add_argument("path")
    p.add_argument("--labels", help="labels CSV (image, label, report, patient_id, view, ...)")
    p.add_argument("--images", help="images folder for Open-i XML reports")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="spread decoding, thumbnails and features over a Ray cluster: alone, one started on this "
                        "machine; with ADDRESS, a running cluster (workers must see the files and the data folder)")
    p.add_argument("--ray-gpus", type=float, default=None, metavar="SHARE",
                   help="with --ray: the share of a GPU each worker asks for (0.25 = four workers per GPU), so "
                        "Ray runs the encoders and readers on the cluster's GPUs (MEDRAG_RAY_GPUS)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("index", help="embed new cases and build the indexes")
    p.add_argument("--kind", choices=["image", "text", "all"], default="all")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything and rebuild from scratch")
    p.set_defaults(func=cmd_index)
