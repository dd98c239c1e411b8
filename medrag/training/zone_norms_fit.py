"""Fit the default zone norms from NIH "No Finding" films of ../shared/data/nih-train.

``python -m medrag.training.zone_norms_fit`` reads each normal film with the shipped segmenter, measures the six
zones' opacity and both costophrenic recesses, and writes ``medrag/reading/weights/zone_norms.json`` (mean and
SD per zone, overall and per NIH view). With ``--report`` it also prints how well the lower-zone and recess
z-scores separate NIH effusion films from normal ones (AUC, a sanity check, not a tuned figure).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from medrag.reading.anatomy import read_anatomy
from medrag.reading.zones import DEFAULT_NORMS, ZoneNorms
from medrag.training.anatomy_data import load_grey, read_rows, shared_folder


def measurements(path: Path, view: str) -> dict[str, float]:
    """Zone opacities and recess opacities of one film (raw, before z-scoring)."""
    reading = read_anatomy(load_grey(path), view_hint=view, norms=ZoneNorms())
    out = {zone: values["mean"] for zone, values in reading.zones.items()}
    for side, values in reading.cp_angles.items():
        out[f"{side} costophrenic recess"] = values["recess"]
        out[f"{side} costophrenic angle"] = values["angle"]
    return {k: v for k, v in out.items() if math.isfinite(v)}


def main(argv: list[str] | None = None) -> int:
    """Fit and save the norms (and optionally report the effusion sanity check)."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.zone_norms_fit", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_NORMS)
    p.add_argument("--report", action="store_true", help="also score effusion films against the norms")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    started = time.time()
    nih = shared_folder("nih-train")
    rows = read_rows(nih)
    normal = [r for r in rows if r["finding_labels"] == "No Finding"]
    samples = [measurements(nih / r["image"], r["view"]) for r in normal]
    n_pa = sum(r["view"] == "PA" for r in normal)
    norms = ZoneNorms.fit(samples, [r["view"] for r in normal],
                          source=f"nih-train No Finding films ({len(normal)}: PA {n_pa}, AP {len(normal) - n_pa})")
    norms.save(args.out)
    print(f"wrote {args.out} from {len(normal)} normal films in {time.time() - started:.0f} s", flush=True)
    if args.report:
        from sklearn.metrics import roc_auc_score

        effusion = [r for r in rows if "Effusion" in r["finding_labels"].split("|")]
        scored = [(1, r) for r in effusion] + [(0, r) for r in normal]
        best: list[float] = []
        for _label, r in scored:
            m = measurements(nih / r["image"], r["view"])
            z = norms.z_scores(m, r["view"])
            keys = ("right lower zone", "left lower zone", "right costophrenic angle", "left costophrenic angle")
            best.append(max((z.get(k, -9.0) for k in keys if math.isfinite(z.get(k, math.nan))), default=0.0))
        labels = [lab for lab, _ in scored]
        print(f"effusion vs no finding (in-sample normals), max lower-zone/angle z: AUC "
              f"{roc_auc_score(labels, best):.3f} ({len(effusion)} effusion films)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
