"""``medrag eval retrieval | labeler | reading``: retrieval (leave-one-patient-out), labeler or reading quality."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medrag.cli.common import Subparsers, workbench
from medrag.cli.output import blank, echo, lines
from medrag.errors import MedRAGError
from medrag.textsafe import one_line


def cmd_eval(args: argparse.Namespace) -> int:
    """Measure retrieval (leave-one-patient-out) or labeler quality."""
    if args.what == "reading":
        from medrag.cli.reading import eval_reading

        payload: dict[str, Any] = eval_reading(args)
    elif args.what == "labeler":
        from medrag.evaluation.labeler import evaluate_labeler

        report = evaluate_labeler(Path(args.reports) if args.reports else None, limit=args.limit)
        lines(report.to_table())
        payload = report.to_dict()
    else:
        payload = _eval_retrieval(args)
    if args.json:
        from medrag.fsutil import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(payload, indent=2))
        echo(f"Wrote {args.json}")
    return 0


def _eval_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    from medrag.encoders import encoder_names
    from medrag.evaluation.retrieval import leave_one_patient_out
    from medrag.workbench import Workbench

    base = workbench(args)
    frame = base.store.cases_frame(dataset=args.dataset)
    if args.labels:
        frame = frame[frame["label"].isin([s.strip() for s in args.labels.split(",")])]
    if frame.empty:
        raise MedRAGError("No labelled cases to evaluate; import a library first (medrag ingest / medrag demo).")
    names = args.encoder or list(encoder_names("image"))
    results: dict[str, Any] = {}
    for name in names:
        wb = Workbench(base.settings.with_overrides(image_encoder=name), store=base.store)
        try:
            encoder = wb.image_encoder
            if encoder.name != name:
                echo(f"{name}: unavailable, skipped")
                continue
            wb.ensure_index("image", progress=True)
        except MedRAGError as exc:
            echo(f"{name}: unavailable, skipped ({exc})")
            continue
        ids, vectors = wb.store.load_embeddings(encoder.name, encoder.version)
        position = {cid: i for i, cid in enumerate(ids)}
        rows = frame[frame["case_id"].isin(position)]
        vecs = vectors[[position[c] for c in rows["case_id"]]]
        patients = [p or c for p, c in zip(rows["patient_id"], rows["case_id"], strict=True)]
        # Labels and datasets come from imported files: made one line before they become table rows, so a
        # label holding a line break cannot add a forged row to the table.
        labels = [one_line(label) for label in rows["label"]]
        datasets = [one_line(dataset) for dataset in rows["dataset"]]
        report = leave_one_patient_out(vecs, labels, patients, groups=datasets)
        blank()
        echo(f"Encoder {name} ({encoder.version}), {len(rows)} cases")
        lines(report.to_table())
        results[name] = report.to_dict()
    return results


def add_parsers(sub: Subparsers) -> None:
    """Add ``eval`` to the ``medrag`` subcommands."""
    p = sub.add_parser("eval", help="measure retrieval, labeler or image-reading quality")
    p.add_argument("what", choices=["retrieval", "labeler", "reading"])
    p.add_argument("--encoder", action="append", help="image encoder(s) to evaluate (default: all available)")
    p.add_argument("--dataset", help="retrieval: only this dataset")
    p.add_argument("--labels", help="retrieval: comma-separated labels to keep, e.g. normal,pneumonia")
    p.add_argument("--reports", help="labeler: NLMCXR_reports.tgz (default: the one torchxrayvision ships)")
    p.add_argument("--limit", type=int, help="labeler: only the first N reports; reading: only the first N cases")
    p.add_argument("--masks", help="reading: a folder of lung masks (labels.csv with image, lungs_mask) for Dice")
    p.add_argument("--rounds", type=int, default=500, help="reading: bootstrap rounds for the 95%% intervals")
    p.add_argument("--ignore-view", action="store_true", help="reading: do not pass the cases' view to the readers")
    p.add_argument("--cross-fit", type=int, default=0, metavar="N",
                   help="reading: also score with the calibration, thresholds and normal margin refitted on one "
                   "half of the patients and read on the other, for N seeded halvings (the honest F1)")
    p.add_argument("--write-calibration", action="store_true",
                   help="reading: fit the calibration, thresholds and normal margin on this library's labelled films "
                   "and read its analyses with them (measured first by cross-fitting, at least 3 halvings)")
    p.add_argument("--remove-calibration", action="store_true",
                   help="reading: delete this library's calibration (its analyses read with the shipped one)")
    p.add_argument("--calibration", choices=["on", "off"],
                   help="reading: switch this library's written calibration on or off (kept either way)")
    p.add_argument("--json", help="also write the figures as JSON")
    p.set_defaults(func=cmd_eval)
