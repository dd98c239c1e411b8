"""``classic``: the default weight-free image encoder (CPU, deterministic, ~3 ms a 512-px image).

Five feature blocks, chosen by measurement (docs/encoder-experiments.md):

* ``lbp_global`` (10): rotation-invariant uniform LBP histogram (3×3 neighbours) of the whole image at
  its own resolution (longer side capped at 512 px) — fine texture;
* ``lbp_grid`` (160): the same codes, histogrammed per cell of a 4×4 grid — where the texture is;
* ``hist`` (32): the grey-level histogram of a 128-px thumbnail — exposure and contrast;
* ``layout_mean`` (36), ``layout_std`` (36): the body, cropped from the 128-px thumbnail (Otsu
  threshold; the rows and columns that are at least 20 % body), resampled to 48 px and z-scored;
  then the 6×6 grid of cell means (contrast-normalised, where the dense and the lucent regions are:
  heart, effusions, consolidation, pneumothorax) and of cell standard deviations (focal structure,
  such as a nodule). Cropping to the body removes the patient's position and size, which otherwise
  swamp the findings of the synthetic phantoms (exp11).

classic-v2 had HOG of the uncropped 64-px thumbnail (324-d, weight 2.5) instead of the layout blocks;
at equal cost to real films the layout blocks retrieve the demo phantoms far better (exp11). A HOG of
the body crop added nothing on top of them (exp11 weights) and was dropped.

Histograms are square-rooted (Hellinger). Each block is centred on the library mean (the fitted state;
zero before :meth:`ClassicEncoder.fit`), L2-normalised, weighted, concatenated and L2-normalised again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from skimage.filters import threshold_otsu

from medrag.encoders.base import EncoderSpec, l2_normalise, register_encoder
from medrag.errors import ConfigError, InputError
from medrag.fsutil import atomic_write

if TYPE_CHECKING:
    from medrag.config import Settings

#: Bump when the raw features change: fitted state and indexes built with another layout are refused.
FEATURE_VERSION = "classic-v3"
STATE_FILE = "classic.npz"

log = logging.getLogger(__name__)

_MAX_SIDE = 512  # texture is read at the image's own resolution, up to this
_MIN_SIDE = 16  # smaller inputs are upscaled (nearest) so every grid cell has pixels
_GRID = 4
_HIST_BINS = 32
_PROBE = 128  # the thumbnail that the histogram and the layout blocks are taken from
_PROBE_LEVELS = 256  # histogram resolution for the body threshold; the hist block sums groups of 8
_BODY_FRACTION = 0.2  # a row/column belongs to the body box when this share of it is above threshold
_LAYOUT_SIDE = 48  # the body crop is resampled to this square
_LAYOUT_GRID = 6  # cells per side for the mean and standard-deviation grids
_LAYOUT_CELL = _LAYOUT_SIDE // _LAYOUT_GRID
_LBP_BINS = 10
_LBP_ROW_STEP = 2  # every other row of centres: same P@10 (0.814 vs 0.815), half the cost (docs/, exp03)

#: (name, length, weight). From exp04/exp09/exp11: texture carries real films, the body layout the
#: phantoms. exp11 (demo phantoms, same-label top-5): v2 0.49 → v3 0.65 for nih P@10 0.783 → 0.773;
#: layout_mean 2.0 would give 0.68 but nih 0.756, 1.25 gives 0.63 and nih 0.782.
BLOCKS: tuple[tuple[str, int, float], ...] = (
    ("lbp_global", _LBP_BINS, 1.0),
    ("lbp_grid", _LBP_BINS * _GRID * _GRID, 1.0),
    ("hist", _HIST_BINS, 0.5),
    ("layout_mean", _LAYOUT_GRID * _LAYOUT_GRID, 1.5),
    ("layout_std", _LAYOUT_GRID * _LAYOUT_GRID, 1.0),
)
DIM = sum(length for _, length, _ in BLOCKS)
_LEVELS = np.arange(_PROBE_LEVELS)

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _uniform_onehot() -> np.ndarray:
    """(256, 10) map from an 8-bit LBP code to its rotation-invariant uniform bin (9 = non-uniform)."""
    onehot = np.zeros((256, _LBP_BINS), dtype=np.float64)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        onehot[code, sum(bits) if transitions <= 2 else 9] = 1.0
    return onehot


_UNIFORM = _uniform_onehot()


def lbp_codes(img: np.ndarray, row_step: int = 1) -> np.ndarray:
    """8-bit LBP codes (neighbour ≥ centre, 3×3 square) of interior pixels of a uint8 image.

    ``row_step`` > 1 takes every ``row_step``-th row of centres (neighbours stay at full resolution).
    """
    h, w = img.shape
    centre = img[1 : h - 1 : row_step, 1 : w - 1]
    code = np.zeros(centre.shape, dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_OFFSETS):
        code |= (img[1 + dy : h - 1 + dy : row_step, 1 + dx : w - 1 + dx] >= centre).view(np.uint8) << bit
    return code


def _resize(img: np.ndarray, height: int, width: int, resample: int = Image.Resampling.BOX) -> np.ndarray:
    return np.asarray(Image.fromarray(img, mode="F").resize((width, height), resample), dtype=np.float32)


def _check_image(img: np.ndarray, position: int) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(
            f"image {position} has shape {arr.shape}; the classic encoder takes 2-D grayscale arrays "
            "(decode files with medrag.imaging.load_image first)."
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _clean(img: np.ndarray) -> np.ndarray:
    arr = np.clip(img, 0.0, 1.0)
    if not np.isfinite(arr.sum(dtype=np.float64)):  # one cheap pass; NaN survives clip
        arr = np.nan_to_num(arr, nan=0.0)
    return arr


def _prepare(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    if max(h, w) > _MAX_SIDE:
        # an integer box reduction is about 5x cheaper than an arbitrary resize on big inputs
        factor = -(-max(h, w) // _MAX_SIDE)
        img = np.asarray(Image.fromarray(img, mode="F").reduce(factor), dtype=np.float32)
        h, w = img.shape
    if min(h, w) < _MIN_SIDE:
        scale = _MIN_SIDE / min(h, w)
        img = _resize(img, round(h * scale), round(w * scale), Image.Resampling.NEAREST)
    return np.ascontiguousarray(img, dtype=np.float32)


def _probe(img: np.ndarray) -> np.ndarray:
    """The square _PROBE-px thumbnail; an integer box reduction first is 3x cheaper than one resize."""
    factor = min(img.shape) // _PROBE
    pil = Image.fromarray(img, mode="F")
    if factor > 1:
        pil = pil.reduce(factor)
    return np.asarray(pil.resize((_PROBE, _PROBE), Image.Resampling.BOX), dtype=np.float32)


def raw_features(image: np.ndarray) -> np.ndarray:
    """The un-centred (DIM,) float32 feature vector of one 2-D [0, 1] image (blocks in ``BLOCKS`` order)."""
    # shrink before cleaning: on big inputs the box reduction is the cheaper full-size pass
    img = _clean(_prepare(_check_image(image, 0)))
    # 8-bit quantisation keeps equal neighbours equal, which the texture code relies on
    codes = lbp_codes((img * 255.0 + 0.5).astype(np.uint8), _LBP_ROW_STEP)
    ch, cw = codes.shape
    row_cell = (np.arange(ch) * _GRID // ch).astype(np.uint16)
    col_cell = (np.arange(cw) * _GRID // cw).astype(np.uint16)
    cell = (row_cell[:, None] * _GRID + col_cell[None, :]) * np.uint16(256)
    counts = np.bincount((cell + codes).ravel(), minlength=_GRID * _GRID * 256)
    per_cell = counts.reshape(_GRID * _GRID, 256).astype(np.float64) @ _UNIFORM
    cell_sizes = np.maximum(per_cell.sum(axis=1, keepdims=True), 1.0)
    lbp_grid = np.sqrt(per_cell / cell_sizes).ravel()
    lbp_global = np.sqrt(per_cell.sum(axis=0) / max(codes.size, 1))

    probe = _probe(img)
    # the probe is in [0, 1]; uint8 truncation is the floor, and a narrow type keeps the passes cheap
    levels = np.minimum(probe * _PROBE_LEVELS, _PROBE_LEVELS - 1).astype(np.uint8)
    counts256 = np.bincount(levels.ravel(), minlength=_PROBE_LEVELS)
    # floor(floor(256 x) / 8) == floor(32 x): the same 32-bin histogram as summing groups of 8
    hist = np.sqrt(counts256.reshape(_HIST_BINS, -1).sum(axis=1) / probe.size)
    crop = _body_crop(probe, levels > _otsu_level(counts256))
    zcrop = (crop - crop.mean()) / (float(crop.std()) + 1e-6)
    cells = zcrop.reshape(_LAYOUT_GRID, _LAYOUT_CELL, _LAYOUT_GRID, _LAYOUT_CELL)
    means = cells.mean(axis=(1, 3)).ravel()
    layout_mean = (means - means.mean()) / (float(means.std()) + 1e-6)
    layout_std = cells.std(axis=(1, 3)).ravel()
    return np.concatenate([lbp_global, lbp_grid, hist, layout_mean, layout_std]).astype(np.float32)


def _otsu_level(counts: np.ndarray) -> int:
    """Otsu's threshold on a 256-level histogram: the last level of the darker class (-1 when flat)."""
    if np.count_nonzero(counts) < 2:  # skimage cannot split a single level
        return -1
    return int(threshold_otsu(hist=(counts, _LEVELS)))


