"""``medrag analyze | search | web``: analyse an image or question, find similar cases, look up references."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from medrag.cli.common import DISCLAIMER, Subparsers, print_neighbours, workbench
from medrag.cli.output import blank, clean, echo, stream
from medrag.errors import MedRAGError

if TYPE_CHECKING:
    from medrag.events import Event
    from medrag.workbench import Workbench

#: Exit codes of ``analyze`` beyond 0 (done) and 2 (unusable input): refused by the guard, not saved.
EXIT_REFUSED, EXIT_NOT_SAVED = 3, 4


def _show(event: Event) -> int | None:
    """Print one pipeline event; returns the exit status it implies, if any."""
    from medrag import events as ev

    if isinstance(event, ev.InputReady):
        for note in event.notes:
            echo(f"note: {note}", err=True)
        for warning in event.meta.get("warnings", []):
            echo(f"warning: {warning}", err=True)
        if event.meta.get("burned_in_annotation"):
            echo(
                "warning: the DICOM says it has burned-in annotation (text in the pixels may identify the patient).",
                err=True,
            )
    elif isinstance(event, ev.GuardChecked) and not event.verdict.allowed:
        blank()
        echo(f"Refused: {event.verdict.reason}")
        return EXIT_REFUSED
    elif isinstance(event, ev.ImageFindingsReady):
        reading = event.reading
        blank()
        echo(f"Image readers ({', '.join(reading.readers) or 'none'}, {event.seconds * 1000:.0f} ms):")
        if reading.view:
            echo(f"  view {reading.view} ({reading.view_probability:.2f})")
        if reading.ctr is not None:
            caveat = "" if reading.ctr_reliable else " (unreliable on this film)"
            echo(f"  cardiothoracic ratio {reading.ctr:.2f}{caveat}")
        opaque_zones = reading.flagged_zones()
        if opaque_zones:
            echo("  more opaque than normal films: " + ", ".join(opaque_zones))
        if reading.devices:
            echo("  devices: " + ", ".join(sorted({d.kind for d in reading.devices})))
        seen = [f"{r.name} ({r.status}{f', {r.probability:.2f}' if r.probability is not None else ''})"
                for r in reading.findings.values() if r.status in ("present", "uncertain")]
        echo("  findings: " + (", ".join(seen) or "nothing abnormal"))
        for note in reading.notes:
            echo(f"  note: {note}")
    elif isinstance(event, ev.NeighboursFound):
        blank()
        echo(f"Similar cases ({event.encoder}, {event.seconds * 1000:.0f} ms):")
        print_neighbours(event.neighbours)
        blank()
        echo("Reasoning:")
    elif isinstance(event, ev.ReasoningToken):
        stream(event.text)
    elif isinstance(event, ev.ReasoningDone):
        blank()
        echo(f"[reasoner: {event.backend} / {event.model}; first token {event.first_token_seconds * 1000:.0f} ms]")
        for note in event.notes:  # e.g. the model server was down and the offline reasoner took over
            echo(f"note: {note}", err=True)
    elif isinstance(event, ev.SummaryReady):
        summary = event.summary
        blank()
        echo(f"Summary: {summary.label}")
        for note in summary.notes:
            echo(f"  note: {note}")
        flagged = {k: v for k, v in summary.findings.items() if v in ("present", "uncertain")}
        echo("Findings: " + (", ".join(f"{k} ({v})" for k, v in flagged.items()) or "none flagged"))
    elif isinstance(event, ev.WebResultsReady):
        blank()
        echo(f"References: {event.status}")
        for r in event.results:
            echo(f"  - {r.title} ({r.domain}) {r.url}")
    elif isinstance(event, ev.StageFailed):
        blank(err=True)
        echo(f"[{event.stage} failed] {event.message}", err=True)
        if event.stage == "input":
            return 2
        if event.stage == "save":
            # The analysis is not in the history: a script must not take this run for a saved one.
            return EXIT_NOT_SAVED
    elif isinstance(event, ev.AnalysisSaved):
        blank()
        echo(f"Saved to history as analysis #{event.analysis_id}.")
    elif isinstance(event, ev.AnalysisFinished):
        stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in event.timings.items())
        echo(f"Total {event.total_seconds:.2f} s ({stages})")
    return None


def cmd_analyze(args: argparse.Namespace) -> int:
    """Stream an analysis to the terminal."""
    if not args.image and not args.text:
        raise MedRAGError("Give an image path (medrag analyze IMAGE) or a question (--text \"...\").")
    if args.image and Path(args.image).is_dir():
        from medrag.cli.reading import analyze_folder

        return analyze_folder(args)
    if args.out:
        raise MedRAGError(
            "--out writes a batch of readings: give a folder of images (medrag analyze FOLDER --out x.parquet)."
        )
    wb = workbench(args)
    source = Path(args.image) if args.image else None
    if args.json:
        return _analyze_json(wb, source, args)
    wb.ensure_library(progress=True)
    echo(DISCLAIMER)
    status = 0
    for event in wb.analyze(source, question=args.text or "", k=args.k, web=not args.no_web, save=not args.no_save):
        implied = _show(event)
        if implied is not None:
            status = implied
    return status


def _analyze_json(wb: Workbench, source: Path | None, args: argparse.Namespace) -> int:
    """One analysis as one JSON object on stdout (progress and warnings stay off stdout)."""
    import json

    from medrag.analysis import Analysis
    from medrag.cli.reading import analysis_json

    wb.ensure_library(progress=False)
    analysis = Analysis.fold(wb.analyze(
        source, question=args.text or "", k=args.k, web=not args.no_web, save=not args.no_save))
    echo(json.dumps(analysis_json(analysis, source), ensure_ascii=True))
    if "input" in analysis.failures:
        return 2
    if analysis.refused:
        return EXIT_REFUSED
    return EXIT_NOT_SAVED if "save" in analysis.failures else 0


def cmd_search(args: argparse.Namespace) -> int:
    """Search the library by image, text or label."""
    wb = workbench(args)
    if args.image:
        from medrag.imaging import load_image

        hits = wb.search_image(load_image(Path(args.image)), args.k, label=args.filter_label, dataset=args.dataset)
    elif args.text:
        from medrag.guard import check_text

        verdict = check_text(args.text, wb.text_encoder)
        if not verdict.allowed:
            echo(f"Refused: {verdict.reason}")
            return EXIT_REFUSED
        hits = wb.search_text(args.text, args.k, label=args.filter_label, dataset=args.dataset)
    elif args.label:
        hits = wb.search_label(args.label, args.k, dataset=args.dataset)
    else:
        raise MedRAGError("Give --image PATH, --text \"...\" or --label LABEL.")
    print_neighbours(hits)
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Look up trusted references for a query."""
    from medrag.websearch import search_references

    wb = workbench(args)
    results, status = search_references(args.query, wb.settings, cache=wb.store)
    echo(status)
    for r in results:
        echo(f"- {r.title}")
        echo(f"  {r.domain}  {r.url}")
        echo(f"  {clean(r.snippet)[:200]}")
    return 0


def add_parsers(sub: Subparsers) -> None:
    """Add ``analyze``, ``search`` and ``web`` to the ``medrag`` subcommands."""
    p = sub.add_parser("analyze", help="analyse an image or a question (streams the reasoning)")
    p.add_argument("image", nargs="?")
    p.add_argument("--text", help="a question instead of (or with) an image")
    p.add_argument("--k", type=int, default=None, help="number of similar cases (default 5)")
    p.add_argument("--no-web", action="store_true", help="skip the web-reference stage")
    p.add_argument("--no-save", action="store_true", help="do not add a history row")
    p.add_argument("--json", action="store_true", help="print one JSON object per analysis instead of the stream")
    p.add_argument("--out", help="with a FOLDER: write every reading to this parquet file")
    p.add_argument("--force", action="store_true", help="with --out: replace an existing file")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("search", help="similar cases by image, text or label")
    p.add_argument("--image")
    p.add_argument("--text")
    p.add_argument("--label")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--filter-label", help="only cases with this label")
    p.add_argument("--dataset", help="only cases from this dataset")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("web", help="trusted web references for a query")
    p.add_argument("query")
    p.set_defaults(func=cmd_web)
