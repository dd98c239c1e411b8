"""The ``medrag`` command line: ingest | demo | index | analyze | search | history | web | eval | models."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medrag.errors import MedRAGError
from medrag.textsafe import printable

DISCLAIMER = "MedRAG is for education and research only - not for clinical use."


def _workbench(args: argparse.Namespace) -> Any:
    from medrag.config import load_settings
    from medrag.workbench import Workbench

    overrides = {
        "data_dir": Path(args.data_dir) if args.data_dir else None,
        "image_encoder": args.image_encoder,
        "reasoner": args.reasoner,
        "summariser": args.summariser,
        "k": getattr(args, "k", None),
    }
    return Workbench(load_settings(**overrides))


def _print_neighbours(neighbours: Sequence[Any]) -> None:
    if not neighbours:
        print("  (no similar cases)")
    for n in neighbours:
        synthetic = " [synthetic]" if n.synthetic else ""
        snippet = printable(" ".join(n.report.split()), keep_newlines=False)[:90]
        label, dataset = printable(n.label, keep_newlines=False), printable(n.dataset, keep_newlines=False)
        print(f"  #{n.rank}  {n.score:6.3f}  {label:<28} {dataset:<10}{synthetic}  {n.case_id[:12]}  {snippet}")


# ----------------------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the synthetic phantom library and import it."""
    wb = _workbench(args)
    report = wb.build_demo(n=args.n, seed=args.seed, progress=True)
    print(f"Synthetic demo library (phantoms, not real patients): {report.summary()}")
    print(f"Library now holds {wb.store.count_cases()} cases; images in {wb.settings.demo_dir}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Import a folder / labels CSV / Open-i reports / parquet."""
    wb = _workbench(args)
    report = wb.ingest(
        Path(args.path), labels_csv=Path(args.labels) if args.labels else None,
        images_dir=Path(args.images) if args.images else None, progress=True,
    )
    print(report.summary())
    for note in report.notes[:20]:
        print(f"  note: {note}")
    for where, message in report.errors[:20]:
        print(f"  skipped {where}: {message}")
    if len(report.errors) > 20:
        print(f"  ... and {len(report.errors) - 20} more skipped")
    print(f"Library now holds {wb.store.count_cases()} cases.")
    return 0 if report.added or report.unchanged or report.duplicates or not report.errors else 1


def cmd_index(args: argparse.Namespace) -> int:
    """Embed new cases and (re)build the indexes."""
    wb = _workbench(args)
    kinds = ["image", "text"] if args.kind == "all" else [args.kind]
    for kind in kinds:
        index = wb.ensure_index(kind, progress=True, rebuild=args.rebuild)
        encoder = wb.image_encoder if kind == "image" else wb.text_encoder
        print(f"{kind} index: {len(index)} vectors, {index.kind}, encoder {encoder.name} {encoder.version}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Stream an analysis to the terminal."""
    from medrag import events as ev

    if not args.image and not args.text:
        raise MedRAGError("Give an image path (medrag analyze IMAGE) or a question (--text \"...\").")
    wb = _workbench(args)
    wb.ensure_library(progress=True)
    print(DISCLAIMER)
    status = 0
    for event in wb.analyze(Path(args.image) if args.image else None, question=args.text or "", k=args.k, web=not args.no_web, save=not args.no_save):
        if isinstance(event, ev.InputReady):
            for note in event.notes:
                print(f"note: {printable(note, keep_newlines=False)}", file=sys.stderr)
            for warning in event.meta.get("warnings", []):
                print(f"warning: {printable(str(warning), keep_newlines=False)}", file=sys.stderr)
            if event.meta.get("burned_in_annotation"):
                print("warning: the DICOM says it has burned-in annotation (text in the pixels may identify the patient).", file=sys.stderr)
        elif isinstance(event, ev.GuardChecked) and not event.verdict.allowed:
            print(f"\nRefused: {event.verdict.reason}")
            status = 3
        elif isinstance(event, ev.NeighboursFound):
            print(f"\nSimilar cases ({event.encoder}, {event.seconds * 1000:.0f} ms):")
            _print_neighbours(event.neighbours)
            print("\nReasoning:")
        elif isinstance(event, ev.ReasoningToken):
            sys.stdout.write(printable(event.text))
            sys.stdout.flush()
        elif isinstance(event, ev.ReasoningDone):
            print(f"\n[reasoner: {event.backend} / {event.model}; first token {event.first_token_seconds * 1000:.0f} ms]")
        elif isinstance(event, ev.SummaryReady):
            summary = event.summary
            print(f"\nSummary: {printable(summary.label)}")
            for note in summary.notes:
                print(f"  note: {printable(note, keep_newlines=False)}")
            flagged = {k: v for k, v in summary.findings.items() if v in ("present", "uncertain")}
            print("Findings: " + (", ".join(f"{k} ({v})" for k, v in flagged.items()) or "none flagged"))
        elif isinstance(event, ev.WebResultsReady):
            print(f"\nReferences: {event.status}")
            for r in event.results:
                print(f"  - {printable(r.title, keep_newlines=False)} ({r.domain}) {r.url}")
        elif isinstance(event, ev.StageFailed):
            print(f"\n[{event.stage} failed] {event.message}", file=sys.stderr)
            if event.stage == "input":
                status = 2
            elif event.stage == "save":
                # The analysis is not in the history: a script must not take this run for a saved one.
                status = 4
        elif isinstance(event, ev.AnalysisSaved):
            print(f"\nSaved to history as analysis #{event.analysis_id}.")
        elif isinstance(event, ev.AnalysisFinished):
            print(f"Total {event.total_seconds:.2f} s (" + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in event.timings.items()) + ")")
    return status


def cmd_search(args: argparse.Namespace) -> int:
    """Search the library by image, text or label."""
    wb = _workbench(args)
    if args.image:
        from medrag.imaging import load_image

        hits = wb.search_image(load_image(Path(args.image)), args.k, label=args.filter_label, dataset=args.dataset)
    elif args.text:
        from medrag.guard import check_text

        verdict = check_text(args.text, wb.text_encoder)
        if not verdict.allowed:
            print(f"Refused: {verdict.reason}")
            return 3
        hits = wb.search_text(args.text, args.k, label=args.filter_label, dataset=args.dataset)
    elif args.label:
        hits = wb.search_label(args.label, args.k, dataset=args.dataset)
    else:
        raise MedRAGError("Give --image PATH, --text \"...\" or --label LABEL.")
    _print_neighbours(hits)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """List, show or export past analyses."""
    wb = _workbench(args)
    if args.show is not None:
        analysis = wb.store.get_analysis(args.show)
        if analysis is None:
            raise MedRAGError(f"No analysis #{args.show}; run `medrag history` to list them.")
        what = printable(analysis.input_name or analysis.question[:60], keep_newlines=False)
        print(f"#{analysis.analysis_id} {analysis.created_at} {analysis.input_kind} {what}")
        print(f"Label: {printable(analysis.label)}   backend: {analysis.reasoner_backend} / {analysis.reasoner_model}")
        for note in analysis.all_notes:
            print(f"  note: {printable(note, keep_newlines=False)}")
        for stage, message in analysis.failures.items():
            print(f"  [{stage} failed] {printable(message, keep_newlines=False)}")
        print(textwrap.indent(printable(analysis.reasoning or "(no reasoning)"), "  "))
        print("Neighbours: " + ", ".join(f"{printable(n.label)} ({n.score:.2f})" for n in analysis.neighbours))
        return 0
    frame = wb.store.history_frame(limit=args.limit, search=args.search)
    if args.export:
        target = Path(args.export)
        if target.suffix == ".parquet":
            frame.to_parquet(target, index=False)
        else:
            frame.to_csv(target, index=False)
        print(f"Wrote {len(frame)} analyses to {target}")
        return 0
    if frame.empty:
        print("No analyses yet: run `medrag analyze IMAGE`.")
        return 0
    for row in frame.itertuples():
        what = printable(row.input_name or (row.question or "")[:50], keep_newlines=False)
        label = printable(row.label, keep_newlines=False)
        print(f"#{row.id:<5} {str(row.created_at)[:19]}  {row.input_kind:<5} {what[:40]:<40} {label[:40]:<40} {row.reasoner_backend}  {row.total_seconds:.2f}s")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Look up trusted references for a query."""
    from medrag.websearch import search_references

    wb = _workbench(args)
    results, status = search_references(args.query, wb.settings, cache=wb.store)
    print(status)
    for r in results:
        print(f"- {printable(r.title, keep_newlines=False)}\n  {r.domain}  {r.url}\n  {printable(r.snippet, keep_newlines=False)[:200]}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Measure retrieval (leave-one-patient-out) or labeler quality."""
    if args.what == "labeler":
        from medrag.evaluation.labeler import evaluate_labeler

        report = evaluate_labeler(Path(args.reports) if args.reports else None, limit=args.limit)
        print(report.to_table())
        payload: dict[str, Any] = report.to_dict()
    else:
        payload = _eval_retrieval(args)
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"Wrote {args.json}")
    return 0


