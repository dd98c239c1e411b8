"""Is an image a chest radiograph? ``check_image`` rejects images that clearly are not: colour photographs,
text pages, blank images, extreme aspect ratios and photographs converted to grey.

It returns a :class:`GuardVerdict` and never raises for a ``CXRImage``. The text check is :mod:`medrag.guard`,
which re-exports this module's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medrag.records import CXRImage, GuardVerdict

IMAGE_REFUSAL = "MedRAG analyses chest radiographs; upload a frontal chest X-ray (PNG, JPEG or DICOM)."

#: Thresholds, each set beyond what 1,389 real frontal CXRs (../shared/data/cxr-real: NIH, Kermany,
#: Hannover, ieee8023) reach, with the measured CXR range in the comment. See :func:`image_cues`.
MAX_ASPECT = 1.9  # CXR max 1.35 (detectors are 35x43 cm: 1.23); text() 2.6, page() 2.0
MIN_SIDE = 32  # pixels
BLANK_STD = 0.03  # CXR min std 0.058
MAX_COLOURFULNESS = 20.0  # Hasler-Suesstrunk on 0-255 RGB; gray films 0, CXR JPEGs < 5; photos 38-135
#: Weak cues: an image is refused when it shows at least this many of them (CXRs: 0 for 93%, >= 3 for 0.1%).
MIN_WEAK_CUES = 3


@dataclass(frozen=True)
class ImageCues:
    """Measurements behind the image verdict (all on a grey copy in [0, 1])."""

    aspect: float
    std: float
    symmetry: float  # correlation with the left-right mirror (CXR median 0.74)
    mediastinum: float  # centre band minus lung bands, mid rows (CXR median 0.22)
    template: float  # correlation with a coarse frontal-chest template (CXR median 0.46)
    strong_edges: float  # fraction of pixels with Sobel magnitude > 0.2 (CXR p99.5 0.029)
    any_edges: float  # fraction with Sobel magnitude > 0.1 (CXR p99.5 0.136)
    roughness: float  # mean |Laplacian| / std at 256 px (CXR max 0.52)
    white: float  # fraction of pixels > 0.85
    dark: float  # fraction of pixels < 0.15
    median: float

    def weak(self) -> list[str]:
        """Names of the weak non-CXR cues this image shows."""
        cues = []
        if self.aspect > 1.45:
            cues.append("not a detector's proportions")
        if self.symmetry < 0.15:
            cues.append("no left-right symmetry")
        if self.mediastinum < 0.0:
            cues.append("no bright mediastinum between darker lungs")
        if self.template < 0.05:
            cues.append("no chest layout")
        if self.strong_edges > 0.035:
            cues.append("sharp photographic edges")
        if self.any_edges > 0.15:
            cues.append("dense edges")
        if self.roughness > 0.5:
            cues.append("fine texture")
        return cues

    def two_level(self) -> bool:
        """Almost only black and white pixels (CXR max 0.65 of pixels at the extremes): a page, drawing or mask."""
        return self.white + self.dark > 0.85

    def is_document(self) -> bool:
        """A white page with sparse dark strokes (text, a scanned document)."""
        return self.two_level() and self.white > 0.5 and self.strong_edges > 0.005


def _chest_template(n: int = 64) -> np.ndarray:
    # Body wall, two dark lungs, a bright mediastinum: the coarse layout of any frontal chest film.
    from scipy.ndimage import gaussian_filter

    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    t = np.full((n, n), 0.55)
    t[(x < 0.07) | (x > 0.93)] = 0.15
    for cx in (0.3, 0.7):
        t[((x - cx) / 0.17) ** 2 + ((y - 0.47) / 0.33) ** 2 < 1] = 0.25
    t[(np.abs(x - 0.5) < 0.07) & (y > 0.1)] = 0.7
    return gaussian_filter(t, 2)


_TEMPLATE: np.ndarray | None = None


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denominator) if denominator > 1e-12 else 0.0


def image_cues(pixels: np.ndarray) -> ImageCues:
    """Measure the cues :func:`check_image` decides on (pixels: 2-D, values in [0, 1])."""
    from skimage.filters import laplace, sobel
    from skimage.transform import resize

    global _TEMPLATE
    p = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    h, w = p.shape
    # Very large images are decimated first: the cues are coarse and resize's antialiasing is costly.
    step = max(1, max(h, w) // 1024)
    p = p[::step, ::step]
    square = resize(p, (256, 256), anti_aliasing=True)
    small = square.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    tiny = square.reshape(64, 4, 64, 4).mean(axis=(1, 3))
    if _TEMPLATE is None:
        _TEMPLATE = _chest_template()
    rows = slice(38, 90)
    centre = float(small[rows, 58:70].mean())
    lungs = float(np.concatenate([small[rows, 25:45].ravel(), small[rows, 83:103].ravel()]).mean())
    edges = sobel(square)
    shape = (256, max(1, round(256 * w / h))) if h >= w else (max(1, round(256 * h / w)), 256)
    longer = resize(p, shape, anti_aliasing=True)
    return ImageCues(
        aspect=max(h, w) / max(1, min(h, w)),
        std=float(p.std()),
        symmetry=_correlation(small, small[:, ::-1]),
        mediastinum=centre - lungs,
        template=_correlation(tiny, _TEMPLATE),
        strong_edges=float((edges > 0.2).mean()),
        any_edges=float((edges > 0.1).mean()),
        roughness=float(np.abs(laplace(longer)).mean() / (longer.std() + 1e-6)),
        white=float((p > 0.85).mean()),
        dark=float((p < 0.15).mean()),
        median=float(np.median(p)),
    )


def _refuse(reason: str, score: float = 0.0) -> GuardVerdict:
    return GuardVerdict(False, f"{reason} {IMAGE_REFUSAL}", round(score, 4), "image")


def check_image(image: CXRImage) -> GuardVerdict:
    """Is ``image`` plausibly a frontal chest radiograph? Refuses clear non-CXRs with the reason.

    Decisive: fewer than :data:`MIN_SIDE` pixels a side, aspect ratio over :data:`MAX_ASPECT`, a blank
    (near-constant) image, ``meta["colourfulness"]`` over :data:`MAX_COLOURFULNESS`, a text page.
    Otherwise refused when it shows :data:`MIN_WEAK_CUES` or more weak cues (:meth:`ImageCues.weak`).
    ``score`` is the share of weak cues absent (1 = nothing unlike a CXR).
    """
    pixels = np.asarray(image.pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        return _refuse(f"The image has shape {pixels.shape}, not a 2-D grey image.")
    h, w = pixels.shape
    if min(h, w) < MIN_SIDE:
        return _refuse(f"The image is {w}x{h} pixels, too small to be a radiograph.")
    if max(h, w) / min(h, w) > MAX_ASPECT:
        return _refuse(
            f"The image is {w}x{h} pixels (aspect {max(h, w) / min(h, w):.1f}:1); chest films are near square."
        )
    try:
        colour = float(image.meta.get("colourfulness", 0.0) or 0.0)
    except (TypeError, ValueError):
        colour = 0.0
    if colour > MAX_COLOURFULNESS:
        return _refuse(f"The image is a colour picture (colourfulness {colour:.0f}); radiographs are grey.")
    cues = image_cues(pixels)
    if cues.std < BLANK_STD:
        return _refuse("The image is blank (almost one grey level).")
    if cues.is_document():
        return _refuse("The image looks like a page of text or a document (white with sparse dark strokes).")
    if cues.two_level():
        return _refuse(
            "The image is almost only black and white (a drawing, mask or scan), not a radiograph's grey scale."
        )
    weak = cues.weak()
    score = 1.0 - len(weak) / 7.0
    if len(weak) >= MIN_WEAK_CUES:
        return _refuse(f"The image does not look like a chest radiograph ({', '.join(weak)}).", score)
    return GuardVerdict(True, "A grey image with a chest radiograph's layout.", round(score, 4), "image")


__all__ = ["BLANK_STD", "IMAGE_REFUSAL", "MAX_ASPECT", "MAX_COLOURFULNESS", "MIN_SIDE", "MIN_WEAK_CUES", "ImageCues",
           "check_image", "image_cues"]
