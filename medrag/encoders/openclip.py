"""open_clip image+text encoders: ``biomedclip`` and any open_clip model (``openclip``).

A model reference is ``hf-hub:ORG/REPO`` (looked up ONLY in the local Hugging Face cache, then in the
imported-models folder), ``local-dir:PATH`` or a plain directory holding ``open_clip_config.json`` and
the weights. ``openclip`` reads its reference from ``Settings.openclip_model`` (``$MEDRAG_OPENCLIP_MODEL``).
Our 2-D [0, 1] pixels become RGB PIL images and go through the model's own preprocessing; vectors are
L2-normalised float32.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.config import OPENCLIP_MODEL_ENV, default_openclip_model
from medrag.devices import select_device
from medrag.encoders.base import EncoderSpec, l2_normalise, register_encoder
from medrag.errors import BackendUnavailableError, ConfigError
from medrag.inference_lock import torch_inference
from medrag.weights import WEIGHTS, file_fingerprint, fix_command, hub_offline, resolve_hf

if TYPE_CHECKING:
    from medrag.config import Settings

BIOMEDCLIP_REF = f"hf-hub:{WEIGHTS['biomedclip'].source}"
OPENCLIP_ENV = OPENCLIP_MODEL_ENV
BATCH_SIZE = 32
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
_CHECKPOINT_ORDER = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)


@dataclass(frozen=True)
class _Loaded:
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    dim: int
    checkpoint: Path


_CACHE: dict[tuple[str, str], _Loaded] = {}
_LOCK = threading.Lock()


def find_checkpoint(model_dir: Path) -> Path | None:
    """The weights file open_clip would load from ``model_dir`` (its preferred names first)."""
    for name in _CHECKPOINT_ORDER:
        if (model_dir / name).is_file():
            return model_dir / name
    found = sorted(p for p in model_dir.iterdir() if p.suffix in {".safetensors", ".bin", ".pth"})
    return found[0] if found else None


def resolve_openclip_dir(model_ref: str, settings: Settings | None = None, name: str | None = None) -> Path:
    """The local folder for an open_clip reference, or BackendUnavailableError saying how to get it."""
    from medrag.config import Settings

    settings = settings or Settings()
    ref = model_ref.strip()
    if not (ref.startswith(("hf-hub:", "local-dir:")) or Path(ref).expanduser().is_dir()):
        raise ConfigError(
            f"open_clip model {ref!r} is not a reference MedRAG loads offline; use hf-hub:ORG/REPO "
            "(from the local HF cache) or local-dir:PATH."
        )
    found = resolve_hf(ref, name, settings)
    if found is None or found.kind != "openclip":
        how = fix_command(name) if name else (
            "copy the model folder (open_clip_config.json + weights) here and set "
            f"{OPENCLIP_ENV}=local-dir:PATH"
        )
        raise BackendUnavailableError(f"open_clip model {ref} is not on this machine; {how}.")
    return found.path


def _load_tokenizer(model_dir: Path, config: dict[str, Any]) -> Any:
    import open_clip

    text_cfg = config.get("model_cfg", {}).get("text_cfg", {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    if hf_name and not any((model_dir / f).is_file() for f in _TOKENIZER_FILES):
        # BiomedCLIP keeps its tokenizer in another repo; it must be in the HF cache.
        return open_clip.tokenizer.HFTokenizer(
            hf_name,
            context_length=text_cfg.get("context_length", 77),
            **text_cfg.get("tokenizer_kwargs", {}),
        )
    return open_clip.get_tokenizer(f"local-dir:{model_dir}")


def _load(model_dir: Path, device: str) -> _Loaded:
    import json

    import open_clip

    checkpoint = find_checkpoint(model_dir)
    if checkpoint is None:
        raise BackendUnavailableError(
            f"{model_dir} has no open_clip weights file; import the whole model folder again."
        )
    config = json.loads((model_dir / "open_clip_config.json").read_text(encoding="utf-8"))
    try:
        with hub_offline():
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}", device=device)
            tokenizer = _load_tokenizer(model_dir, config)
    except Exception as exc:  # open_clip raises many types for a missing tower, tokenizer or bad weights
        raise BackendUnavailableError(
            f"Could not load the open_clip model in {model_dir} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}); its text tower or tokenizer may be missing "
            "from the HF cache: run `medrag models pull biomedclip` or import the full folder."
        ) from exc
    model.eval()
    dim = int(config["model_cfg"]["embed_dim"])
    return _Loaded(model, preprocess, tokenizer, device, dim, checkpoint)


class OpenClipEncoder:
    """Image and text towers of an open_clip model (kind "image+text")."""

    def __init__(self, name: str, model_ref: str, model_dir: Path, *, device: str | None = None) -> None:
        self.name = name
        self.model_ref = model_ref
        self.model_dir = model_dir
        self.device = device or select_device()
        self._loaded = self._load()
        self.dim = self._loaded.dim
        self.version = f"{model_ref}@{file_fingerprint(self._loaded.checkpoint)}"

    def _load(self) -> _Loaded:
        key = (str(self.model_dir), self.device)
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = _load(self.model_dir, self.device)
            return _CACHE[key]

    def _pil(self, pixels: np.ndarray) -> Any:
        from PIL import Image

        from medrag.imaging import to_uint8

        arr = np.asarray(pixels)
        if arr.ndim != 2:
            raise ConfigError(f"{self.name} embeds 2-D greyscale arrays in [0, 1]; got shape {arr.shape}.")
        return Image.fromarray(to_uint8(arr)).convert("RGB")

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 unit vectors for 2-D [0, 1] images (the model's own preprocessing)."""
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        loaded = self._loaded
        out: list[np.ndarray] = []
        with torch_inference():
            for start in range(0, len(images), BATCH_SIZE):
                batch = torch.stack([loaded.preprocess(self._pil(img)) for img in images[start : start + BATCH_SIZE]])
                features = loaded.model.encode_image(batch.to(loaded.device))
                out.append(features.float().cpu().numpy())
        return l2_normalise(np.concatenate(out))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors for texts, in the same space as :meth:`embed`."""

        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        loaded = self._loaded
        out: list[np.ndarray] = []
        with torch_inference():
            for start in range(0, len(texts), BATCH_SIZE):
                tokens = loaded.tokenizer([str(t) for t in texts[start : start + BATCH_SIZE]])
                features = loaded.model.encode_text(tokens.to(loaded.device))
                out.append(features.float().cpu().numpy())
        return l2_normalise(np.concatenate(out))


def openclip_encoder(model_ref: str, settings: Settings | None = None, *, name: str = "openclip") -> OpenClipEncoder:
    """An encoder for any open_clip reference (``hf-hub:ORG/REPO`` from the local cache, ``local-dir:PATH``)."""
    weight_name = "biomedclip" if model_ref == BIOMEDCLIP_REF else None
    device = settings.torch_device if settings is not None else None
    return OpenClipEncoder(name, model_ref, resolve_openclip_dir(model_ref, settings, weight_name), device=device)


def _biomedclip_factory(settings: Settings) -> OpenClipEncoder:
    return openclip_encoder(BIOMEDCLIP_REF, settings, name="biomedclip")


def _openclip_factory(settings: Settings) -> OpenClipEncoder:
    # Settings built before the variable was set (tests, long-lived callers) still see it.
    ref = settings.openclip_model or default_openclip_model()
    if not ref:
        raise BackendUnavailableError(
            f"The openclip encoder needs {OPENCLIP_ENV}, e.g. {OPENCLIP_ENV}=local-dir:/models/my-clip "
            "or hf-hub:ORG/REPO (from the local HF cache)."
        )
    return openclip_encoder(ref, settings, name="openclip")


register_encoder(
    EncoderSpec(
        name="biomedclip",
        kind="image+text",
        factory=_biomedclip_factory,
        description="BiomedCLIP (PubMedBERT + ViT-B/16) image and text towers, 512-d, from the local HF cache",
        weight_free=False,
    )
)
register_encoder(
    EncoderSpec(
        name="openclip",
        kind="image+text",
        factory=_openclip_factory,
        description=f"Any open_clip model named by {OPENCLIP_ENV} (hf-hub:ORG/REPO or local-dir:PATH)",
        weight_free=False,
    )
)