def _eval_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    from medrag.encoders import encoder_names
    from medrag.evaluation.retrieval import leave_one_patient_out
    from medrag.workbench import Workbench

    base = _workbench(args)
    frame = base.store.cases_frame(dataset=args.dataset)
    if args.labels:
        frame = frame[frame["label"].isin([s.strip() for s in args.labels.split(",")])]
    if frame.empty:
        raise MedRAGError("No labelled cases to evaluate; import a library first (medrag ingest / medrag demo).")
    names = args.encoder or [n for n in encoder_names("image")]
    results: dict[str, Any] = {}
    for name in names:
        wb = Workbench(base.settings.with_overrides(image_encoder=name), store=base.store)
        try:
            encoder = wb.image_encoder
            if encoder.name != name:
                print(f"{name}: unavailable, skipped")
                continue
            wb.ensure_index("image", progress=True)
        except MedRAGError as exc:
            print(f"{name}: unavailable, skipped ({exc})")
            continue
        ids, vectors = wb.store.load_embeddings(encoder.name, encoder.version)
        position = {cid: i for i, cid in enumerate(ids)}
        rows = frame[frame["case_id"].isin(position)]
        vecs = vectors[[position[c] for c in rows["case_id"]]]
        patients = [p or c for p, c in zip(rows["patient_id"], rows["case_id"])]
        report = leave_one_patient_out(vecs, list(rows["label"]), patients, groups=list(rows["dataset"]))
        print(f"\nEncoder {name} ({encoder.version}), {len(rows)} cases")
        print(report.to_table())
        results[name] = report.to_dict()
    return results


