"""medrag-cnn: the project's own multi-label chest X-ray classifier (EfficientNet-Lite0) with class heatmaps.

The network is timm's ``efficientnet_lite0`` fine-tuned from ImageNet weights on NIH films by
:mod:`medrag.training.cnn_train`. Its weights live in the repository (``weights/medrag-cnn.safetensors``
with ``medrag-cnn.json`` beside them: classes, input size, normalisation, per-class Platt calibration,
thresholds, the training data's checksum and the held-out metrics). :class:`CnnReader` loads them lazily
from there and only from there — it never downloads anything.

What the network reads is recorded in its JSON: the shipped weights read the whole film (squashed to the
input size). Weights trained with ``--crop thorax`` (``"crop": "thorax"``) read the box the lung and heart
segmenter (:mod:`medrag.reading.segment`) puts around both lungs and the heart, so burned-in text and the
film's border are outside what they see; that variant measured worse and is not shipped.

An ensemble is a stamp with ``"members"``: further networks of the same architecture, classes and input, each
file named there with its sha256 (``medrag.training.cnn_ensemble`` adds them). Their logits are averaged with
the first network's, and the stamp's calibration and thresholds were fitted on those averaged logits.

The heatmap is a class-activation map on the last conv block. The head is global average pooling and one
linear layer, so Grad-CAM's channel weights are exactly the classifier's row for the class: the map needs
no backward pass.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.errors import BackendUnavailableError, InputError
from medrag.fsutil import file_sha256
from medrag.inference_lock import torch_inference

if TYPE_CHECKING:
    import torch
    from timm.models.efficientnet import EfficientNet

#: The classes, in output order (NIH Nodule and Mass are merged into "nodule/mass").
CLASSES: tuple[str, ...] = (
    "no finding", "pneumonia", "effusion", "atelectasis", "edema", "cardiomegaly",
    "consolidation", "pneumothorax", "infiltration", "nodule/mass",
)
#: NIH ``Finding Labels`` (and the ``Infiltrate`` spelling of its boxes) → class.
NIH_TO_CLASS: dict[str, str] = {
    "No Finding": "no finding", "Pneumonia": "pneumonia", "Effusion": "effusion", "Atelectasis": "atelectasis",
    "Edema": "edema", "Cardiomegaly": "cardiomegaly", "Consolidation": "consolidation",
    "Pneumothorax": "pneumothorax", "Infiltration": "infiltration", "Infiltrate": "infiltration",
    "Nodule": "nodule/mass", "Mass": "nodule/mass",
}
ARCHITECTURE = "efficientnet_lite0"
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_NAME = "medrag-cnn.safetensors"
META_NAME = "medrag-cnn.json"
TRAIN_COMMAND = "python -m medrag.training.cnn_train --out medrag/reading/weights/"


def build_network(num_classes: int = len(CLASSES)) -> EfficientNet:
    """An untrained ``efficientnet_lite0`` with ``num_classes`` outputs (no download: ``pretrained=False``)."""
    import timm
    from timm.models.efficientnet import EfficientNet

    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=num_classes)
    # The heatmap and the training code rely on EfficientNet's forward_features / classifier split.
    assert isinstance(model, EfficientNet), type(model)
    return model


def classifier_weight(model: EfficientNet) -> torch.Tensor:
    """The classifier's (classes, features) weight: one row of channel weights per class, as the heatmap uses."""
    import torch

    head = model.get_classifier()
    assert isinstance(head, torch.nn.Linear), type(head)  # build_network's head is one linear layer
    return head.weight


def classifier_identity(meta: dict[str, Any]) -> str:
    """The checksum that names a classifier (what models fitted on its outputs are stamped with): its weights'
    sha256, or for an ensemble the sha256 of every member's checksum in order and of how it reads a film (the
    same networks read with and without the mirror image give other logits)."""
    shas = [str(meta.get("weights_sha256", ""))] + [str(m["sha256"]) for m in meta.get("members", [])]
    if len(shas) == 1:
        return shas[0]
    return hashlib.sha256(" ".join([*shas, f"test_time={meta.get('test_time', 'none')}"]).encode()).hexdigest()