def _body_crop(probe: np.ndarray, body: np.ndarray) -> np.ndarray:
    """The box of rows/columns that are at least _BODY_FRACTION body, resampled to _LAYOUT_SIDE px.

    Falls back to the whole thumbnail when the box is implausibly small (flat or odd images).
    """
    side = probe.shape[0]
    need = _BODY_FRACTION * side
    rows = np.flatnonzero(np.count_nonzero(body, axis=1) >= need)
    cols = np.flatnonzero(np.count_nonzero(body, axis=0) >= need)
    box = (0, 0, side, side)
    if rows.size >= side // 16 and cols.size >= side // 16:
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    pil = Image.fromarray(probe, mode="F")
    return np.asarray(
        pil.resize((_LAYOUT_SIDE, _LAYOUT_SIDE), Image.Resampling.BOX, box=box), dtype=np.float32
    )


def _block_slices() -> list[tuple[slice, float]]:
    out, start = [], 0
    for _, length, weight in BLOCKS:
        out.append((slice(start, start + length), weight))
        start += length
    return out


class ClassicEncoder:
    """Weight-free CXR image encoder: LBP texture + grey levels + body layout, centred on the library.

    Works unfitted (no centring); :meth:`fit` on the library's images (no labels needed) improves
    real-film retrieval (nih normal-vs-pneumonia P@10 0.629 → 0.773, exp11) and changes
    :attr:`version` to include a hash of the fitted mean, so indexes built under another fit are refused.
    """

    name = "classic"
    dim = DIM

    def __init__(self, mean: np.ndarray | None = None) -> None:
        self._lock = threading.Lock()
        self._mean: np.ndarray | None = None
        self.version = FEATURE_VERSION
        if mean is not None:
            self._set_mean(mean)

    # -- fitted state -------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """Whether a library mean has been fitted or loaded."""
        return self._mean is not None

    def _set_mean(self, mean: np.ndarray) -> None:
        mean = np.ascontiguousarray(mean, dtype=np.float32)
        if mean.shape != (DIM,) or not np.all(np.isfinite(mean)):
            raise ConfigError(
                f"classic encoder state has shape {mean.shape} (need ({DIM},) finite values); "
                f"delete {STATE_FILE} and re-fit with `medrag index --rebuild`."
            )
        digest = hashlib.sha256(mean.tobytes()).hexdigest()[:10]
        with self._lock:
            self._mean = mean
            self.version = f"{FEATURE_VERSION}+fit-{digest}"

    def fit(self, images: Sequence[np.ndarray]) -> None:
        """Fit the per-block library mean on ``images`` (2-D [0, 1] arrays); updates :attr:`version`."""
        self.fit_features(self.features(images))

    def fit_features(self, features: np.ndarray) -> None:
        """Fit from :meth:`features` output, so an ingest can compute features once for fit and embed."""
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != DIM or feats.shape[0] == 0:
            raise InputError(
                f"fit needs at least one image (features of shape (n, {DIM})), got {feats.shape}; "
                "ingest some images first."
            )
        self._set_mean(feats.astype(np.float64).mean(axis=0))

    def save_state(self, path: Path) -> None:
        """Write the fitted state to ``path`` (.npz) atomically; raises ConfigError when unfitted."""
        if self._mean is None:
            raise ConfigError("the classic encoder is not fitted; call fit(images) before save_state.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, mean=self._mean, feature_version=np.array(FEATURE_VERSION))
        atomic_write(path, buffer.getvalue())

    def load_state(self, path: Path) -> None:
        """Load fitted state written by :meth:`save_state`; ConfigError if unreadable or from another layout."""
        mean, layout = _read_state(Path(path))
        if layout != FEATURE_VERSION:
            raise ConfigError(
                f"{path} was fitted for {layout}, this encoder is {FEATURE_VERSION}; delete it and run "
                "`medrag index --rebuild`."
            )
        self._set_mean(mean)

    # -- embedding ----------------------------------------------------------------------------------
    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, DIM) raw (un-centred) features; the expensive part of :meth:`embed`."""
        out = np.zeros((len(images), DIM), dtype=np.float32)
        for i, image in enumerate(images):
            out[i] = raw_features(_check_image(image, i))  # checked here so errors name the position
        return out

    def project(self, features: np.ndarray) -> np.ndarray:
        """Raw features → (n, DIM) L2-normalised vectors (centre, normalise and weight each block)."""
        feats = np.asarray(features, dtype=np.float32)
        mean = self._mean
        if mean is not None:
            feats = feats - mean
        parts = []
        for sl, weight in _block_slices():
            parts.append(weight * l2_normalise(feats[:, sl]))
        return l2_normalise(np.concatenate(parts, axis=1))

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, DIM) float32 unit vectors for 2-D float [0, 1] images of any size."""
        if len(images) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        return self.project(self.features(images))


def _read_state(path: Path) -> tuple[np.ndarray, str]:
    """(mean, feature version) from a state file; ConfigError when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["mean"]), str(data["feature_version"])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ConfigError(
            f"cannot read classic encoder state {path} ({exc}); delete it and run "
            "`medrag index --rebuild` to re-fit."
        ) from exc


def _factory(settings: Settings) -> ClassicEncoder:
    encoder = ClassicEncoder()
    state = settings.models_dir / STATE_FILE
    if state.is_file():
        mean, layout = _read_state(state)
        if layout == FEATURE_VERSION:
            encoder._set_mean(mean)
        else:
            # A state from an older feature layout is useless, not broken: start unfitted so the
            # workbench re-fits (and overwrites it), as it rebuilds indexes of another version.
            log.warning("ignoring %s (fitted for %s, this encoder is %s); it will be re-fitted",
                        state, layout, FEATURE_VERSION)
    return encoder


register_encoder(
    EncoderSpec(
        name="classic",
        kind="image",
        factory=_factory,
        description="weight-free LBP texture + grey-level histogram + body-cropped layout, centred on the library",
        weight_free=True,
    )
)
