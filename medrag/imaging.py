"""Image input: bytes or a path -> :class:`~medrag.records.CXRImage`, plus viewer helpers.

Reads PNG, JPEG, TIFF, BMP, GIF, WebP (anything Pillow decodes) and DICOM (pydicom).
Output pixels are 2-D float32 in [0, 1], 0 = black:

* 8-bit (and 1-bit) grayscale is divided by 255 (no stretching, so exposure is preserved);
* colour (RGB, RGBA, CMYK, palette, YCbCr...) is converted to luma, with a warning and
  ``meta["colourfulness"]`` (Hasler-Suesstrunk, on the original colours) for the image guard;
* 16-bit, 32-bit integer and float images are min-max normalised;
* DICOM: modality LUT (rescale slope/intercept), then VOI LUT or window centre/width, then
  min-max; MONOCHROME1 is inverted so bone is always white.

Choices where the brief allowed either:

* multi-frame input (animated GIF, multi-page TIFF, multi-frame DICOM) is *rejected* with
  :class:`UnsupportedImageError`: a radiograph is one frame, and silently picking frame 1 of a
  cine loop would analyse the wrong picture;
* non-finite values in float images (NaN, inf) are *replaced* by the lowest finite value with
  a warning; an image with no finite value at all is rejected.

Size limits are checked from the header before any pixel is decoded: more than
:data:`MAX_PIXELS` raises :class:`ImageTooLargeError`; a side under :data:`MIN_SIDE` raises
:class:`UnsupportedImageError`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
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
from medrag.records import CXRImage

#: Most pixels (width x height) an image may have; larger is refused before decoding.
MAX_PIXELS = 50_000_000
#: Smallest accepted side in pixels.
MIN_SIDE = 32
#: Largest file read into memory (an uncompressed 50-megapixel 16-bit DICOM is ~100 MB).
MAX_FILE_BYTES = 512 * 1024 * 1024

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


# --------------------------------------------------------------------------- public helpers


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] -> uint8 (rounded half to even; values outside [0, 1] are clipped, NaN -> 0)."""
    arr = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    # In place on one temporary: a full-size image passes through here once per import of a non-8-bit file.
    scaled = np.clip(arr, 0.0, 1.0)
    scaled *= np.float32(255.0)
    np.round(scaled, out=scaled)
    return scaled.astype(np.uint8)


def compute_pixel_hash(pixels: np.ndarray) -> str:
    """sha256 hex of the 8-bit pixels plus the shape: identical-looking images share it.

    ``pixels`` are floats in [0, 1], or already 8-bit (``uint8``, as :func:`to_uint8` would give).
    """
    u8 = np.ascontiguousarray(pixels if pixels.dtype == np.uint8 else to_uint8(pixels))
    digest = hashlib.sha256(f"{u8.shape[0]}x{u8.shape[1]};".encode())
    digest.update(u8.tobytes())
    return digest.hexdigest()


