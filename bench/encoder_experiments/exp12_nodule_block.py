"""Experiment 12: a location-free "blob" block for nodules and masses in the demo phantoms.

exp11 left nodule/mass as the weakest demo label (exact P@5 0.29): a 2–6 cm round opacity anywhere in
either upper/mid zone barely moves the 6×6 layout grids. Candidate: on the body crop of the 128-px
thumbnail (resampled to 96 px, about its own resolution, instead of the layout blocks' 48), a difference
of Gaussians at nodule scale (sigma 2 and 5 px: bright blobs denser than their surroundings), kept only
inside the lung fields (dark after heavy smoothing) and summarised without location — the strongest
responses, sorted, and the share of pixels above fixed levels. Variants tried on the way (whole crop,
48-px crop, sigma 1–4 / 3–10): the blob statistics of nodules and of normals overlapped even more. Added to the shipped v3 blocks at several weights; scored on the demo library (seeds 0 and 1,
per-label exact P@5) and on the headline nih normal-vs-pneumonia P@10.

Run: .venv/bin/python bench/encoder_experiments/exp12_nodule_block.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp11_phantom_retrieval import demo_library, mix, nih, nih_p10, phantom_scores, split_blocks  # noqa: E402
from medrag import phantoms as new_phantoms  # noqa: E402
from medrag.encoders import classic  # noqa: E402


LUNG_LEVEL = -0.2
FULL_RES_CROP = True


def blob_block(image: np.ndarray, sigmas: tuple[float, float] = (2.0, 5.0), top: int = 8) -> np.ndarray:
    """Sorted strongest DoG responses and the share above fixed levels, on the z-scored body crop."""
    probe = classic._probe(classic._clean(classic._prepare(np.asarray(image, dtype=np.float32))))
    levels = np.minimum(probe * 256, 255).astype(np.uint8)
    counts = np.bincount(levels.ravel(), minlength=256)
    if FULL_RES_CROP:
        monkey = classic._LAYOUT_SIDE
        classic._LAYOUT_SIDE = 96  # the body crop at about the thumbnail's own resolution
        try:
            crop = classic._body_crop(probe, levels > classic._otsu_level(counts))
        finally:
            classic._LAYOUT_SIDE = monkey
    else:
        crop = classic._body_crop(probe, levels > classic._otsu_level(counts))
    z = (crop - crop.mean()) / (float(crop.std()) + 1e-6)
    background = ndimage.gaussian_filter(z, sigmas[1])
    dog = ndimage.gaussian_filter(z, sigmas[0]) - background
    # only inside the lung fields (dark after smoothing): a nodule is a dense spot in aerated lung, while
    # the mediastinum, spine and body outline are dense structures next to it
    lung = np.zeros_like(z, dtype=bool)
    lung[4:-4, 4:-4] = ndimage.gaussian_filter(z, 2 * sigmas[1])[4:-4, 4:-4] < LUNG_LEVEL
    inner = dog[lung] if lung.sum() > 50 else dog[4:-4, 4:-4].ravel()
    peaks = np.sort(inner.ravel())[::-1]
    strongest = peaks[:: max(1, inner.size // 400)][:top]  # spaced samples of the top tail
    shares = [(inner > t).mean() for t in (0.3, 0.5, 0.7, 0.9)]
    return np.concatenate([strongest, shares]).astype(np.float32)


def main() -> None:
    sets = []
    for seed in (0, 1):
        images, labels, findings = demo_library(new_phantoms, seed, "new")
        blocks = split_blocks(classic, classic.ClassicEncoder().features(images))
        blocks["blob"] = np.stack([blob_block(im) for im in images])
        sets.append((blocks, labels, findings))
    nih_images = nih()[0]
    nb = split_blocks(classic, classic.ClassicEncoder().features(nih_images))
    nb["blob"] = np.stack([blob_block(im) for im in nih_images])
    shipped = {name: w for name, _, w in classic.BLOCKS}
    print("| blob weight | seed 0: exact | nodule/mass | normal agree | seed 1: exact | nodule/mass | nih P@10 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for weight in (0.0, 0.5, 0.75, 1.0, 1.5, 2.0):
        w = {**shipped, "blob": weight}
        cells = [phantom_scores(mix(b, w), lab, f) for b, lab, f in sets]
        print(f"| {weight:g} | {cells[0]['exact']:.3f} | {cells[0]['per_label']['nodule/mass']:.2f} | "
              f"{cells[0]['normal']:.3f} | {cells[1]['exact']:.3f} | {cells[1]['per_label']['nodule/mass']:.2f} | "
              f"{nih_p10(mix(nb, w)):.3f} |", flush=True)


if __name__ == "__main__":
    main()
