"""DICOM: the one DICOM sniffer, and decoding to [0, 1] grayscale with the file's own windowing.

Modality LUT (rescale slope/intercept), then VOI LUT or window centre/width, then min-max;
MONOCHROME1 is inverted so bone is always white. Colour and palette DICOM become luma. Tags are
de-identified (:mod:`medrag.deid`) into ``meta["dicom"]``; multi-frame files are refused.
pydicom is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from medrag.errors import TruncatedImageError, UnsupportedImageError
from medrag.imaging.convert import minmax, replace_non_finite, rgb_to_gray
from medrag.imaging.limits import check_size

#: The DICOM magic: after a 128-byte preamble (Part 10 files), or at offset 0 in some old archives.
DICOM_MAGIC = b"DICM"
_PREAMBLE = 128


def looks_like_dicom(source: bytes | bytearray | memoryview | str | Path) -> bool:
    """True when ``source`` (the file's bytes, or its path) carries the DICOM magic ``DICM``.

    A path that cannot be read is not DICOM (False, no error). Headerless DICOM without the magic is
    not detected here; :func:`try_raw_dicom` finds it by parsing.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[: _PREAMBLE + 4])
    else:
        try:
            with open(source, "rb") as handle:
                head = handle.read(_PREAMBLE + 4)
        except OSError:
            return False
    return head[_PREAMBLE : _PREAMBLE + 4] == DICOM_MAGIC or head[:4] == DICOM_MAGIC


def try_raw_dicom(data: bytes, meta: dict[str, Any], warnings: list[str]) -> np.ndarray | None:
    """Decode a DICOM without preamble; None when the bytes are not one."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        plausible = "Rows" in ds and "Columns" in ds and len(ds) >= 3
    except Exception:
        return None
    if not plausible:
        return None
    return decode_dicom(data, meta, warnings, force=True)


def decode_dicom(data: bytes, meta: dict[str, Any], warnings: list[str], *, force: bool) -> np.ndarray:
    """Pixels of a single-frame DICOM (float32 in [0, 1], or luma of colour), filling ``meta``/``warnings``.

    Raises TruncatedImageError or UnsupportedImageError with a message that says what to do.
    """
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
    check_size(cols, rows, "the DICOM image")
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
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        return _dicom_colour(arr, ds, photometric, meta, warnings)
    return _dicom_gray(arr, ds, photometric, meta, warnings)


def _dicom_gray(
    arr: np.ndarray, ds: Any, photometric: str, meta: dict[str, Any], warnings: list[str]
) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = replace_non_finite(np.asarray(apply_modality_lut(arr, ds), dtype=np.float64), warnings)
    if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
        try:
            lut_input = values
            if "VOILUTSequence" not in ds:
                _check_window(ds)
            elif np.array_equal(values, np.round(values)):
                lut_input = values.astype(np.int64)  # a LUT is indexed by integers
            windowed = np.asarray(apply_voi_lut(lut_input, ds, index=0), dtype=np.float64)
            if not np.isfinite(windowed).all():
                raise ValueError("it gives non-finite values")
            if windowed.max() == windowed.min() and values.max() > values.min():
                raise ValueError("it maps every pixel to the same grey level")
            values = windowed
            if "VOILUTSequence" in ds:
                meta["window"] = "VOI LUT"
            else:
                meta["window"] = [_first(ds.WindowCenter), _first(ds.WindowWidth)]
        except Exception as exc:
            warnings.append(f"the DICOM window/VOI LUT is invalid and was ignored ({exc}).")
    pixels = minmax(values)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels


def _dicom_colour(
    arr: np.ndarray, ds: Any, photometric: str, meta: dict[str, Any], warnings: list[str]
) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        _check_palette(ds)
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise UnsupportedImageError(f"the DICOM palette cannot be applied ({exc}); export as grayscale.") from exc
    rgb = np.asarray(arr, dtype=np.float64)
    peak = float(rgb.max()) or 1.0
    scale = 255.0 / (65535.0 if peak > 255 else 255.0)
    rgb8 = np.clip(rgb * scale, 0, 255).astype(np.uint8)
    return rgb_to_gray(rgb8, meta, warnings, f"DICOM {photometric}")


def _check_window(ds: Any) -> None:
    """Raise ValueError for a window centre/width that is not a finite number (NaN, inf, 1e999)."""
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ValueError(f"centre {center:g}, width {width:g}: not finite numbers")


def _check_palette(ds: Any) -> None:
    """Raise UnsupportedImageError when the palette tables do not hold the entries their descriptors declare.

    pydicom derives the entry size from the table's length, so a short table becomes a numpy error
    ("Alias 'uint0' was removed") instead of a message about the file.
    """
    for colour in ("Red", "Green", "Blue"):
        table = ds.get(f"{colour}PaletteColorLookupTableData")
        if table is None and f"Segmented{colour}PaletteColorLookupTableData" in ds:
            continue  # segmented tables are checked by pydicom as it expands them
        descriptor = ds.get(f"{colour}PaletteColorLookupTableDescriptor")
        try:
            # A first value of 0 means 65,536 entries (PS3.3 C.7.6.3.1.5).
            entries = (int(descriptor[0]) or 2**16) if len(descriptor) == 3 else 0
        except (TypeError, ValueError):  # a missing (None) or malformed descriptor
            entries = 0
        size = len(table) if isinstance(table, (bytes, bytearray)) else 0
        # 1- or 2-byte entries; an odd count of 1-byte entries is padded to an even length.
        if not entries or size not in (entries, entries + entries % 2, 2 * entries):
            raise UnsupportedImageError(
                f"the DICOM palette colour table is damaged: the {colour.lower()} table should hold "
                f"{entries or 'a declared number of'} entries of 1 or 2 bytes but has {size} bytes; "
                "re-export the image, or export it as grayscale."
            )


def _first(value: Any) -> float:
    """First value of a possibly multi-valued DICOM number."""
    if isinstance(value, (str, bytes)):
        return float(value)
    try:
        return float(value[0])
    except TypeError:
        return float(value)


__all__ = ["DICOM_MAGIC", "decode_dicom", "looks_like_dicom", "try_raw_dicom"]