def from_array(pixels: np.ndarray, *, name: str = "", fmt: str = "array") -> CXRImage:
    """Wrap float pixels in [0, 1] (e.g. a phantom) as a :class:`CXRImage` with full metadata."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D grayscale array, got shape {arr.shape}; pass one channel.")
    warnings: list[str] = []
    arr = _finite(arr, warnings)
    arr = np.ascontiguousarray(np.clip(arr, 0.0, 1.0))
    meta = _base_meta(name, fmt)
    meta.update(width=int(arr.shape[1]), height=int(arr.shape[0]), bit_depth=32)
    _finish_meta(arr, meta, warnings)
    image = CXRImage(pixels=arr, meta=meta, file_hash="")
    image.pixel_hash = compute_pixel_hash(image.uint8_pixels())
    return image


def make_thumbnail(pixels: np.ndarray, size: int = 256) -> Image.Image:
    """A grayscale ("L") PIL image whose longer side is ``size`` pixels (aspect kept).

    ``pixels`` are floats in [0, 1] or already 8-bit (``CXRImage.uint8_pixels()``).
    """
    img = Image.fromarray(pixels if pixels.dtype == np.uint8 else to_uint8(pixels), mode="L")
    if max(img.size) >= 2 * size:
        # An integer box reduction first: the LANCZOS pass then works on a small image (4x faster).
        img = img.reduce(max(img.size) // size)
    return ImageOps.contain(img, (size, size), method=Image.Resampling.LANCZOS)


#: JPEG quality of library thumbnails (grid previews; the viewer and Compare always show the original).
THUMBNAIL_JPEG_QUALITY = 90


def save_thumbnail(image: CXRImage, thumbs_dir: Path, size: int = 256) -> Path:
    """Write the thumbnail to ``<thumbs_dir>/<hash[:2]>/<pixel_hash>.jpg`` and return the path.

    Content-addressed: an existing file is never rewritten. Written atomically (temp file in the
    same folder, ``os.replace``; not fsynced: a thumbnail can always be made again, and a killed
    process never leaves a torn file). Sizes other than 256 get a ``_<size>`` name suffix. JPEG, not
    PNG: encoding a 256-px preview takes 0.13 ms instead of 1.6 ms (PNG at its fastest level), the
    largest single cost of importing an image (BENCHMARKS.md, Ingest).
    """
    pixel_hash = image.pixel_hash or compute_pixel_hash(image.pixels)
    suffix = "" if size == 256 else f"_{size}"
    target = Path(thumbs_dir) / pixel_hash[:2] / f"{pixel_hash}{suffix}.jpg"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    make_thumbnail(image.uint8_pixels(), size).save(buf, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
    atomic_write(target, buf.getvalue(), durable=False)
    return target


def apply_window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window on the [0, 1] scale: ``center - width/2`` -> 0, ``center + width/2`` -> 1."""
    if not width > 0:
        raise InputError(f"window width must be positive, got {width}; try a width such as 0.5.")
    low = center - width / 2.0
    out = (np.asarray(pixels, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def invert(pixels: np.ndarray) -> np.ndarray:
    """Negative image (1 - pixels)."""
    return (1.0 - np.asarray(pixels, dtype=np.float32)).astype(np.float32)


def enhance_contrast(pixels: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE) for viewing."""
    from skimage.exposure import equalize_adapthist

    arr = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)
    return equalize_adapthist(arr, clip_limit=0.01).astype(np.float32)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of an RGB uint8 array (0 for gray)."""
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return 0.0
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    std_root = float(np.sqrt(rg.std() ** 2 + yb.std() ** 2))
    mean_root = float(np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    return std_root + 0.3 * mean_root


def is_grayscale_like(image: CXRImage, max_colourfulness: float = 10.0) -> bool:
    """True when the original was grayscale or colour with hardly any colour in it."""
    return float(image.meta.get("colourfulness", 0.0)) <= max_colourfulness


# --------------------------------------------------------------------------- loading


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
    if _looks_like_dicom(data):
        pixels = _decode_dicom(data, meta, warnings, force=False)
    else:
        kind = _sniff(data)
        if kind is None and not _looks_like_text(data):
            # Headerless (no preamble) DICOM still exists in old archives.
            pixels = _try_raw_dicom(data, meta, warnings)
            if pixels is None:
                pixels = _decode_pillow(data, kind, meta, warnings, name)
        else:
            pixels = _decode_pillow(data, kind, meta, warnings, name)
    eight_bit = pixels if pixels.dtype == np.uint8 else None
    pixels = _to_unit_float32(pixels)
    meta["width"], meta["height"] = int(pixels.shape[1]), int(pixels.shape[0])
    _finish_meta(pixels, meta, warnings)
    image = CXRImage(pixels=pixels, meta=meta, file_hash=hashlib.sha256(data).hexdigest())
    if eight_bit is not None:
        image._uint8 = eight_bit  # the file's own 8-bit pixels: to_uint8(pixels) would give them back exactly
    image.pixel_hash = compute_pixel_hash(image.uint8_pixels())
    return image


def _to_unit_float32(pixels: np.ndarray) -> np.ndarray:
    """C-contiguous float32 in [0, 1]: 8-bit input scaled by 1/255, floats clipped (in place when the
    decoder handed over an array of its own)."""
    if pixels.dtype == np.uint8:
        out = pixels.astype(np.float32)
        out /= np.float32(255.0)
        return out
    if pixels.dtype == np.float32 and pixels.flags.c_contiguous and pixels.flags.writeable and pixels.flags.owndata:
        return np.clip(pixels, 0.0, 1.0, out=pixels)
    return np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)


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
    std = float(pixels.std())
    if std < _BLANK_STD:
        tone = "black" if float(pixels.mean()) < 0.5 else "white"
        warnings.append(f"blank image: nearly uniform {tone} pixels (std {std:.4f}); check the file.")
    meta["warnings"] = list(warnings)


def atomic_write(target: Path, payload: bytes, *, durable: bool = True) -> None:
    """Write ``payload`` to ``target`` via a unique temp file in the same folder, (fsync,) rename.

    ``durable`` adds an fsync so the bytes survive a power loss, not only a killed process.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _looks_like_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM" or data[:4] == b"DICM"


def _check_size(width: int, height: int, what: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height / 1e6:.0f} megapixels; MedRAG accepts at most "
            f"{MAX_PIXELS / 1e6:.0f}. Downsample it (a chest X-ray needs about 2048 px) and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise UnsupportedImageError(
            f"{what} is only {width}x{height} pixels; MedRAG needs at least {MIN_SIDE}x{MIN_SIDE}. "
            "Use the full-resolution radiograph, not an icon."
        )


def _finite(arr: np.ndarray, warnings: list[str]) -> np.ndarray:
    finite = np.isfinite(arr)
    if finite.all():
        return arr
    if not finite.any():
        raise UnsupportedImageError(
            "the image has no finite pixel values (all NaN or infinite); re-export it."
        )
    bad = int((~finite).sum())
    low = float(arr[finite].min())
    warnings.append(f"{bad} non-finite pixel values (NaN/inf) replaced by the lowest value.")
    return np.where(finite, arr, low).astype(arr.dtype)


def _minmax(arr: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    arr = arr.astype(np.float64, copy=False)
    low, high = float(arr.min()), float(arr.max())
    if high > low:
        return ((arr - low) / (high - low)).astype(np.float32)
    # A constant image: keep its level relative to the format's range when known.
    level = low / full_scale if full_scale else 0.0
    return np.full(arr.shape, np.clip(level, 0.0, 1.0), dtype=np.float32)


def _rgb_to_gray(rgb: np.ndarray, meta: dict[str, Any], warnings: list[str], what: str) -> np.ndarray:
    """uint8 RGB -> float luma in [0, 1]; records colourfulness and the conversion."""
    small = rgb
    step = max(1, max(rgb.shape[:2]) // 512)
    if step > 1:
        small = rgb[::step, ::step]
    colour = colourfulness(small)
    meta["colourfulness"] = round(colour, 3)
    meta["converted_from_rgb"] = True
    if colour > 10.0:
        warnings.append(f"{what} image with visible colour (colourfulness {colour:.0f}) converted to grayscale.")
    else:
        warnings.append(f"{what} image converted to grayscale (it has almost no colour).")
    rgbf = rgb[..., :3].astype(np.float32)
    # ITU-R BT.601 luma, as Pillow's convert("L").
    gray = rgbf[..., 0] * 0.299 + rgbf[..., 1] * 0.587 + rgbf[..., 2] * 0.114
    return gray / 255.0


# --------------------------------------------------------------------------- Pillow formats


def _decode_pillow(
    data: bytes, kind: str | None, meta: dict[str, Any], warnings: list[str], name: str
) -> np.ndarray:
    what = name or "the image"
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{what} declares far more than {MAX_PIXELS / 1e6:.0f} megapixels, the most MedRAG accepts; "
            "downsample it (a chest X-ray needs about 2048 px) and try again."
        ) from exc
    except Exception as exc:
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
    _check_size(width, height, what)
    frames = int(getattr(img, "n_frames", 1) or 1)
    if frames > 1:
        raise UnsupportedImageError(
            f"{what} has {frames} frames (animated or multi-page {fmt.upper()}); MedRAG analyses one "
            "radiograph: save the frame you want as PNG."
        )
    try:
        img.load()
        orientation = img.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
            meta["orientation_corrected"] = True
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{what} is too large to decode safely ({exc}); downsample it.") from exc
    except Exception as exc:
        raise TruncatedImageError(
            f"{what} is truncated or corrupt ({type(exc).__name__}: {exc}); re-export or re-download it."
        ) from exc
    return _pillow_pixels(img, meta, warnings, what)


def _pillow_pixels(img: Image.Image, meta: dict[str, Any], warnings: list[str], what: str) -> np.ndarray:
    mode = img.mode
    meta["mode"] = mode
    # 8-bit grey comes back as uint8: load_image scales it and keeps it for the hash and the thumbnail.
    if mode == "1":
        meta["bit_depth"] = 1
        return np.ascontiguousarray(np.asarray(img.convert("L"), dtype=np.uint8))
    if mode == "L":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if mode in ("LA", "La"):
        warnings.append("alpha channel dropped.")
        return np.asarray(img.getchannel(0), dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        meta["bit_depth"] = 16
        return _minmax(np.asarray(img).astype(np.float64), full_scale=65535.0)
    if mode == "I":
        arr = np.asarray(img).astype(np.float64)
        meta["bit_depth"] = 16 if arr.min() >= 0 and arr.max() <= 65535 else 32
        return _minmax(arr, full_scale=float(2 ** meta["bit_depth"] - 1))
    if mode == "F":
        meta["bit_depth"] = 32
        arr = _finite(np.asarray(img, dtype=np.float32), warnings)
        return _minmax(arr)
    # Colour: RGB(A), CMYK, YCbCr, LAB, HSV, palette...
    meta["bit_depth"] = 8
    meta["photometric"] = "RGB"
    rgb = np.asarray(img.convert("RGB"))
    label = "palette" if mode in ("P", "PA") else mode
    return _rgb_to_gray(rgb, meta, warnings, label)


# --------------------------------------------------------------------------- DICOM


def _try_raw_dicom(data: bytes, meta: dict[str, Any], warnings: list[str]) -> np.ndarray | None:
    """Decode a DICOM without preamble; None when the bytes are not one."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        plausible = "Rows" in ds and "Columns" in ds and len(ds) >= 3
    except Exception:
        return None
    if not plausible:
        return None
    return _decode_dicom(data, meta, warnings, force=True)


def _decode_dicom(data: bytes, meta: dict[str, Any], warnings: list[str], *, force: bool) -> np.ndarray:
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from medrag.deid import burned_in_annotation, deidentify

    meta["format"] = "dicom"
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except Exception as exc:
        raise TruncatedImageError(
            f"the DICOM file is truncated or corrupt ({type(exc).__name__}: {exc}); re-export it."
        ) from exc
    meta["dicom"] = deidentify(ds)
    meta["burned_in_annotation"] = burned_in_annotation(ds)
    if meta["burned_in_annotation"]:
        warnings.append("the DICOM declares burned-in annotation: the pixels may show identifying text.")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise UnsupportedImageError(
            "the DICOM file has no pixel data (a report, presentation state or key-object note?); "
            "export the image instance of the study instead."
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:
        raise TruncatedImageError(f"the DICOM header lacks valid Rows/Columns ({exc}); re-export it.") from exc
    if frames > 1:
        raise UnsupportedImageError(
            f"the DICOM has {frames} frames (multi-frame/cine); MedRAG analyses a single radiograph: "
            "export one frame (e.g. `dcmj2pnm --frame 1`) or a single-frame instance."
        )
    _check_size(cols, rows, "the DICOM image")
    file_meta = ds.file_meta
    ts = getattr(file_meta, "TransferSyntaxUID", None)
    if ts is None:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ts = file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except Exception as exc:
        if ts.is_compressed:
            raise UnsupportedImageError(
                f"the DICOM pixels are compressed as {ts.name} and no decoder for it is installed. "
                "Install one (`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`) or "
                "decompress the file first (e.g. `gdcmconv --raw in.dcm out.dcm`)."
            ) from exc
        raise TruncatedImageError(
            f"the DICOM pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is "
            "probably truncated: re-export it."
        ) from exc
    meta["bit_depth"] = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    meta["photometric"] = photometric
    if arr.ndim == 3:
        return _dicom_colour(arr, ds, photometric, meta, warnings)
    if photometric == "PALETTE COLOR":
        return _dicom_colour(arr, ds, photometric, meta, warnings)
    return _dicom_gray(arr, ds, photometric, meta, warnings)


def _dicom_gray(
    arr: np.ndarray, ds: Any, photometric: str, meta: dict[str, Any], warnings: list[str]
) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = _finite(np.asarray(apply_modality_lut(arr, ds), dtype=np.float64), warnings)
    if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
        try:
            lut_input = values
            if "VOILUTSequence" in ds and np.array_equal(values, np.round(values)):
                lut_input = values.astype(np.int64)  # a LUT is indexed by integers
            values = np.asarray(apply_voi_lut(lut_input, ds, index=0), dtype=np.float64)
            if "VOILUTSequence" in ds:
                meta["window"] = "VOI LUT"
            else:
                meta["window"] = [_first(ds.WindowCenter), _first(ds.WindowWidth)]
        except Exception as exc:
            warnings.append(f"the DICOM window/VOI LUT is invalid and was ignored ({exc}).")
    pixels = _minmax(values)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels


def _dicom_colour(
    arr: np.ndarray, ds: Any, photometric: str, meta: dict[str, Any], warnings: list[str]
) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise UnsupportedImageError(f"the DICOM palette cannot be applied ({exc}); export as grayscale.") from exc
    rgb = np.asarray(arr, dtype=np.float64)
    peak = float(rgb.max()) or 1.0
    scale = 255.0 / (65535.0 if peak > 255 else 255.0)
    rgb8 = np.clip(rgb * scale, 0, 255).astype(np.uint8)
    return _rgb_to_gray(rgb8, meta, warnings, f"DICOM {photometric}")


def _first(value: Any) -> float:
    """First value of a possibly multi-valued DICOM number."""
    if isinstance(value, (str, bytes)):
        return float(value)
    try:
        return float(value[0])
    except TypeError:
        return float(value)


# --------------------------------------------------------------------------- measurements

#: What :func:`measure` reports. Sides are the patient's (PA convention: patient right = image left).
MEASUREMENTS: dict[str, str] = {
    "mean_intensity": "mean pixel value, 0 = black, 1 = white",
    "contrast": "standard deviation of the pixel values",
    "clipped_fraction": "fraction of pixels at pure black or pure white (8-bit 0 or 255)",
    "sharpness": "variance of the Laplacian of a 256 px copy on the 0-255 scale (higher = sharper)",
    "lung_right": "mean brightness of the right lung field (fixed geometry: image-left mid zone)",
    "lung_left": "mean brightness of the left lung field (image-right mid zone)",
    "lung_asymmetry": "lung_left - lung_right: positive = left field whiter",
    "lower_zone_right": "mean brightness of the right lower lateral zone (costophrenic region)",
    "lower_zone_left": "mean brightness of the left lower lateral zone",
    "lower_zone_asymmetry": "lower_zone_left - lower_zone_right",
    "ctr": "estimated cardiothoracic ratio (max heart width / max thorax width from horizontal "
    "profiles of the lower-middle third); NaN when the profile has no clear heart or lungs. Rough "
    "and biased high: phantoms read ~0.05 above truth; real NIH normal PA/AP films median 0.54 "
    "(IQR 0.46-0.63), NIH cardiomegaly median 0.62, so treat > ~0.6 as suggestive",
    "heart_width": "estimated heart width as a fraction of image width (NaN if not found)",
    "thorax_width": "estimated inner thorax width as a fraction of image width (NaN if not found)",
    "aspect_ratio": "width / height",
    "exposure": "lung-field darkness score in [-1, 1]: below -0.5 suggests under-exposure (white "
    "lungs), above 0.5 over-exposure (black lungs)",
}

_MEASURE_SIDE = 256
_HEART_BORDER_LEVEL = 0.5
_WALL_LEVEL = 0.5
# Fixed lung-field geometry on the normalised image (x, y centre; x, y radius), from the mean of
# real PA films: mid zones and lower lateral (costophrenic) zones. Image-left = patient right.
_ZONES: dict[str, tuple[float, float, float, float]] = {
    "lung_right": (0.32, 0.42, 0.12, 0.18),
    "lung_left": (0.68, 0.42, 0.12, 0.18),
    "lower_zone_right": (0.25, 0.67, 0.08, 0.07),
    "lower_zone_left": (0.75, 0.67, 0.08, 0.07),
}


def _resize_float(pixels: np.ndarray, side: int) -> np.ndarray:
    h, w = pixels.shape
    scale = side / max(h, w)
    if scale >= 1.0:
        return pixels.astype(np.float32, copy=False)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)


def _zone_pixels(small: np.ndarray, zone: tuple[float, float, float, float]) -> np.ndarray:
    h, w = small.shape
    cx, cy, rx, ry = zone
    r0, r1 = max(0, int((cy - ry) * h)), min(h, int(np.ceil((cy + ry) * h)) + 1)
    c0, c1 = max(0, int((cx - rx) * w)), min(w, int(np.ceil((cx + rx) * w)) + 1)
    yy = (np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5) / h
    xx = (np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5) / w
    mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    patch = small[r0:r1, c0:c1][mask]
    return patch if patch.size else small.ravel()


def _zone_mean(small: np.ndarray, zone: tuple[float, float, float, float]) -> float:
    return float(_zone_pixels(small, zone).mean())


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Per row, the index of the first True (or -1 when the row has none)."""
    idx = mask.argmax(axis=1)
    return np.where(mask.any(axis=1), idx, -1)


def _side_extents(half: np.ndarray, border_level: float, wall_level: float) -> tuple[np.ndarray, np.ndarray]:
    """For rows of pixels ordered from the midline outwards: distance to the heart border (first
    pixel darker than ``border_level``) and to the chest wall (first pixel beyond it brighter than
    ``wall_level``). -1 where there is no border; a missing wall is the image edge."""
    n = half.shape[1]
    border = _first_true(half < border_level)
    beyond = (half >= wall_level) & (np.arange(n)[None, :] > border[:, None])
    wall = _first_true(beyond)
    wall = np.where((border >= 0) & (wall < 0), n - 1, wall)
    return border, np.where(border >= 0, wall, -1)


def _continuous_max(extent: np.ndarray, start: int, max_jump: float) -> tuple[float, int]:
    """Largest extent along the rows reachable from ``start`` without a jump above ``max_jump``
    or a row without a border (the heart border running into a diaphragm, the gastric bubble or
    the aortic knob), and the lowest row reached. (NaN, -1) when no row near ``start`` has one."""
    valid = np.nonzero(extent >= 0)[0]
    if valid.size == 0:
        return float("nan"), -1
    start = int(valid[np.argmin(np.abs(valid - start))])
    best = float(extent[start])
    lowest = start
    for step in (1, -1):
        previous = float(extent[start])
        row = start + step
        while 0 <= row < extent.size and extent[row] >= 0 and abs(extent[row] - previous) <= max_jump:
            previous = float(extent[row])
            best = max(best, previous)
            lowest = max(lowest, row)
            row += step
    return best, lowest


def _cardiothoracic(small: np.ndarray, lungs: float) -> tuple[float, float, float]:
    """(ctr, heart width, thorax width) as fractions of the image width, NaNs when unclear.

    CTR = (MRD + MLD) / ID: the largest distances of the right and left heart borders from the
    midline, followed row by row up and down from mid-heart until they jump (into a diaphragm, the
    gastric bubble or the aortic knob), over
    the widest inner thorax. Borders are where a smoothed row crosses halfway between the
    lung-field and mediastinum brightness.
    """
    from scipy.ndimage import gaussian_filter

    h, w = small.shape
    smooth = gaussian_filter(small, sigma=max(1.0, w / 128))
    centre_cols = smooth[int(0.2 * h) : int(0.65 * h), int(0.4 * w) : int(0.6 * w)].mean(axis=0)
    mid = int(0.4 * w) + int(np.argmax(centre_cols))
    mediastinum = float(np.median(smooth[int(0.45 * h) : int(0.65 * h), mid - w // 20 : mid + w // 20 + 1]))
    # The darker part of the lung zones: an enlarged heart or an opacity must not raise it.
    lungs = min(lungs, float(np.percentile(np.concatenate([_zone_pixels(smooth, _ZONES[k]) for k in ("lung_right", "lung_left")]), 30)))
    if mediastinum - lungs < 0.05:
        return float("nan"), float("nan"), float("nan")
    # Levels between lung and mediastinum brightness; 0.35-0.8 were tried on phantoms and NIH
    # films and the midpoint for both separated normal from enlarged hearts best.
    border_level = lungs + _HEART_BORDER_LEVEL * (mediastinum - lungs)
    wall_level = lungs + _WALL_LEVEL * (mediastinum - lungs)
    rows = smooth[int(0.3 * h) : int(0.8 * h)]
    right_border, right_wall = _side_extents(rows[:, mid::-1], border_level, wall_level)
    left_border, left_wall = _side_extents(rows[:, mid:], border_level, wall_level)
    start = int(0.25 * h)  # 0.55 h: inside the heart shadow on any PA film
    mrd, low_r = _continuous_max(right_border, start, 0.03 * w)
    mld, low_l = _continuous_max(left_border, start, 0.03 * w)
    # Inner thorax: widest row from the upper zones down to where the heart borders end.
    rows_to = max(low_r, low_l) + 1
    both = (right_wall[:rows_to] > 0) & (left_wall[:rows_to] > 0)
    widths = (right_wall[:rows_to] + left_wall[:rows_to])[both]
    thorax = float(widths.max()) if widths.size else float("nan")
    heart = mrd + mld
    if not (heart > 0 and thorax > heart):
        return float("nan"), float("nan"), float("nan")
    return heart / thorax, heart / w, thorax / w


def measure(image: CXRImage) -> dict[str, float]:
    """Cheap, rough image measurements for the offline evidence reasoner (see :data:`MEASUREMENTS`).

    Runs on a 256 px copy in a few milliseconds and never raises for a valid CXRImage; values
    that cannot be estimated are NaN (only the ``ctr``/width entries).
    """
    pixels = np.asarray(image.pixels, dtype=np.float32)
    if pixels.ndim != 2 or pixels.size == 0:
        pixels = np.zeros((MIN_SIDE, MIN_SIDE), dtype=np.float32)
    pixels = np.clip(np.nan_to_num(pixels, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    small = _resize_float(pixels, _MEASURE_SIDE)
    step = max(1, max(pixels.shape) // 1024)
    sample = pixels[::step, ::step]
    from scipy.ndimage import laplace

    out: dict[str, float] = {
        "mean_intensity": float(sample.mean()),
        "contrast": float(sample.std()),
        "clipped_fraction": float(((sample <= 0.5 / 255) | (sample >= 1 - 0.5 / 255)).mean()),
        "sharpness": float(laplace(small * 255.0).var()),
    }
    for key, zone in _ZONES.items():
        out[key] = _zone_mean(small, zone)
    out["lung_asymmetry"] = out["lung_left"] - out["lung_right"]
    out["lower_zone_asymmetry"] = out["lower_zone_left"] - out["lower_zone_right"]
    if min(small.shape) >= 16:
        lungs = (out["lung_right"] + out["lung_left"]) / 2
        out["ctr"], out["heart_width"], out["thorax_width"] = _cardiothoracic(small, lungs)
    else:
        out["ctr"] = out["heart_width"] = out["thorax_width"] = float("nan")
    out["aspect_ratio"] = float(pixels.shape[1] / pixels.shape[0])
    lungs = (out["lung_right"] + out["lung_left"]) / 2
    out["exposure"] = float(np.clip((0.45 - lungs) / 0.3, -1.0, 1.0))
    return out
