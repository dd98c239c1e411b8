"""Benchmark vectors: a clustered Gaussian mixture on the unit sphere, and real classic-encoder
embeddings of the CXR images, augmented and jittered up to any size.

Random (isotropic) vectors are the worst case for approximate search; real embeddings are clustered
and have low intrinsic dimension. Both generators here aim at that realistic middle ground.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(os.environ.get("MEDRAG_BENCH_CACHE", "/tmp/medrag-bench-cache"))


def _normalise_rows(x: np.ndarray) -> None:
    """Scale rows of ``x`` to unit length in place (chunked: no full-size temporary)."""
    for start in range(0, len(x), 65536):
        block = x[start : start + 65536]
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)


def gaussian_mixture(
    n: int,
    dim: int,
    *,
    seed: int = 0,
    clusters: int | None = None,
    rank: int = 16,
    spread: float = 0.8,
    noise: float = 0.4,
) -> np.ndarray:
    """(n, dim) float32 unit vectors from an anisotropic Gaussian mixture, rows in random order.

    ``clusters`` (default ``sqrt(n)`` clipped to [64, 2048]) unit centres with Zipf-like sizes
    (weight ∝ 1/rank^0.8); each cluster spreads along its own random ``rank``-dimensional subspace
    with decaying scales (total norm ``spread``), plus isotropic noise of total norm ``noise``.
    With the defaults a point has cosine ≈ 0.75 with its centre.
    """
    rng = np.random.default_rng(seed)
    k = clusters or int(np.clip(np.sqrt(n), 64, 2048))
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    _normalise_rows(centres)
    weights = 1.0 / np.arange(1, k + 1) ** 0.8
    counts = rng.multinomial(n, weights / weights.sum())
    scales = (1.0 / np.sqrt(np.arange(1, rank + 1))).astype(np.float32)
    scales *= spread / np.sqrt(np.sum(scales**2))
    out = np.empty((n, dim), dtype=np.float32)
    row = 0
    for c in range(k):
        m = int(counts[c])
        if m == 0:
            continue
        basis = rng.standard_normal((rank, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        z = rng.standard_normal((m, rank), dtype=np.float32) * scales
        block = out[row : row + m]
        np.matmul(z, basis, out=block)
        block += centres[c]
        block += rng.standard_normal((m, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        row += m
    _normalise_rows(out)
    return out[rng.permutation(n)]


def mixture_split(n: int, n_queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Base vectors and held-out queries drawn from the same mixture (queries are not in the base)."""
    everything = gaussian_mixture(n + n_queries, dim, seed=seed)
    base = np.ascontiguousarray(everything[:n])
    queries = np.ascontiguousarray(everything[n:])
    del everything
    return base, queries


# --------------------------------------------------------------------------- real embeddings
@dataclass(frozen=True)
class RealPool:
    """Classic-encoder embeddings of the real images (fitted on the base images).

    ``base``: original + augmented embeddings of the base images; ``queries``: original + augmented
    embeddings of held-out images (never in the base); ``deltas``: augmented − original embedding of
    the base images (the directions real images move in), used to shape the jitter.
    """

    base: np.ndarray
    queries: np.ndarray
    deltas: np.ndarray
    n_images: int
    n_query_images: int
    augment: int


def _augment(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible re-acquisition of the same film: crop/zoom, small rotation, exposure and contrast."""
    from PIL import Image

    h, w = pixels.shape
    img = Image.fromarray(pixels.astype(np.float32), mode="F")
    img = img.rotate(float(rng.uniform(-6, 6)), resample=Image.Resampling.BILINEAR)
    scale = float(rng.uniform(0.82, 1.0))
    ch, cw = int(h * scale), int(w * scale)
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    img = img.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
    out = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    out = out ** np.float32(rng.uniform(0.8, 1.25))
    contrast, shift = float(rng.uniform(0.85, 1.15)), float(rng.uniform(-0.05, 0.05))
    return np.clip((out - 0.5) * contrast + 0.5 + shift, 0.0, 1.0).astype(np.float32)


def _features_of(job: tuple[str, int, int]) -> np.ndarray:
    """Raw classic features of one image file and ``augment`` augmentations of it."""
    from medrag.encoders.classic import raw_features
    from medrag.imaging import load_image

    path, augment, seed = job
    pixels = load_image(Path(path)).pixels
    rng = np.random.default_rng(seed)
    rows = [raw_features(pixels)] + [raw_features(_augment(pixels, rng)) for _ in range(augment)]
    return np.stack(rows)


def real_classic_pool(
    real_dir: Path,
    *,
    augment: int = 4,
    query_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 2,
    cache_dir: Path = DEFAULT_CACHE,
) -> RealPool:
    """Embed every PNG under ``real_dir/images`` (+ ``augment`` augmentations each) with the classic
    encoder, fitted on the base images; cached in ``cache_dir`` by feature version and arguments."""
    from medrag.encoders.classic import DIM, FEATURE_VERSION, ClassicEncoder

    paths = sorted(str(p) for p in (Path(real_dir) / "images").rglob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no PNGs under {real_dir}/images")
    key = hashlib.sha256(f"{FEATURE_VERSION}|{augment}|{seed}|{'|'.join(paths)}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"classic_raw_{key}.npy"
    if cache.is_file():
        raw = np.load(cache)
    else:
        jobs = [(p, augment, seed * 1_000_003 + i) for i, p in enumerate(paths)]
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                raw = np.stack(list(pool.map(_features_of, jobs, chunksize=16)))
        else:
            raw = np.stack([_features_of(j) for j in jobs])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, raw)
    n_images = raw.shape[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_images)
    n_query = max(1, int(round(n_images * query_fraction)))
    query_idx, base_idx = order[:n_query], order[n_query:]
    encoder = ClassicEncoder()
    encoder.fit_features(raw[base_idx, 0])  # fitted on the library, as the workbench does
    emb = encoder.project(raw.reshape(-1, DIM)).reshape(raw.shape)
    base = np.ascontiguousarray(emb[base_idx].reshape(-1, DIM))
    queries = np.ascontiguousarray(emb[query_idx].reshape(-1, DIM))
    deltas = np.ascontiguousarray((emb[base_idx, 1:] - emb[base_idx, :1]).reshape(-1, DIM))
    return RealPool(base, queries, deltas, n_images, n_query, augment)


def jitter_to_size(pool: RealPool, n: int, *, seed: int = 0, scale: float = 1.0, rank: int = 64) -> np.ndarray:
    """(n, dim) unit vectors: the pool's base vectors first, then jittered copies of random base vectors.

    A copy is ``base[i] + scale · g @ (σ · V)`` renormalised, where V, σ are the top ``rank`` principal
    directions and standard deviations of the augmentation deltas and g ~ N(0, I): new vectors move the
    way real images move under re-acquisition, not in random directions.
    """
    rng = np.random.default_rng(seed)
    base = pool.base
    if n <= len(base):
        return np.ascontiguousarray(base[rng.permutation(len(base))[:n]])
    _, sigma, vt = np.linalg.svd(pool.deltas - pool.deltas.mean(axis=0), full_matrices=False)
    r = min(rank, len(sigma))
    shape = (sigma[:r, None] * vt[:r] / np.sqrt(len(pool.deltas))).astype(np.float32) * np.float32(scale)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    out[: len(base)] = base
    for start in range(len(base), n, 65536):
        stop = min(n, start + 65536)
        src = rng.integers(0, len(base), stop - start)
        block = out[start:stop]
        np.matmul(rng.standard_normal((stop - start, r), dtype=np.float32), shape, out=block)
        block += base[src]
    _normalise_rows(out[len(base) :])
    return out
