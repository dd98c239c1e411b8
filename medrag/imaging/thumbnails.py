"""Content-addressed image files: library thumbnails, the PNG copy of an upload, and of a file-less original.

Each file is named by the image's pixel hash (``<folder>/<hash[:2]>/<hash><suffix>``,
:func:`medrag.fsutil.content_path`), written atomically once and never rewritten.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from medrag.fsutil import write_content_addressed
from medrag.pixels import compute_pixel_hash, to_uint8
from medrag.records import CXRImage

#: JPEG quality of library thumbnails (grid previews; the viewer and Compare always show the original).
THUMBNAIL_JPEG_QUALITY = 90


def make_thumbnail(pixels: np.ndarray, size: int = 256) -> Image.Image:
    """A grayscale ("L") PIL image whose longer side is ``size`` pixels (aspect kept).

    ``pixels`` are floats in [0, 1] or already 8-bit (``CXRImage.uint8_pixels()``).
    """
    img = Image.fromarray(pixels if pixels.dtype == np.uint8 else to_uint8(pixels), mode="L")
    if max(img.size) >= 2 * size:
        # An integer box reduction first: the LANCZOS pass then works on a small image (4x faster).
        img = img.reduce(max(img.size) // size)
    return ImageOps.contain(img, (size, size), method=Image.Resampling.LANCZOS)


def save_thumbnail(image: CXRImage, thumbs_dir: Path, size: int = 256) -> Path:
    """Write the thumbnail to ``<thumbs_dir>/<hash[:2]>/<pixel_hash>.jpg`` and return the path.

    Content-addressed: an existing file is never rewritten. Written atomically but not fsynced: a
    thumbnail can always be made again, and a killed process never leaves a torn file. Sizes other
    than 256 get a ``_<size>`` name suffix. JPEG, not PNG: encoding a 256-px preview takes 0.13 ms
    instead of 1.6 ms (PNG at its fastest level), the largest single cost of importing an image
    (BENCHMARKS.md, Ingest).
    """
    pixel_hash = image.pixel_hash or compute_pixel_hash(image.pixels)

    def encode() -> bytes:
        buffer = io.BytesIO()
        make_thumbnail(image.uint8_pixels(), size).save(buffer, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
        return buffer.getvalue()

    suffix = "" if size == 256 else f"_{size}"
    return write_content_addressed(Path(thumbs_dir), pixel_hash, f"{suffix}.jpg", encode, durable=False)


def store_upload(image: CXRImage, uploads_dir: Path) -> Path:
    """A content-addressed 16-bit PNG of the decoded pixels: never the user's path, never DICOM tags.

    ``<uploads_dir>/<hash[:2]>/<pixel_hash>.png``, fsynced (a saved analysis points at it), at PNG
    compress level 1 (the fastest that still compresses: a full-size 16-bit encode).
    """

    def encode() -> bytes:
        pixels16 = np.round(np.clip(image.pixels, 0.0, 1.0) * 65535).astype(np.uint16)
        buffer = io.BytesIO()
        Image.fromarray(pixels16).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    return write_content_addressed(Path(uploads_dir), _hash_of(image), ".png", encode, durable=True)


def store_original(image: CXRImage, images_dir: Path) -> Path:
    """A content-addressed 8-bit PNG of an image that has no file of its own (a parquet cell, bytes).

    ``<images_dir>/<hash[:2]>/<pixel_hash>.png``, fsynced: the library's case points at it. 8-bit, the
    pixels the case id is the hash of, so decoding the copy gives the same case id.
    """

    def encode() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image.uint8_pixels()).save(buffer, format="PNG")
        return buffer.getvalue()

    return write_content_addressed(Path(images_dir), _hash_of(image), ".png", encode, durable=True)


def _hash_of(image: CXRImage) -> str:
    return image.pixel_hash or compute_pixel_hash(image.uint8_pixels())


__all__ = ["THUMBNAIL_JPEG_QUALITY", "make_thumbnail", "save_thumbnail", "store_original", "store_upload"]
