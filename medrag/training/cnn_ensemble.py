"""Add a second network to medrag-cnn: an ensemble whose logits are the mean of its networks' logits.

``python -m medrag.training.cnn_ensemble --member DIR [--write]`` takes the weights and stamp that
``cnn_train --out DIR`` wrote for another network (another recipe, same data), checks that it was trained on
exactly the shipped network's patients, data and input, and reads every held-out film through
:class:`medrag.reading.cnn.CnnReader`'s own input path twice: with the shipped network(s) alone and with the
member added (``--test-time``: every network flip-averaged, or every network reading the film once). Both
reports go through :func:`medrag.training.cnn_eval.evaluate` (AUCs with patient-bootstrap CIs, calibration and
F1 thresholds cross-fitted on halves of the patients, then refitted on all of them) and are printed with the
paired patient-bootstrap CI of the macro AUC's change.

``--write`` copies the member's weights beside the shipped ones in float16 (half the bytes; the reader computes
in float32 either way), names them with their sha256 in the stamp's ``members``, and stores the ensemble's
calibration, thresholds and held-out metrics (the previous ones under ``metrics.held_out_before_ensemble``).
The first network's file is not touched. Refit the fusion afterwards (``python -m medrag.training.fusion_fit``):
it is stamped with the classifier it was fitted on and is not used with another one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from medrag.errors import ConfigError
from medrag.fsutil import atomic_write, atomic_write_text, file_sha256
from medrag.reading.cnn import CLASSES, META_NAME, WEIGHTS_DIR, WEIGHTS_NAME, CnnReader
from medrag.training.cnn_data import SHARED_DATA, Film
from medrag.training.cnn_eval import box_hit_summary, box_hits, cluster_bootstrap, safe_auc
from medrag.training.cnn_train import FINDINGS_FOR_MACRO
from medrag.training.cnn_tta import _line, both_logits, held_out_films, report_of

COMMAND = "python -m medrag.training.cnn_ensemble --write --member"
#: What must be equal in the member's stamp and the shipped one for their logits to be averaged.
SAME_DATA = ("sha256", "label_files_sha256", "train_patients", "held_out_films")
SAME_INPUT = ("architecture", "classes", "input_size", "normalisation", "crop")


def check_member(shipped: dict[str, Any], member: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` unless ``member`` reads the same input and was trained on the same patients."""
    defaults = {"crop": "none"}  # stamps older than the --crop option read the whole film and do not say so
    for key in SAME_INPUT:
        if shipped.get(key, defaults.get(key)) != member.get(key, defaults.get(key)):
            raise ConfigError(f"the member's {key} is {member.get(key)!r}, the shipped network's "
                              f"{shipped.get(key)!r}; train it with the same --size and --crop")
    for key in SAME_DATA:
        if shipped["data"].get(key) != member["data"].get(key):
            raise ConfigError(f"the member was trained on other data ({key} differs): train it with the shipped "
                              "network's --seed and --holdout on the same ../shared/data, so its held-out "
                              "patients are the shipped network's")


def member_file(index: int) -> str:
    """The name the ``index``-th member's weights get beside the shipped ones."""
    return WEIGHTS_NAME.replace(".safetensors", f"-member{index}.safetensors")


def write_half(source: Path, target: Path) -> str:
    """``source``'s tensors as float16 safetensors at ``target`` (atomically); returns the file's sha256."""
    import torch
    from safetensors.torch import load_file, save

    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(str(source)).items()}
    atomic_write(target, save(state))
    return file_sha256(target)


def macro_change(before: np.ndarray, after: np.ndarray, films: list[Film]) -> tuple[float, tuple[float, float]]:
    """The macro AUC's change from ``before`` to ``after`` logits, with its paired patient-bootstrap 95 % CI."""
    labels = np.array([f.labels for f in films])
    columns = [CLASSES.index(c) for c in FINDINGS_FOR_MACRO]

    def change(rows: np.ndarray) -> float:
        def macro(logits: np.ndarray) -> float:
            return float(np.nanmean([safe_auc(labels[rows, k], logits[rows, k]) for k in columns]))
        return macro(after) - macro(before)

    low, high = cluster_bootstrap([f.patient for f in films], change)
    return change(np.arange(len(films))), (float(low), float(high))


