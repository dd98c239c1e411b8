"""The options of ``python -m medrag.training.cnn_train`` (see its module docstring)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medrag.training.cnn_data import SHARED_DATA

CUT = 5  # blocks[:CUT] (and the stem) stay frozen at ImageNet weights


def parse_options(argv: list[str] | None, description: str | None) -> argparse.Namespace:
    """The training command's options, checked (``--train-from`` defaults to ``--cut``)."""
    p = argparse.ArgumentParser(prog="python -m medrag.training.cnn_train", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("medrag/reading/weights"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="the patient split's seed (and the training's by default)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=None,
                   help="seeds of the training alone (batch order, cached view drawn, dropout), one network per "
                        "seed, their weights averaged into the one shipped (default: --seed alone). The split, the "
                        "augmented views and the classifier's initial weights stay those of --seed")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--views", type=int, default=3, help="augmented views cached per training film")
    p.add_argument("--holdout", type=float, default=0.2, help="share of films (by patient) held out")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", type=Path, default=SHARED_DATA, help="the folder holding nih-train and cxr-real")
    # The shipped weights read the whole film; the thorax-crop variant measured worse (cardiomegaly AUC 0.53
    # against 0.65, BENCHMARKS.md), so the default reproduces the shipped model.
    p.add_argument("--crop", choices=("thorax", "none"), default="none",
                   help="read the whole film (default, as the shipped weights) or the segmenter's lungs-and-heart box")
    p.add_argument("--cut", type=int, default=CUT, choices=range(1, 7),
                   help=f"blocks before this one (and the stem) stay at their ImageNet weights and are read once per "
                        f"cached view (default {CUT})")
    p.add_argument("--train-from", type=int, default=None, help="first trained block (default --cut; at least --cut)")
    p.add_argument("--full", action="store_true",
                   help="train every layer on a fresh augmented view per epoch instead of cached features "
                        "(medrag.training.cnn_full; measured and left off)")
    p.add_argument("--validate", action="store_true",
                   help="only report per-epoch validation AUC on 20 %% of the training patients; write nothing")
    p.add_argument("--cache", type=Path, default=Path("artifacts/cnn/cache"),
                   help="where frozen-trunk features are cached between runs (not committed)")
    p.add_argument("--predictions", type=Path, default=Path("artifacts/cnn/heldout.csv"),
                   help="where to write the held-out logits (not committed)")
    args = p.parse_args(argv)
    args.train_from = args.cut if args.train_from is None else args.train_from
    if args.full and (args.validate or args.crop != "none"):
        p.error("--full reads the whole film and has no --validate mode")
    if not args.cut <= args.train_from <= 6:
        p.error(f"--train-from {args.train_from} must lie between --cut ({args.cut}) and 6")
    return args


__all__ = ["CUT", "parse_options"]
