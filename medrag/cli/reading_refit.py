"""``medrag eval reading``'s refits: ``--cross-fit N`` (the honest F1) and a library's own calibration.

``--write-calibration`` measures before it writes. The library's labelled films are cross-fitted by patient,
refitting the classes the written calibration refits (those with at least
:data:`~medrag.reading.calibration.MIN_POSITIVES` positive films in the library), and the result is printed
beside the shipped numbers' figure on the same films. Only then is the calibration fitted on every film and written.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrag.cli.output import blank, echo, lines
from medrag.errors import MedRAGError
from medrag.reading.calibration import calibration_path, load_calibration, remove_calibration

if TYPE_CHECKING:
    from medrag.evaluation.film_tap import FilmTap

#: Halvings a written calibration is measured with at least.
MIN_HALVINGS = 3


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN is not equal to itself


def calibration_line(data_dir: Path) -> str | None:
    """A line saying this library's analyses read with their own calibration (None when they do not)."""
    calibration = load_calibration(data_dir)
    if calibration is None:
        return None
    if not calibration.active:
        return (f"This library has its own calibration ({calibration.films} films, {calibration.date}), switched "
                "off: its analyses read with the shipped numbers, as the figures below do.")
    return (f"This library's analyses read with its own calibration ({calibration.films} films, "
            f"{calibration.date}); the figures below use the shipped numbers, the cross-fitted ones estimate "
            "what its own numbers give.")


def remove_library_calibration(data_dir: Path) -> dict[str, Any]:
    """Remove the library's calibration and say what happened."""
    path = calibration_path(data_dir)
    removed = remove_calibration(data_dir)
    echo(f"Removed {path}: this library's analyses read with the shipped calibration again." if removed else
         f"No calibration at {path}: this library's analyses already read with the shipped one.")
    return {"calibration_removed": removed, "path": str(path)}


def switch_library_calibration(data_dir: Path, state: str) -> dict[str, Any]:
    """Switch the library's written calibration on or off and say what its analyses read with now."""
    from medrag.reading.calibration import set_calibration_active

    calibration = set_calibration_active(data_dir, state == "on")
    echo(f"This library's analyses now read with its own calibration ({calibration.summary()})." if calibration.active
         else "This library's analyses now read with the shipped calibration; its own is kept for "
         "`medrag eval reading --calibration on`.")
    return {"calibration_active": calibration.active, "path": str(calibration_path(data_dir))}


def refit_figures(data_dir: Path, tap: FilmTap | None, reader: Any, args: argparse.Namespace,
                  shipped_macro_f1: float, shipped_f1: dict[str, float] | None = None) -> dict[str, Any]:
    """What ``--cross-fit`` and ``--write-calibration`` add to the report (printed, and returned for the JSON),
    from the films ``tap`` kept while the eval read them.

    ``shipped_f1`` (per finding, the shipped numbers on the same films) is stored beside the library's per class."""
    from medrag.evaluation.reading_crossfit import cross_fit, fit_library_calibration, markdown_table
    from medrag.reading.calibration import MIN_POSITIVES, save_calibration

    halvings, write = int(getattr(args, "cross_fit", 0) or 0), bool(getattr(args, "write_calibration", False))
    if tap is None or (not halvings and not write):
        return {}
    films, meta = tap.films, tap.meta
    if tap.skipped:
        echo(f"Note: a reader failed on {tap.skipped} films; the refits leave them out.")
    if not films:
        raise MedRAGError("No labelled film was read by both the anatomy reader and the classifier; nothing to refit.")
    fusion = getattr(reader, "fusion", None)
    out: dict[str, Any] = {}
    if halvings:
        result = cross_fit(films, meta, fusion, seeds=range(halvings))
        blank()
        echo(f"Cross-fitted ({halvings} halvings of {result.patients} patients): calibration, thresholds and "
             "normal margin fitted on one half, the other half read with them")
        lines(markdown_table(result))
        echo(f"cross-fitted macro F1: mean {_f(result.mean())}; no finding {_f(result.mean('no finding'))}")
        out["cross_fit"] = result.to_dict()
    if write:
        calibration, measured = fit_library_calibration(
            films, meta, fusion, shipped_macro_f1, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            seeds=range(max(halvings, MIN_HALVINGS)), shipped_f1=shipped_f1)
        path = save_calibration(data_dir, calibration)
        library = calibration.figures["library_macro_f1"]
        blank()
        echo(f"This library's own calibration, cross-fitted over {len(measured.cross_fitted)} halvings (classes "
             f"with {MIN_POSITIVES}+ positives refitted: {', '.join(calibration.figures['refitted_classes']) or 'none'}"
             f"): macro F1 {_f(library)} against {_f(shipped_macro_f1)} with the shipped numbers on the same films")
        if not library > shipped_macro_f1:
            echo("Warning: on these films the library's own numbers read no better than the shipped ones (on the "
                 "classifier's own held-out NIH films the shipped figure is in sample, fitted on them); "
                 "`medrag eval reading --remove-calibration` goes back.")
        echo(f"Wrote {path}; this library's analyses now read with it (normal margin "
             f"{calibration.normal_margin:g}).")
        out["calibration"] = calibration.to_dict()
    return out


__all__ = ["MIN_HALVINGS", "calibration_line", "refit_figures", "remove_library_calibration",
           "switch_library_calibration"]
