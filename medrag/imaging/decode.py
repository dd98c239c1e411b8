"""Image input: bytes or a path -> :class:`~medrag.records.CXRImage`.

Reads PNG, JPEG, TIFF, BMP, GIF, WebP (anything Pillow decodes) and DICOM (:mod:`medrag.imaging.dicom`).
Output pixels are 2-D float32 in [0, 1], 0 = black:

* 8-bit (and 1-bit) grayscale is divided by 255 (no stretching, so exposure is preserved);
* colour (RGB, RGBA, CMYK, palette, YCbCr...) is converted to luma, with a warning and
  ``meta["colourfulness"]`` (Hasler-Suesstrunk, on the original colours) for the image guard;
* 16-bit, 32-bit integer and float images are min-max normalised;
* DICOM: modality LUT, then VOI LUT or window centre/width, then min-max; MONOCHROME1 is inverted.

Choices where the brief allowed either:

* multi-frame input (animated GIF, multi-page TIFF, multi-frame DICOM) is *rejected* with
  :class:`UnsupportedImageError`: a radiograph is one frame, and silently picking frame 1 of a
  cine loop would analyse the wrong picture;
* non-finite values in float images (NaN, inf) are *replaced* by the lowest finite value with
  a warning; an image with no finite value at all is rejected.

Size limits (:mod:`medrag.imaging.limits`) are checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from medrag.errors import (
    EmptyInputError,
    ImageTooLargeError,
    InputError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
)
from medrag.imaging.convert import minmax, replace_non_finite, rgb_to_gray, to_unit_float32
from medrag.imaging.dicom import decode_dicom, looks_like_dicom, try_raw_dicom
from medrag.imaging.limits import MAX_FILE_BYTES, MAX_PIXELS, MAX_WORKING_PIXELS, check_size, working_factor
from medrag.pixels import compute_pixel_hash
from medrag.records import CXRImage

# Pillow warns above this and raises DecompressionBombError above twice this; we check the
# header ourselves first, so this only backs up our own limit for code paths we do not control.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_BLANK_STD = 0.01

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"BM", 0, "bmp"),
    (b"WEBP", 8, "webp"),
    (b"\x00\x00\x00\x0cjP  ", 0, "jpeg2000"),
)


def load_image(source: str | Path | bytes, *, name: str = "") -> CXRImage:
    """Decode a chest X-ray from a path or raw bytes.

    Raises EmptyInputError, NotAnImageError, TruncatedImageError, ImageTooLargeError or
    UnsupportedImageError (all :class:`~medrag.errors.InputError`) with a message that says what
    to do; never a bare decoder exception.
    """
    data, name = _read_source(source, name)
    if not data:
        raise EmptyInputError(f"{name or 'the file'} is empty (0 bytes); choose another file.")
    warnings: list[str] = []
    meta = _base_meta(name, "")
    meta["file_size"] = len(data)
    if looks_like_dicom(data):
        pixels = decode_dicom(data, meta, warnings, force=False)
    else:
        kind = _sniff(data)
        if kind is None and not _looks_like_text(data):
            # Headerless (no preamble) DICOM still exists in old archives.
            raw = try_raw_dicom(data, meta, warnings)
            pixels = raw if raw is not None else _decode_pillow(data, kind, meta, warnings, name)
        else:
            pixels = _decode_pillow(data, kind, meta, warnings, name)
    eight_bit = pixels if pixels.dtype == np.uint8 else None
    pixels = to_unit_float32(pixels)
    meta["width"], meta["height"] = int(pixels.shape[1]), int(pixels.shape[0])
    _finish_meta(pixels, meta, warnings)
    image = CXRImage(pixels=pixels, meta=meta, file_hash=hashlib.sha256(data).hexdigest())
    if eight_bit is not None:
        image._uint8 = eight_bit  # the file's own 8-bit pixels: to_uint8(pixels) would give them back exactly
    image.pixel_hash = compute_pixel_hash(image.uint8_pixels())
    return image


def from_array(pixels: np.ndarray, *, name: str = "", fmt: str = "array") -> CXRImage:
    """Wrap float pixels in [0, 1] (e.g. a phantom) as a :class:`CXRImage` with full metadata."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D grayscale array, got shape {arr.shape}; pass one channel.")
    warnings: list[str] = []
    arr = replace_non_finite(arr, warnings)
    arr = np.ascontiguousarray(np.clip(arr, 0.0, 1.0))
    meta = _base_meta(name, fmt)
    meta.update(width=int(arr.shape[1]), height=int(arr.shape[0]), bit_depth=32)
    _finish_meta(arr, meta, warnings)
    image = CXRImage(pixels=arr, meta=meta, file_hash="")
    image.pixel_hash = compute_pixel_hash(image.uint8_pixels())
    return image