def as_gray(pixels: np.ndarray) -> np.ndarray:
    """2-D float32 pixels in [0, 1] from float [0, 1] or 8-bit input (an RGB(A) array is averaged to gray)."""
    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1) if arr.dtype != np.uint8 else arr[..., :3].mean(axis=-1) / 255.0
    elif arr.dtype == np.uint8:
        arr = arr / 255.0
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise InputError(f"medrag-cnn needs a 2-D grayscale image of at least 8x8 pixels, got shape {arr.shape}")
    return np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0), 0.0, 1.0)


def resize_gray(gray: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) or (N, 1, H, W) gray in [0, 1] → (N, 1, size, size), antialiased bilinear (the whole film, squashed)."""
    import torch.nn.functional as F

    x = gray if gray.ndim == 4 else gray[None, None]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def normalise(gray: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """(N, 1, S, S) gray in [0, 1] → (N, 3, S, S): the gray channel replicated, then ImageNet-normalised."""
    import torch

    m = torch.tensor(mean, dtype=gray.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=gray.dtype).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - m) / s


def box_from_masks(lungs: np.ndarray, heart: np.ndarray, margin: float = 0.04,
                   min_share: float = 0.05) -> tuple[float, float, float, float]:
    """(top, left, bottom, right) as fractions of the image: the box around lungs and heart plus ``margin``.

    The whole image when the masks (probabilities or booleans at any resolution) cover under ``min_share``.
    """
    mask = (np.asarray(lungs) > 0.5) | (np.asarray(heart) > 0.5)
    if mask.mean() < min_share:
        return 0.0, 0.0, 1.0, 1.0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (max(0.0, rows[0] / h - margin), max(0.0, cols[0] / w - margin),
            min(1.0, (rows[-1] + 1) / h + margin), min(1.0, (cols[-1] + 1) / w + margin))


def thorax_box(gray: np.ndarray) -> tuple[float, float, float, float]:
    """The thorax box of a film (fractions, see :func:`box_from_masks`) from the repository's segmenter."""
    from medrag.reading.segment import default_segmenter

    seg = default_segmenter().segment(gray)
    return box_from_masks(seg.lungs, seg.heart)


