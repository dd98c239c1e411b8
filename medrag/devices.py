"""Where models run: pick cuda / mps / cpu and the dtype that suits it.

``Settings.device`` (``MEDRAG_DEVICE``: cpu, cuda, cuda:1, mps) overrides the automatic choice. Imports torch
lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medrag.config import default_device
from medrag.errors import ConfigError

if TYPE_CHECKING:
    import torch


def select_device(preferred: str | None = None) -> str:
    """The device to run on: ``preferred`` (e.g. ``settings.torch_device``), else the environment's
    ``MEDRAG_DEVICE`` (read by :mod:`medrag.config`), else cuda, then mps, then cpu."""
    import torch

    choice = (preferred or default_device()).strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    kind = choice.split(":", 1)[0]
    if kind not in {"cpu", "cuda", "mps"}:
        raise ConfigError(f"Device {choice!r} is unknown; set MEDRAG_DEVICE to auto, cpu, cuda or mps.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("MEDRAG_DEVICE asks for cuda but torch sees no CUDA GPU; set MEDRAG_DEVICE=auto or cpu.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("MEDRAG_DEVICE asks for mps but it is not available; set MEDRAG_DEVICE=auto or cpu.")
    return choice


def select_dtype(device: str) -> torch.dtype:
    """bfloat16 on GPUs that support it, float32 otherwise (Gemma 3 overflows in float16)."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.startswith("mps"):
        return torch.bfloat16
    return torch.float32
