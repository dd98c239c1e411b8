"""``medrag eval reading`` (how well the image readers read a labelled library) and batch readings."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medrag.cli.common import workbench
from medrag.cli.output import blank, echo, lines, progress_bar
from medrag.errors import MedRAGError
from medrag.evaluation.quality import save_library_eval

#: Image files a folder batch reads.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})


def _figure(value: Any, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "  n/a"
    text = f"{value:5.3f}"
    if ci and not any(isinstance(v, float) and math.isnan(v) for v in ci):
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def _command(args: argparse.Namespace) -> str:
    """The ``medrag eval reading`` command line these arguments stand for (saved with the report)."""
    parts = ["medrag", "eval", "reading"]
    for flag, value in (("--dataset", args.dataset), ("--limit", args.limit), ("--masks", args.masks),
                        ("--rounds", args.rounds if args.rounds != 500 else None)):
        if value:
            parts += [flag, shlex.quote(str(value))]
    if getattr(args, "cross_fit", 0):
        parts += ["--cross-fit", str(args.cross_fit)]
    if getattr(args, "write_calibration", False):
        parts.append("--write-calibration")
    return " ".join(parts + (["--ignore-view"] if args.ignore_view else []))


def eval_reading(args: argparse.Namespace) -> dict[str, Any]:
    """Read every labelled case of the library (held-out patients) and print the figures."""
    from medrag.cli.reading_refit import (
        calibration_line,
        refit_figures,
        remove_library_calibration,
        switch_library_calibration,
    )
    from medrag.evaluation.reading_run import evaluate_library, mask_dice
    from medrag.reading.combine import build_readers

    if getattr(args, "cross_fit", 0) < 0:
        raise MedRAGError(f"--cross-fit takes the number of halvings (1 or more), not {args.cross_fit}.")
    wb = workbench(args)
    if getattr(args, "remove_calibration", False):
        return remove_library_calibration(wb.settings.data_dir)
    if getattr(args, "calibration", None):
        return switch_library_calibration(wb.settings.data_dir, args.calibration)
    frame = wb.store.cases_frame(dataset=args.dataset)
    if frame.empty:
        raise MedRAGError("No cases to evaluate; import a labelled library first (medrag ingest … --labels …).")
    cases = list(wb.store.get_cases(list(frame["case_id"])).values())
    # The shipped numbers, even where this library has its own calibration: that one was fitted on these films.
    reader = build_readers(wb.settings, library_calibration=False)
    exclude = reader.trained_patients()
    if args.limit:
        cases = cases[: args.limit]

    from medrag.evaluation.film_tap import FilmTap

    # The refits need each film's anatomy reading and classifier output: kept as the eval reads (read once).
    tap = FilmTap(reader) if getattr(args, "cross_fit", 0) or getattr(args, "write_calibration", False) else None

    def read(pixels: Any, view: str | None) -> Any:
        if tap is not None:
            tap.start()
        return reader.read(pixels, view_hint=None if args.ignore_view else view)

    report = evaluate_library(cases, read, exclude_patients=exclude, rounds=args.rounds,
                              on_progress=progress_bar("reading the labelled films"),
                              on_read=tap.keep if tap is not None else None)
    echo(f"Readers: {reader.model}; {report.images} films of {report.patients} patients "
         f"({report.excluded_patients} training patients left out)")
    calibrated = calibration_line(wb.settings.data_dir)
    if calibrated:
        echo(calibrated)
    rows = [f"{'finding':<16}{'positives':>10}  {'AUC [95% CI]':<22}{'F1 [95% CI]':<22}{'F1 present':>10}"]
    for name, figures in report.per_finding.items():
        rows.append(f"{name:<16}{figures['positives']:>10}  {_figure(figures['auc'], figures['auc_ci']):<22}"
                    f"{_figure(figures['f1'], figures['f1_ci']):<22}{_figure(figures['f1_present']):>10}")
    lines("\n".join(rows))
    echo(f"macro AUC (findings with ≥ 50 positives): {_figure(report.macro_auc)}")
    echo(f"macro F1 (pneumonia, effusion, edema, atelectasis, no finding): {_figure(report.macro_f1)} with "
         f"'possible' counted as a call, {_figure(report.macro_f1_present)} with only 'present'")
    echo(f"view accuracy (PA/AP): {_figure(report.view_accuracy, report.view_ci)}")
    echo(f"localisation: {_figure(report.localisation_finding)} of {report.boxes} expert boxes hold the reading's "
         f"point for their finding; {_figure(report.localisation_peak)} hold its one peak; "
         f"{_figure(report.localisation)} hold its peak, heatmap peak or a flagged zone")
    if args.masks:
        from medrag.reading.segment import default_segmenter, to_grey

        segmenter = default_segmenter()

        def lungs(pixels: Any) -> Any:
            seg = segmenter.segment(to_grey(pixels))
            return seg.full_size_lungs(pixels.shape) if hasattr(seg, "full_size_lungs") else seg.lungs > 0.5

        report.dice = mask_dice(Path(args.masks), lungs)
        blank()
        echo(f"lung Dice on {args.masks}: {json.dumps(report.dice)}")
    payload: dict[str, Any] = json.loads(report.to_json())
    shipped_f1 = {name: float(f["f1"]) for name, f in report.per_finding.items()
                  if isinstance(f.get("f1"), float) and not math.isnan(f["f1"])}
    payload.update(refit_figures(wb.settings.data_dir, tap, reader, args, report.macro_f1, shipped_f1))
    saved = save_library_eval(wb.settings.data_dir, payload, _command(args),
                              datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    echo(f"Saved for the Settings page's Quality section: {saved}")
    return payload


def analyze_folder(args: argparse.Namespace) -> int:
    """Analyse every image in a folder; one row each into a parquet file (and JSON lines with --json)."""
    import pandas as pd

    from medrag.export import check_target
    from medrag.pipeline import run_analysis

    folder = Path(args.image)
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise MedRAGError(f"No PNG, JPEG or DICOM files in {folder}.")
    target = Path(args.out) if args.out else None
    wb = workbench(args)
    if target is not None:
        check_target(target, force=args.force, protected=[wb.settings.data_dir])
    wb.ensure_library(progress=not args.json)
    rows = []
    from tqdm import tqdm

    for path in tqdm(images, unit="img", desc="analyze", disable=args.json):
        analysis = run_analysis(wb, path, k=args.k, web=not args.no_web, save=not args.no_save)
        row = analysis_json(analysis, path)
        rows.append(row)
        if args.json:
            echo(json.dumps(row, ensure_ascii=True))
    if target is not None:
        from medrag.fsutil import atomic_writer

        frame = pd.DataFrame([{**r, "findings": json.dumps(r["findings"]), "failures": json.dumps(r["failures"]),
                               "notes": json.dumps(r["notes"]), "reading": json.dumps(r["reading"])} for r in rows])
        with atomic_writer(target) as handle:
            frame.to_parquet(handle, index=False)
        echo(f"Wrote {len(rows)} analyses to {target}", err=args.json)
    return 0


def analysis_json(analysis: Any, source: Path | None = None) -> dict[str, Any]:
    """One analysis as a flat JSON object (``medrag analyze --json``)."""
    from medrag.reading.base import reading_to_dict

    reading = reading_to_dict(analysis.reading) if analysis.reading is not None else None
    if reading is not None:
        reading["overlays"].pop("heatmap", None)  # grids: the history keeps them; a JSON line stays short
        reading["overlays"].pop("opacity", None)
    return {
        "source": str(source) if source else analysis.input_name, "analysis_id": analysis.analysis_id,
        # the library case these pixels are (None for a new image), so a batch joins with the library's labels
        "case_id": analysis.case_id or None,
        "question": analysis.question, "label": analysis.label, "findings": analysis.findings,
        "reasoner": analysis.reasoner_backend, "summariser": analysis.summariser_backend,
        "neighbours": [
            {"case_id": n.case_id, "label": n.label, "score": round(n.score, 4)} for n in analysis.neighbours
        ],
        "failures": analysis.failures, "notes": analysis.all_notes, "reading": reading,
        "reasoning": analysis.reasoning, "total_seconds": round(analysis.total_seconds, 4),
    }


__all__ = ["IMAGE_SUFFIXES", "analysis_json", "analyze_folder", "eval_reading"]
