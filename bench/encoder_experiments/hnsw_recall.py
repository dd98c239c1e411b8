"""HNSW (M=32) recall@10 vs efSearch on classic-encoder-like vectors, to pick HNSW_EF_SEARCH.

Random or weakly clustered vectors are a worst case unlike real embeddings. Here: the real
classic embeddings of cxr-real (1,389) and 50,000 synthetic vectors drawn to match them — a
Gaussian mixture (30 components) in their top-64 PCA space plus isotropic residual noise of the
measured residual variance — unit-normalised. Queries are held out from the index.
Run: .venv/bin/python bench/encoder_experiments/hnsw_recall.py  (about 2-3 minutes)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import faiss
import numpy as np
from sklearn.mixture import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_all  # noqa: E402
from medrag.encoders.classic import ClassicEncoder  # noqa: E402


def recall_table(base: np.ndarray, queries: np.ndarray, efs: tuple[int, ...]) -> None:
    dim = base.shape[1]
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    _, truth = flat.search(queries, 10)
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(base)
    print(f"  n={len(base)} dim={dim}: HNSW build {time.perf_counter() - t:.1f} s")
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        t = time.perf_counter()
        _, got = hnsw.search(queries, 10)
        ms = (time.perf_counter() - t) * 1000 / len(queries)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
        print(f"  efSearch {ef:>4}: recall@10 {recall:.3f}  {ms:.2f} ms/query (batched)", flush=True)


def main() -> None:
    faiss.omp_set_num_threads(1)
    images, _ = load_all()
    enc = ClassicEncoder()
    feats = enc.features(images)
    enc.fit_features(feats)
    real = enc.project(feats)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(real))
    print("real classic embeddings (200 held-out queries):")
    recall_table(real[order[200:]], real[order[:200]], (16, 32, 64))

    mean = real.mean(0)
    _, s, vt = np.linalg.svd(real - mean, full_matrices=False)
    var = s**2 / len(real)
    print(f"variance in top 16/64 PCs: {var[:16].sum() / var.sum():.2f} / {var[:64].sum() / var.sum():.2f}")
    z = (real - mean) @ vt[:64].T
    residual_sd = np.sqrt(var[64:].sum() / real.shape[1])
    gmm = GaussianMixture(30, covariance_type="diag", random_state=0).fit(z)
    sample, _ = gmm.sample(51_000)
    synth = mean + sample @ vt[:64] + residual_sd * rng.standard_normal((len(sample), real.shape[1]))
    synth = (synth / np.linalg.norm(synth, axis=1, keepdims=True)).astype(np.float32)
    synth = synth[rng.permutation(len(synth))]
    print("50k synthetic vectors matched to the real ones (1,000 held-out queries):")
    recall_table(synth[1000:], synth[:1000], (16, 32, 48, 64, 96, 128))


if __name__ == "__main__":
    main()
