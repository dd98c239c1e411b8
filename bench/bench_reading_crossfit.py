"""The whole reading's F1 with the classifier's calibration and thresholds cross-fitted on patient halves.

``medrag eval reading`` on the classifier's held-out NIH films scores the shipped calibration and F1
thresholds, which were fitted on those same films: optimistic. This reads every held-out film once (both
readers), then for each seed splits the patients in two halves, refits the classifier's Platt calibration
and F1 threshold per class on one half, reads the other half's films through the shipped reader and merge
with them (``MedragCnnReader`` on the refitted probabilities, ``merge_readings`` with the anatomy reading),
and scores the whole reading the way ``medrag eval reading`` does. Where the measurements are fused with the
classifier (``medrag-fusion.json``), the fused score's calibration and threshold are refitted on the half the
same way; ``--no-fusion`` reads without it, for the side-by-side figure. The work is
``medrag.evaluation.reading_crossfit``'s, which ``medrag eval reading --cross-fit 3`` runs too.

    medrag --data-dir /tmp/nihdata ingest ../shared/data/nih-train --labels ../shared/data/nih-train/labels.csv
    python bench/bench_reading_crossfit.py --data-dir /tmp/nihdata --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common  # noqa: F401  (thread limits before numpy and torch)

from medrag.config import load_settings
from medrag.evaluation.reading_crossfit import (
    DEFAULT_MARGINS,
    NORMAL_MARGIN,
    cross_fit,
    markdown_table,
    read_films,
    readers_for_cross_fit,
    well_sampled,
)
from medrag.evaluation.reading_run import labelled_cases
from medrag.reading.fusion import default_fusion
from medrag.workbench import Workbench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a data folder with the NIH-labelled library")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-fusion", action="store_true", help="read without the measurements fused in")
    parser.add_argument("--normal-margins", type=float, nargs="+", default=list(DEFAULT_MARGINS),
                        help="the choices for combine.NORMAL_MARGIN, chosen on each fitting half "
                        f"(one value: fixed; shipped: {NORMAL_MARGIN})")
    parser.add_argument("--min-positives", type=int, nargs="+", default=None,
                        help="also cross-fit refitting only the classes with at least N positive films in the library "
                        "(the rule of `medrag eval reading --write-calibration`), for each N given")
    args = parser.parse_args()
    wb = Workbench(load_settings(data_dir=args.data_dir))
    frame = wb.store.cases_frame()
    cases = list(wb.store.get_cases(list(frame["case_id"])).values())
    anatomy, cnn = readers_for_cross_fit(wb.backends.reader.members)
    films = read_films(labelled_cases(cases, cnn.trained_patients()), anatomy, cnn)
    fusion = None if args.no_fusion else default_fusion()
    result = cross_fit(films, cnn.cnn.meta, fusion, seeds=args.seeds, margins=args.normal_margins)
    print(f"{result.films} held-out films of {result.patients} patients\n")
    print(markdown_table(result))
    if result.cross_fitted:
        print(f"\ncross-fitted macro F1: mean {result.mean():.3f} over {len(result.cross_fitted)} halvings")
    for minimum in args.min_positives or []:
        only = well_sampled(films, minimum)
        refitted = cross_fit(films, cnn.cnn.meta, fusion, seeds=args.seeds, margins=args.normal_margins, only=only)
        print(f"refitting the {len(only)} classes with {minimum}+ positives ({', '.join(sorted(only))}): "
              f"cross-fitted macro F1 mean {refitted.mean():.3f}, no finding {refitted.mean('no finding'):.3f}")
    if args.json:
        args.json.write_text(json.dumps(result.to_dict()["rows"], indent=2))


if __name__ == "__main__":
    main()