def _read_source(source: str | Path | bytes, name: str) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    if not path.is_file():
        raise InputError(f"{path} is not a file; choose an image file (PNG, JPEG or DICOM).")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageTooLargeError(
            f"{path.name} is {size / 2**20:.0f} MiB; MedRAG reads files up to "
            f"{MAX_FILE_BYTES // 2**20} MiB. Downsample or export a smaller image."
        )
    return path.read_bytes(), name or path.name


def _base_meta(name: str, fmt: str) -> dict[str, Any]:
    return {
        "name": name,
        "format": fmt,
        "width": 0,
        "height": 0,
        "bit_depth": 8,
        "converted_from_rgb": False,
        "colourfulness": 0.0,
        "photometric": "MONOCHROME2",
        "window": None,
        "dicom": {},
        "burned_in_annotation": False,
        "warnings": [],
    }


def _finish_meta(pixels: np.ndarray, meta: dict[str, Any], warnings: list[str]) -> None:
    # On at most ~1 megapixel: std makes a full-size float temporary, and a blank image is blank at any step.
    step = max(1, int((pixels.size / 1e6) ** 0.5))
    sample = pixels[::step, ::step]
    std = float(sample.std())
    if std < _BLANK_STD:
        tone = "black" if float(sample.mean()) < 0.5 else "white"
        warnings.append(f"blank image: nearly uniform {tone} pixels (std {std:.4f}); check the file.")
    meta["warnings"] = list(warnings)


def _sniff(data: bytes) -> str | None:
    for magic, offset, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    return None


def _looks_like_text(data: bytes) -> bool:
    head = data[:2048]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- Pillow formats

#: Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic coded).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_precision(data: bytes) -> int | None:
    """Bits per sample declared by a JPEG's start-of-frame segment; None when no frame header is found."""
    at = 2  # after SOI
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # segments without a length
            at += 2
            continue
        if marker in _JPEG_SOF:
            return data[at + 4] if at + 4 < len(data) else None
        if marker in (0xD9, 0xDA):  # end of image, or entropy-coded data: no frame header before it
            return None
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None