def box_pixels(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A fractional box as (top, left, bottom, right) pixel indices of an image of ``shape`` (at least 8 px)."""
    h, w = int(shape[-2]), int(shape[-1])
    top, left = int(round(box[0] * h)), int(round(box[1] * w))
    bottom, right = max(top + 8, int(round(box[2] * h))), max(left + 8, int(round(box[3] * w)))
    return min(top, h - 8), min(left, w - 8), min(bottom, h), min(right, w)


def platt(logits: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(a * logit + b)`` per class (the arrays broadcast over images)."""
    z = np.clip(a * logits + b, -60.0, 60.0)
    return 1.0 / (1.0 + np.exp(-z))


def class_activation(features: torch.Tensor, weight: torch.Tensor, out_hw: tuple[int, int]) -> np.ndarray:
    """ReLU(w · A) of one class over a (1, C, h, w) feature map, upsampled to ``out_hw`` and scaled to [0, 1]."""
    import torch
    import torch.nn.functional as F

    cam = torch.einsum("c,chw->hw", weight, features[0]).clamp_(min=0)[None, None]
    up = F.interpolate(cam, size=out_hw, mode="bilinear", align_corners=False)[0, 0]
    top = float(up.max())
    out = (up / top) if top > 0 else torch.zeros_like(up)
    return out.clamp_(0, 1).numpy().astype(np.float32)


@dataclass(frozen=True)
class CnnOutput:
    """One forward pass: raw logits, calibrated probabilities, and the last conv block's features."""

    logits: dict[str, float]
    probabilities: dict[str, float]
    features: Any  # torch.Tensor (1, 1280, h, w); Any so this module imports without torch
    #: the thorax crop the network read, (top, left, bottom, right) pixels of the input image
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    shape: tuple[int, int] = (0, 0)


class CnnReader:
    """The trained medrag-cnn, loaded lazily from ``weights_dir`` (the repository's copy by default)."""

    name = "medrag-cnn"

    def __init__(self, weights_dir: Path | str | None = None, meta: dict[str, Any] | None = None) -> None:
        """``meta`` replaces the stamp in ``weights_dir`` (a training script reading a variant of it)."""
        self.weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        self._models: list[EfficientNet] | None = None
        self._meta: dict[str, Any] | None = meta
        self._lock = threading.Lock()
        self._last: tuple[bytes, CnnOutput] | None = None
        self._last_box: tuple[bytes, tuple[int, int, int, int]] | None = None

    @property
    def weights_path(self) -> Path:
        """Where the weights file is expected."""
        return self.weights_dir / WEIGHTS_NAME

    def available(self) -> bool:
        """True when both the weights and their JSON stamp are present (does not load them)."""
        return self.weights_path.is_file() and (self.weights_dir / META_NAME).is_file()

    @property
    def meta(self) -> dict[str, Any]:
        """The JSON stamp written by the training script (loads it on first use)."""
        if self._meta is None:
            path = self.weights_dir / META_NAME
            if not path.is_file():
                raise BackendUnavailableError(
                    f"medrag-cnn metadata not found at {path}; train the model with `{TRAIN_COMMAND}`")
            self._meta = json.loads(path.read_text(encoding="utf-8"))
        return self._meta

    @property
    def classes(self) -> tuple[str, ...]:
        """The output classes, in order."""
        return tuple(self.meta["classes"])

    @property
    def size(self) -> int:
        """The network's square input size in pixels."""
        return int(self.meta["input_size"])

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-class decision thresholds on the calibrated probability (chosen for F1 at training time)."""
        return {k: float(v) for k, v in self.meta["thresholds"].items()}

    def weight_files(self) -> list[tuple[Path, str]]:
        """Every weights file this classifier reads with the sha256 its stamp expects, the first network's first."""
        return [(self.weights_path, str(self.meta.get("weights_sha256")))] + [
            (self.weights_dir / str(m["file"]), str(m["sha256"])) for m in self.meta.get("members", [])]

    @property
    def identity(self) -> str:
        """:func:`classifier_identity` of this classifier's stamp."""
        return classifier_identity(self.meta)

    def load(self) -> EfficientNet:
        """Build the network(s) and load the committed weights after checking each sha256 against the JSON;
        returns the first network (:meth:`networks` has them all)."""
        return self.networks()[0]

    def networks(self) -> list[EfficientNet]:
        """Every network of the classifier, loaded once: the first, then the stamp's ``members``."""
        with self._lock:
            if self._models is None:
                self._models = [self._load_model(path, sha) for path, sha in self.weight_files()]
            return self._models

    def _load_model(self, path: Path, expected: str) -> EfficientNet:
        from safetensors.torch import load_file

        if not path.is_file():
            raise BackendUnavailableError(
                f"medrag-cnn weights not found at {path}; restore medrag/reading/weights from the repository or "
                f"train them with `{TRAIN_COMMAND}`")
        digest = file_sha256(path)
        if digest != expected:
            raise BackendUnavailableError(
                f"{path} has sha256 {digest[:12]}…, but {META_NAME} expects {expected[:12]}…; restore the "
                f"weights and their stamp from the repository or retrain with `{TRAIN_COMMAND}`")
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        model = build_network(len(self.meta["classes"]))
        model.load_state_dict(state)
        return model.eval()

    def class_weights(self) -> torch.Tensor:
        """The classifier rows that turn :meth:`raw_logits`' features into logits, (classes, channels): for an
        ensemble every network's rows side by side, divided by their number (the features are side by side)."""
        import torch

        networks = self.networks()
        return torch.cat([classifier_weight(n) for n in networks], dim=1) / len(networks)

    def _crop(self, gray: np.ndarray, box: tuple[float, float, float, float] | None) -> tuple[int, int, int, int]:
        if box is None and self.meta.get("crop") != "thorax":
            box = (0.0, 0.0, 1.0, 1.0)
        if box is None:
            key = hashlib.sha1(gray.tobytes()).digest()
            if self._last_box is not None and self._last_box[0] == key:
                return self._last_box[1]
            pixels_box = box_pixels(gray.shape, thorax_box(gray))
            self._last_box = (key, pixels_box)
            return pixels_box
        return box_pixels(gray.shape, box)

    @property
    def test_time(self) -> str:
        """``"flip"`` when the stamp says to average each film's logits with its mirror image's, else ``"none"``."""
        return str(self.meta.get("test_time", "none"))

    def network_input(self, pixels: np.ndarray, box: tuple[float, float, float, float] | None = None
                      ) -> tuple[torch.Tensor, tuple[int, int, int, int], tuple[int, int]]:
        """The normalised (1, 3, size, size) tensor the network reads, its crop in ``pixels`` and their shape."""
        import torch

        gray = as_gray(pixels)
        top, left, bottom, right = self._crop(gray, box)
        norm = self.meta["normalisation"]
        region = torch.from_numpy(np.ascontiguousarray(gray[top:bottom, left:right]))
        x = normalise(resize_gray(region, self.size), tuple(norm["mean"]), tuple(norm["std"]))
        return x, (top, left, bottom, right), (int(gray.shape[0]), int(gray.shape[1]))

    def raw_logits(self, x: torch.Tensor, flip: bool) -> tuple[torch.Tensor, np.ndarray]:
        """Last-block features of ``x`` and its logits; with ``flip`` the logits are the mean of ``x``'s and its
        mirror image's (one batch of two). The features are always ``x``'s own, so the heatmap is not mirrored.
        An ensemble's logits are its networks' mean and its features their channels side by side."""
        import torch

        batch = torch.cat([x, torch.flip(x, dims=(-1,))]) if flip else x
        features, logits = [], []
        with torch_inference():
            for model in self.networks():
                own = model.forward_features(batch)
                features.append(own[:1])
                logits.append(model.forward_head(own).mean(0).numpy().astype(np.float64))
        return (features[0] if len(features) == 1 else torch.cat(features, dim=1)), np.mean(logits, axis=0)

    def forward(self, pixels: np.ndarray, box: tuple[float, float, float, float] | None = None) -> CnnOutput:
        """Logits, calibrated probabilities and last-block features of one image (the last result is cached).

        ``box`` (top, left, bottom, right as fractions) is the thorax crop; by default the segmenter finds it
        (pass the anatomy reader's box to skip a second segmentation). With ``"test_time": "flip"`` in the
        stamp the logits average the film and its mirror image (the calibration was fitted on such logits).
        """
        x, crop, shape = self.network_input(pixels, box)
        key = hashlib.sha1(x.numpy().tobytes() + bytes(str((crop, shape)), "ascii")).digest()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        features, logits = self.raw_logits(x, flip=self.test_time == "flip")
        cal = self.meta["calibration"]
        a = np.array([cal["a"][c] for c in self.classes])
        b = np.array([cal["b"][c] for c in self.classes])
        probs = platt(logits, a, b)
        out = CnnOutput(
            logits={c: float(v) for c, v in zip(self.classes, logits, strict=True)},
            probabilities={c: float(v) for c, v in zip(self.classes, probs, strict=True)},
            features=features, crop=crop, shape=shape,
        )
        self._last = (key, out)
        return out

    def predict(self, pixels: np.ndarray) -> dict[str, float]:
        """Class → calibrated probability in [0, 1], for every class."""
        return dict(self.forward(pixels).probabilities)

    def heatmap(self, pixels: np.ndarray, class_name: str,
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """Where the network sees ``class_name``: a map in [0, 1] with the input pixels' (H, W) shape.

        The network read only its crop (``box``, as in :meth:`forward`), so the map is zero outside it.
        """
        if class_name not in self.classes:
            raise InputError(f"medrag-cnn has no class {class_name!r}; choose one of: {', '.join(self.classes)}")
        out = self.forward(pixels, box)
        weight = self.class_weights()[self.classes.index(class_name)].detach()
        top, left, bottom, right = out.crop
        full = np.zeros(out.shape, dtype=np.float32)
        full[top:bottom, left:right] = class_activation(out.features, weight, (bottom - top, right - left))
        return full


__all__ = [
    "ARCHITECTURE", "CLASSES", "IMAGENET_MEAN", "IMAGENET_STD", "META_NAME", "NIH_TO_CLASS", "TRAIN_COMMAND",
    "WEIGHTS_DIR", "WEIGHTS_NAME", "CnnOutput", "CnnReader", "as_gray", "box_from_masks", "box_pixels",
    "build_network", "class_activation", "classifier_identity", "normalise", "platt", "resize_gray", "thorax_box",
]
