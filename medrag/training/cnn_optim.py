"""The optimisation both medrag-cnn recipes share: class weights, a warm-up-then-cosine schedule, one step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def positive_weight(labels: torch.Tensor) -> torch.Tensor:
    """BCE's ``pos_weight`` per class: ``sqrt(neg / pos)``, at least 1."""
    pos = labels.sum(0).clamp(min=1)
    return ((len(labels) - pos) / pos).clamp(min=1.0).sqrt()


def total_steps(films: int, batch: int, epochs: int, max_steps: int | None) -> tuple[int, int]:
    """(steps per epoch, steps in all, at most ``max_steps``)."""
    per_epoch = math.ceil(films / batch)
    return per_epoch, max(1, epochs * per_epoch if max_steps is None else min(max_steps, epochs * per_epoch))


def warm_cosine(opt: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over the first 5 % of ``total`` steps, then a cosine decay to zero."""
    warm = max(1, total // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm
        else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))


def bce_step(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR, logits: torch.Tensor,
             labels: torch.Tensor, pos_weight: torch.Tensor) -> float:
    """One optimiser and schedule step on the weighted BCE of ``logits``; returns the loss."""
    loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.item())


__all__ = ["bce_step", "positive_weight", "total_steps", "warm_cosine"]