def _decode_pillow(
    data: bytes, kind: str | None, meta: dict[str, Any], warnings: list[str], name: str
) -> np.ndarray:
    what = name or "the image"
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{what} declares far more than {MAX_PIXELS / 1e6:.0f} megapixels, the most MedRAG accepts; "
            "downsample it (a chest X-ray needs about 2048 px) and try again."
        ) from exc
    except Exception as exc:
        precision = _jpeg_precision(data) if kind == "jpeg" else None
        if precision is not None and precision != 8:
            raise UnsupportedImageError(
                f"{what} is a {precision}-bit JPEG, which MedRAG does not support (it reads 8-bit JPEG); "
                f"convert it to PNG (16-bit PNG keeps all {precision} bits) or to uncompressed DICOM and try again."
            ) from exc
        if kind is not None:
            raise TruncatedImageError(
                f"{what} starts like a {kind.upper()} file but its header is damaged or cut short; "
                "re-export or re-download it."
            ) from exc
        hint = " It looks like a text file renamed as an image." if _looks_like_text(data) else ""
        raise NotAnImageError(
            f"{what} is not an image MedRAG can read.{hint} Use PNG, JPEG or DICOM."
        ) from exc
    fmt = (img.format or kind or "unknown").lower()
    meta["format"] = fmt
    width, height = img.size
    check_size(width, height, what)
    frames = int(getattr(img, "n_frames", 1) or 1)
    if frames > 1:
        raise UnsupportedImageError(
            f"{what} has {frames} frames (animated or multi-page {fmt.upper()}); MedRAG analyses one "
            "radiograph: save the frame you want as PNG."
        )
    source_mode = img.mode
    factor = working_factor(width, height)
    try:
        if factor > 1 and fmt == "jpeg":
            # JPEG decodes straight at 1/2, 1/4 or 1/8 scale (DCT scaling): the full size never exists.
            img.draft(None, (-(-width // factor), -(-height // factor)))
        orientation = img.getexif().get(0x0112, 1)
        img.load()
        img = _reduce_to_working_size(img, (width, height), meta, warnings)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
            meta["orientation_corrected"] = True
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{what} is too large to decode safely ({exc}); downsample it.") from exc
    except Exception as exc:
        raise TruncatedImageError(
            f"{what} is truncated or corrupt ({type(exc).__name__}: {exc}); re-export or re-download it."
        ) from exc
    return _pillow_pixels(img, meta, warnings, source_mode)


#: Modes ``Image.reduce`` handles; the others are converted first (1 -> L, P -> RGB(A), I;16 -> I).
_REDUCIBLE = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"})
_REDUCE_AS = {"1": "L", "P": "RGB", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}


def _reduce_to_working_size(
    img: Image.Image, original: tuple[int, int], meta: dict[str, Any], warnings: list[str]
) -> Image.Image:
    """``img`` box-averaged by the whole factor that brings it to :data:`MAX_WORKING_PIXELS` (a JPEG may
    arrive already scaled by ``draft``), in its own 8/16-bit mode, so no full-size float copy is ever made."""
    factor = working_factor(*img.size)
    if factor > 1:
        if img.mode not in _REDUCIBLE:
            img = img.convert(_REDUCE_AS.get(img.mode, "RGB"))
        img = img.reduce(factor)
    if img.size != original:
        meta["original_width"], meta["original_height"] = original
        warnings.append(
            f"reduced from {original[0]}x{original[1]} to {img.size[0]}x{img.size[1]} pixels as it was decoded "
            f"(MedRAG works with at most {MAX_WORKING_PIXELS / 1e6:.1f} megapixels)."
        )
    return img



def _pillow_pixels(
    img: Image.Image, meta: dict[str, Any], warnings: list[str], source_mode: str | None = None
) -> np.ndarray:
    """Pixels of a loaded image; ``source_mode`` is the file's own mode when ``img`` was converted to reduce it."""
    mode = img.mode
    source = source_mode or mode
    meta["mode"] = source
    # 8-bit grey comes back as uint8: load_image scales it and keeps it for the hash and the thumbnail.
    if mode == "1":
        meta["bit_depth"] = 1
        return np.ascontiguousarray(np.asarray(img.convert("L"), dtype=np.uint8))
    if mode == "L":
        if source == "1":
            meta["bit_depth"] = 1
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if mode in ("LA", "La"):
        warnings.append("alpha channel dropped.")
        return np.asarray(img.getchannel(0), dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        meta["bit_depth"] = 16
        return minmax(np.asarray(img).astype(np.float64), full_scale=65535.0)
    if mode == "I":
        arr = np.asarray(img).astype(np.float64)
        meta["bit_depth"] = 16 if arr.min() >= 0 and arr.max() <= 65535 else 32
        return minmax(arr, full_scale=float(2 ** meta["bit_depth"] - 1))
    if mode == "F":
        meta["bit_depth"] = 32
        return minmax(replace_non_finite(np.asarray(img, dtype=np.float32), warnings))
    # Colour: RGB(A), CMYK, YCbCr, LAB, HSV, palette...
    meta["bit_depth"] = 8
    meta["photometric"] = "RGB"
    rgb = np.asarray(img if mode == "RGB" else img.convert("RGB"))
    label = "palette" if source in ("P", "PA") else source
    return rgb_to_gray(rgb, meta, warnings, label)


__all__ = ["from_array", "load_image"]
