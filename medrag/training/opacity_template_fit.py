"""Fit the opacity template (normal films' framed lung brightness) from NIH "No Finding" films of nih-train.

``python -m medrag.training.opacity_template_fit`` segments each normal film with the shipped segmenter,
frames its lungs (:func:`medrag.reading.opacity.framed`) and writes the per-cell mean and SD, overall and per
NIH view, to ``medrag/reading/weights/opacity_template.json`` with the label file's checksum. Deterministic:
no randomness, the same films give the same template. With ``--report`` it prints how often the map's peak,
and the point the reading gives for each box's own finding, fall inside NIH's expert boxes (the 33 boxed films
medrag-cnn holds out; none is a normal film, so none is in the fit).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from medrag.fsutil import atomic_write_text, file_sha256
from medrag.reading.anatomy import largest_components
from medrag.reading.grids import densest_region
from medrag.reading.opacity import DEFAULT_TEMPLATE, OpacityTemplate, framed
from medrag.reading.segment import default_segmenter
from medrag.training.anatomy_data import load_grey, read_rows, shared_folder


def lungs_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(grey at the segmenter's working resolution, lung mask) of one film, as the anatomy reader sees it."""
    seg = default_segmenter().segment(load_grey(path))
    return seg.small, largest_components(seg.lungs > 0.5, keep=2)


def box_report(template: OpacityTemplate) -> tuple[dict[str, object], dict[str, object]]:
    """How often NIH's expert boxes (medrag-cnn's boxed films) hold (1) the reading's one opacity peak and
    (2) the point the anatomy reading gives for the box's own finding (:func:`medrag.reading.places.finding_point`)."""
    from medrag.reading.anatomy import read_anatomy
    from medrag.reading.anatomy_reader import reading_from_anatomy
    from medrag.reading.places import finding_point
    from medrag.training.cnn_data import SHARED_DATA, load_films

    peak_hits, point_hits, boxes = 0, 0, 0
    for film in (f for f in load_films(SHARED_DATA)[0] if f.boxes):
        grey = load_grey(film.path)
        anatomy = read_anatomy(grey, template=template)
        r, c, _ = densest_region(anatomy.opacity)
        reading = reading_from_anatomy(anatomy)
        height, width = grey.shape[:2]
        for cls, x, y, w, h in film.boxes:
            boxes += 1
            peak_hits += int(x <= c <= x + w and y <= r <= y + h)
            point = finding_point(reading, cls, (height, width))
            if point is not None:
                px, py = point[0] / width, point[1] / height
                point_hits += int(x <= px <= x + w and y <= py <= y + h)
    return _share(peak_hits, boxes), _share(point_hits, boxes)


def _share(hits: int, boxes: int) -> dict[str, object]:
    return {"boxes": boxes, "hits": hits, "share": round(hits / max(1, boxes), 4),
            "ci95": [round(v, 4) for v in wilson(hits, boxes)], "ci_method": "Wilson, boxes as independent"}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a share ``hits / n``."""
    if n == 0:
        return (math.nan, math.nan)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def main(argv: list[str] | None = None) -> int:
    """Fit and save the template (and optionally report the box check)."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.opacity_template_fit", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_TEMPLATE)
    p.add_argument("--report", action="store_true", help="also score the map's peak against NIH's boxes")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    started = time.time()
    nih = shared_folder("nih-train")
    normal = [r for r in read_rows(nih) if r["finding_labels"] == "No Finding"]
    frames: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"all": [], "PA": [], "AP": []}
    for row in normal:
        got = framed(*lungs_of(nih / row["image"]))
        if got is None:
            continue
        frames["all"].append(got)
        if row["view"] in frames:
            frames[row["view"]].append(got)
    source = (f"nih-train No Finding films ({len(frames['all'])}: PA {len(frames['PA'])}, AP {len(frames['AP'])}); "
              f"labels.csv sha256 {file_sha256(nih / 'labels.csv')}")
    template = OpacityTemplate.fit(frames, source)
    template.save(args.out)
    print(f"wrote {args.out} from {len(frames['all'])} normal films in {time.time() - started:.0f} s", flush=True)
    if args.report:
        report, pointed = box_report(template)
        stamped = json.loads(args.out.read_text(encoding="utf-8"))
        stamped["localisation"] = report  # both shown on the Settings page's Quality section
        stamped["localisation_finding"] = pointed
        atomic_write_text(args.out, json.dumps(stamped, indent=0))
        print(json.dumps({"boxes inside which the map's peak falls": report,
                          "boxes inside which the point for their finding falls": pointed}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
