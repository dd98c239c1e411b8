"""Test-time flip averaging for medrag-cnn: measured on the held-out patients and, with ``--write``, shipped.

``python -m medrag.training.cnn_tta [--write]`` reads every held-out film (the patients the shipped network did
not train on, from ``medrag-cnn.json``) through :class:`medrag.reading.cnn.CnnReader`'s own input path, the
one an analysis uses, and computes its logits twice: as read, and averaged with its mirror image's. Both sets
go through :func:`medrag.training.cnn_eval.evaluate` (AUC with patient-bootstrap CIs, Platt calibration and
F1 thresholds cross-fitted on halves of the patients, then refitted on all of them), and the two reports are
printed side by side. ``--write`` stores the flip-averaged calibration, thresholds and held-out metrics in the
stamp with ``"test_time": "flip"``, and keeps the single-pass figures, measured the same way, under
``metrics.held_out_single``. The weights are not touched, so their checksum stays valid.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from medrag.errors import ConfigError
from medrag.reading.cnn import CLASSES, META_NAME, WEIGHTS_DIR, CnnReader
from medrag.training.cnn_data import SHARED_DATA, Film, load_films
from medrag.training.cnn_train import F1_CLASSES, FINDINGS_FOR_MACRO

COMMAND = "python -m medrag.training.cnn_tta --write"


def held_out_films(meta: dict[str, Any], data: Path) -> list[Film]:
    """The films of the patients the shipped network did not train on (as many as its stamp says)."""
    trained = set(meta["data"]["train_patients"])
    films = [f for f in load_films(data)[0] if f.patient not in trained]
    expected = int(meta["data"]["held_out_films"])
    if len(films) != expected:
        raise ConfigError(f"{len(films)} held-out films found under {data}, but {META_NAME} was measured on "
                          f"{expected}: the shared data changed; retrain with `python -m medrag.training.cnn_train`")
    return films


def both_logits(reader: CnnReader, films: list[Film]) -> tuple[np.ndarray, np.ndarray]:
    """(single-pass logits, flip-averaged logits), one row per film, through the reader's input path."""
    from medrag.imaging.decode import load_image

    single, flipped = [], []
    start = time.time()
    for i, film in enumerate(films):
        x, _crop, _shape = reader.network_input(load_image(film.path).pixels)
        single.append(reader.raw_logits(x, flip=False)[1])
        flipped.append(reader.raw_logits(x, flip=True)[1])
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(films)} films, {time.time() - start:.0f} s", flush=True)
    return np.array(single), np.array(flipped)


def report_of(logits: np.ndarray, films: list[Film], seed: int) -> dict[str, Any]:
    """The held-out report of :func:`~medrag.training.cnn_eval.evaluate` (without its per-film probabilities)."""
    from medrag.training.cnn_eval import evaluate

    labels = np.array([f.labels for f in films])
    report = evaluate(logits, labels, [f.patient for f in films], CLASSES, FINDINGS_FOR_MACRO, F1_CLASSES, seed)
    report.pop("cross_fitted_probabilities")
    return report


def _line(name: str, report: dict[str, Any]) -> str:
    per = report["per_class"]
    figures = ", ".join(f"{c} {per[c]['auc']:.3f}" for c in ("effusion", "cardiomegaly", "edema", "atelectasis"))
    return (f"{name:7s} macro AUC {report['macro_auc']['value']:.4f} {report['macro_auc']['ci95']}, macro F1 "
            f"{report['macro_f1']['value']:.4f}, no finding F1 {per['no finding']['f1']:.3f}; {figures}")


def main(argv: list[str] | None = None) -> int:
    """Measure single-pass against flip-averaged logits; with ``--write``, ship the flip."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.cnn_tta", description=__doc__)
    p.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder with medrag-cnn.{safetensors,json}")
    p.add_argument("--data", type=Path, default=SHARED_DATA)
    p.add_argument("--write", action="store_true", help="store the flip-averaged calibration in the stamp")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    reader = CnnReader(args.weights)
    meta = reader.meta
    films = held_out_films(meta, args.data)
    print(f"{len(films)} held-out films of {len({f.patient for f in films})} patients", flush=True)
    single, flipped = both_logits(reader, films)
    seed = int(meta.get("seed", 0))
    single_report, flip_report = report_of(single, films, seed), report_of(flipped, films, seed)
    print(_line("single", single_report))
    print(_line("flip", flip_report))
    if args.write:
        meta["test_time"] = "flip"
        meta["test_time_rule"] = "logits of the film and of its mirror image averaged (one batch of two)"
        meta["calibration"] = {**flip_report.pop("calibration"), "fitted_on": "all held-out patients, flip-averaged "
                               "logits through the reader's input path", "formula": "p = sigmoid(a * logit + b)"}
        meta["thresholds"] = {k: round(v, 4) for k, v in flip_report.pop("thresholds").items()}
        single_report.pop("calibration")
        single_report.pop("thresholds")
        meta["metrics"]["held_out"] = flip_report
        meta["metrics"]["held_out_single"] = single_report
        if COMMAND not in meta["command"]:
            meta["command"] = f"{meta['command']} && {COMMAND}"
        (args.weights / META_NAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.weights / META_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
