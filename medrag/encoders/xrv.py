"""``xrv``: torchxrayvision DenseNet121 (``densenet121-res224-all``) image features, 1024-d.

Weights come only from torchxrayvision's cache folder (``Settings.xrv_cache_dir``: ``$MEDRAG_XRV_CACHE`` or
``~/.torchxrayvision/models_data``); this module never downloads. Preprocessing follows
torchxrayvision: pixels scaled to [-1024, 1024] (``xrv.utils.normalize`` on our [0, 1] input),
centre crop to a square (``XRayCenterCrop``), resize to 224 (``XRayResizer``). The vector is the
pooled DenseNet feature before the classifier (``model.features2``), L2-normalised.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.devices import select_device
from medrag.encoders.base import EncoderSpec, l2_normalise, register_encoder
from medrag.errors import BackendUnavailableError, ConfigError
from medrag.inference_lock import torch_inference
from medrag.weights import WEIGHTS, file_fingerprint, fix_command, import_xrv, xrv_weights_path

if TYPE_CHECKING:
    from medrag.config import Settings

XRV_WEIGHTS = WEIGHTS["xrv-densenet121-all"].source
INPUT_SIZE = 224
FEATURE_DIM = 1024
BATCH_SIZE = 16

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def preprocess(pixels: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """(1, size, size) float32 in torchxrayvision's [-1024, 1024] range from 2-D [0, 1] pixels."""
    xrv = import_xrv()

    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2:
        raise ConfigError(f"xrv embeds 2-D greyscale arrays in [0, 1]; got shape {arr.shape}.")
    arr = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0)
    scaled = xrv.utils.normalize(arr, maxval=1.0)[None, :, :]
    cropped = xrv.datasets.XRayCenterCrop()(scaled)
    return np.asarray(xrv.datasets.XRayResizer(size)(cropped), dtype=np.float32)


def _load_model(path: Path, device: str) -> Any:
    xrv = import_xrv()

    key = (str(path), device)
    with _LOCK:
        if key not in _CACHE:
            try:
                # The file is present, so torchxrayvision reads it instead of downloading.
                model = xrv.models.DenseNet(weights=XRV_WEIGHTS, cache_dir=str(path.parent))
            except Exception as exc:  # xrv raises bare Exception / pickle errors for a bad file
                raise BackendUnavailableError(
                    f"{path} does not load as torchxrayvision weights ({type(exc).__name__}); "
                    f"replace it: {fix_command('xrv-densenet121-all')}."
                ) from exc
            _CACHE[key] = model.to(device).eval()
        return _CACHE[key]


class XRVEncoder:
    """torchxrayvision DenseNet121 (all datasets) pooled features."""

    name = "xrv"
    dim = FEATURE_DIM

    def __init__(self, weights_path: Path, *, device: str | None = None) -> None:
        self.weights_path = weights_path
        self.device = device or select_device()
        self.model = _load_model(weights_path, self.device)
        self.version = f"xrv-{XRV_WEIGHTS}@{file_fingerprint(weights_path)}"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1024) float32 unit vectors for 2-D [0, 1] images."""
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[np.ndarray] = []
        with torch_inference():
            for start in range(0, len(images), BATCH_SIZE):
                batch = np.stack([preprocess(img) for img in images[start : start + BATCH_SIZE]])
                features = self.model.features2(torch.from_numpy(batch).to(self.device))
                out.append(features.float().cpu().numpy())
        return l2_normalise(np.concatenate(out))


def xrv_encoder(settings: Settings | None = None) -> XRVEncoder:
    """The xrv encoder from the torchxrayvision cache, or BackendUnavailableError saying how to get the weights."""
    path = xrv_weights_path(XRV_WEIGHTS, settings.xrv_cache_dir if settings is not None else None)
    if not path.is_file():
        raise BackendUnavailableError(
            f"torchxrayvision weights {XRV_WEIGHTS} are not in {path.parent}; {fix_command('xrv-densenet121-all')}."
        )
    return XRVEncoder(path, device=settings.torch_device if settings is not None else None)


register_encoder(
    EncoderSpec(
        name="xrv",
        kind="image",
        factory=xrv_encoder,
        description="torchxrayvision DenseNet121 (densenet121-res224-all) pooled features, 1024-d",
        weight_free=False,
    )
)