def heatmap_localisation(reader: CnnReader, films: list[Film]) -> dict[str, Any]:
    """Share of the NIH boxes among ``films`` that contain the peak of the reader's heatmap for their class, read
    through the reader's own input path (so, for an ensemble, every network's features)."""
    from medrag.imaging.decode import load_image

    heats, boxes, names = [], [], []
    for film in films:
        if not film.boxes:
            continue
        pixels = load_image(film.path).pixels
        for cls, x, y, w, h in film.boxes:
            heats.append(reader.heatmap(pixels, cls))
            boxes.append((x, y, w, h))
            names.append(cls)
    return box_hit_summary(names, box_hits(heats, boxes), sum(1 for f in films if f.boxes))


def main(argv: list[str] | None = None) -> int:
    """Measure the shipped classifier with and without ``--member``; with ``--write``, ship the ensemble."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.cnn_ensemble", description=__doc__)
    p.add_argument("--member", type=Path, required=True, help="folder cnn_train --out wrote (weights and stamp)")
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="the shipped medrag-cnn folder")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--write", action="store_true", help="add the member to the shipped stamp")
    p.add_argument("--test-time", choices=("flip", "none"), default="flip",
                   help="how the ensemble reads a film: every network on the film and its mirror image (flip), or "
                   "on the film alone (none: two networks then cost what one network's flip average costs)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    shipped = CnnReader(args.weights)
    meta = shipped.meta
    member = CnnReader(args.member)
    check_member(meta, member.meta)
    members = list(meta.get("members", []))
    name = member_file(len(members) + 1)
    staged = args.weights / f".{name}.staged"
    entry = {"file": name, "sha256": write_half(member.weights_path, staged), "dtype": "float16",
             "from_sha256": member.meta["weights_sha256"], "command": member.meta["command"],
             "train_seconds": member.meta.get("train_seconds"), "training": member.meta.get("training")}
    try:
        staged.replace(args.weights / name)
        ensemble = CnnReader(args.weights, {**meta, "members": [*members, entry], "test_time": args.test_time})
        films = held_out_films(meta, args.data)
        print(f"{len(films)} held-out films of {len({f.patient for f in films})} patients", flush=True)
        before = both_logits(shipped, films)[int(shipped.test_time == "flip")]
        after = both_logits(ensemble, films)[int(args.test_time == "flip")]
    except BaseException:
        if not args.write:
            (args.weights / name).unlink(missing_ok=True)
        raise
    seed = int(meta.get("seed", 0))
    before_report, after_report = report_of(before, films, seed), report_of(after, films, seed)
    print(_line("before", before_report))
    print(_line("after", after_report))
    change, (low, high) = macro_change(before, after, films)
    print(f"macro AUC change {change:+.4f}, paired patient-bootstrap 95 % CI [{low:+.4f}, {high:+.4f}]")
    if not args.write:
        (args.weights / name).unlink(missing_ok=True)
        return 0
    calibration = after_report.pop("calibration")
    meta["members"] = [*members, entry]
    meta["test_time"] = args.test_time
    reading = "each flip-averaged" if args.test_time == "flip" else "each reading the film once"
    meta["ensemble_rule"] = f"the logits of every network ({reading}) averaged; calibrated after that"
    meta["test_time_rule"] = ("logits of the film and of its mirror image averaged (one batch of two), per network"
                              if args.test_time == "flip" else "the film alone, no mirror image")
    meta["calibration"] = {**calibration, "fitted_on": "all held-out patients, the ensemble's logits through the "
                           "reader's input path", "formula": "p = sigmoid(a * logit + b)"}
    meta["thresholds"] = {k: round(v, 4) for k, v in after_report.pop("thresholds").items()}
    before_report.pop("calibration")
    before_report.pop("thresholds")
    meta["metrics"]["held_out_before_ensemble"] = before_report
    if "localisation" in meta["metrics"]:
        meta["metrics"]["localisation_before_ensemble"] = meta["metrics"]["localisation"]
    meta["metrics"]["localisation"] = heatmap_localisation(ensemble, films)
    meta["metrics"]["held_out"] = after_report
    meta["metrics"]["ensemble_macro_auc_change"] = {"value": round(change, 4), "ci95": [round(low, 4),
                                                                                         round(high, 4)]}
    meta["command"] = (f"{meta['command']} && {entry['command']} && {COMMAND} {args.member}"
                       + (" --test-time none" if args.test_time == "none" else ""))
    atomic_write_text(args.weights / META_NAME, json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.weights / name} and {args.weights / META_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