def cmd_models(args: argparse.Namespace) -> int:
    """List, download or import model weights."""
    from medrag.config import load_settings
    from medrag.weights import import_model, list_models, pull_model

    settings = load_settings(data_dir=Path(args.data_dir) if args.data_dir else None)
    if args.action == "pull":
        if not args.name:
            raise MedRAGError("Name the model to pull, e.g. `medrag models pull biomedclip`.")
        print(pull_model(args.name, settings))
        return 0
    if args.action == "import":
        if not args.name or not args.path:
            raise MedRAGError("Usage: medrag models import NAME PATH")
        print(import_model(args.name, Path(args.path), settings))
        return 0
    for status in list_models(settings):
        print(status)
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="medrag", description=f"Chest X-ray case workbench. {DISCLAIMER}")
    parser.add_argument("--data-dir", help="data folder (default: $MEDRAG_DATA_DIR or ./data)")
    parser.add_argument("--image-encoder", help="classic (default), biomedclip, openclip, xrv")
    parser.add_argument("--reasoner", help="evidence (default, offline), hf, openai")
    parser.add_argument("--summariser", help="rules (default, offline), hf, openai")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate and import the synthetic phantom library")
    p.add_argument("--n", type=int, default=240, help="number of cases (default 240)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ingest", help="import a folder (+ labels CSV), Open-i reports or a parquet file")
    p.add_argument("path")
    p.add_argument("--labels", help="labels CSV (image, label, report, patient_id, view, ...)")
    p.add_argument("--images", help="images folder for Open-i XML reports")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("index", help="embed new cases and build the indexes")
    p.add_argument("--kind", choices=["image", "text", "all"], default="all")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything and rebuild from scratch")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("analyze", help="analyse an image or a question (streams the reasoning)")
    p.add_argument("image", nargs="?")
    p.add_argument("--text", help="a question instead of (or with) an image")
    p.add_argument("--k", type=int, default=None, help="number of similar cases (default 5)")
    p.add_argument("--no-web", action="store_true", help="skip the web-reference stage")
    p.add_argument("--no-save", action="store_true", help="do not add a history row")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("search", help="similar cases by image, text or label")
    p.add_argument("--image")
    p.add_argument("--text")
    p.add_argument("--label")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--filter-label", help="only cases with this label")
    p.add_argument("--dataset", help="only cases from this dataset")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("history", help="past analyses")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--search")
    p.add_argument("--show", type=int, help="show one analysis by id")
    p.add_argument("--export", help="write the history to FILE.csv or FILE.parquet")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("web", help="trusted web references for a query")
    p.add_argument("query")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("eval", help="measure retrieval or labeler quality")
    p.add_argument("what", choices=["retrieval", "labeler"])
    p.add_argument("--encoder", action="append", help="image encoder(s) to evaluate (default: all available)")
    p.add_argument("--dataset", help="retrieval: only this dataset")
    p.add_argument("--labels", help="retrieval: comma-separated labels to keep, e.g. normal,pneumonia")
    p.add_argument("--reports", help="labeler: NLMCXR_reports.tgz (default: the one torchxrayvision ships)")
    p.add_argument("--limit", type=int, help="labeler: only the first N reports")
    p.add_argument("--json", help="also write the figures as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="model weights: list | pull NAME | import NAME PATH")
    p.add_argument("action", nargs="?", choices=["list", "pull", "import"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("path", nargs="?")
    p.set_defaults(func=cmd_models)
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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
