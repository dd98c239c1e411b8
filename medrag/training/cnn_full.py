"""A full fine-tune of medrag-cnn: every layer trained, a fresh augmented view of every film in every epoch.

``python -m medrag.training.cnn_train --full`` uses it instead of the cached-feature training. The frozen-trunk
recipe caches ``--views`` augmented views once and trains the top on them, so after a few epochs the network
sees the same views again; here each epoch draws new ones (seeded by training seed, epoch and film name) and
the ImageNet blocks adapt too, at ``trunk_lr_factor`` of the learning rate, so that they move less than the
new classifier. About 5.6 s per batch of 32 films at 224 px on 2 AMD EPYC cores (2026-12-07): half an hour
for 8 epochs of 1,195 films.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from timm.models.efficientnet import EfficientNet

from medrag.reading.cnn import normalise, resize_gray
from medrag.training.cnn_data import Film, read_gray
from medrag.training.cnn_optim import bce_step, positive_weight, total_steps, warm_cosine
from medrag.training.cnn_views import augment, hash_name


def train_full(model: EfficientNet, films: list[Film], labels: torch.Tensor, *, epochs: int, seed: int, size: int,
               lr: float = 1e-3, batch: int = 32, trunk_lr_factor: float = 0.1, weight_decay: float = 0.05,
               max_steps: int | None = None, log: bool = True) -> list[float]:
    """Train every layer of ``model`` on ``films`` (``labels`` in their order); returns the loss of every step.

    The stem and the first five blocks learn at ``trunk_lr_factor × lr``, the last two blocks and the head at
    ``lr``, the classifier at ``3 × lr`` (as the cached recipe); AdamW, 5 % warm-up then cosine, BCE with
    ``pos_weight = sqrt(neg / pos)``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    grays = [read_gray(f.path) for f in films]  # decoded once: 1,195 films at 256 px are 0.3 GB
    keys = [hash_name(f.name) for f in films]
    for p in model.parameters():
        p.requires_grad_(True)
    trunk = [*model.conv_stem.parameters(), *model.bn1.parameters(),
             *(p for block in model.blocks[:5] for p in block.parameters())]
    head = list(model.classifier.parameters())
    chosen = {id(p) for p in trunk + head}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    opt = torch.optim.AdamW([{"params": trunk, "lr": lr * trunk_lr_factor}, {"params": rest, "lr": lr},
                             {"params": head, "lr": lr * 3}], weight_decay=weight_decay)
    pos_weight = positive_weight(labels)
    steps_per_epoch, total = total_steps(len(films), batch, epochs, max_steps)
    sched = warm_cosine(opt, total)
    model.train()
    losses: list[float] = []
    start = time.time()
    for epoch in range(epochs):
        order = rng.permutation(len(films))
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            x = torch.stack([augment(grays[i], np.random.default_rng([seed, epoch, keys[i]]), size) for i in idx])
            losses.append(bce_step(opt, sched, model(normalise(x)), labels[torch.from_numpy(idx)], pos_weight))
            if len(losses) >= total:
                break
        if log:
            print(f"  epoch {epoch + 1}/{epochs}: loss {np.mean(losses[-steps_per_epoch:]):.4f}, "
                  f"{time.time() - start:.0f} s", flush=True)
        if len(losses) >= total:
            break
    model.eval()
    return losses


@torch.no_grad()
def film_logits(model: EfficientNet, films: list[Film], size: int, batch: int = 32) -> np.ndarray:
    """Eval-mode logits of each film's clean view (the whole film resized to ``size``)."""
    model.eval()
    out = []
    for k in range(0, len(films), batch):
        x = torch.stack([resize_gray(read_gray(f.path)[None], size)[0] for f in films[k:k + batch]])
        out.append(model(normalise(x)))
    return torch.cat(out).numpy()


__all__ = ["film_logits", "train_full"]
