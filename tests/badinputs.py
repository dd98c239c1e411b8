"""Generators of hostile inputs, made in memory inside the tests (nothing is downloaded).

Each generator returns the raw bytes of one kind of bad (or merely awkward) input: broken and
oversized images, odd pixel formats, crafted DICOMs, hostile labels CSVs and parquet files, long
and invisible-character queries. :data:`IMAGE_CASES`, :data:`CSV_CASES`, :data:`PARQUET_CASES`
and :data:`QUERY_CASES` pair every input with what MedRAG is expected to do with it: raise a
specific :class:`~medrag.errors.MedRAGError` subclass whose message contains a fragment, or
accept it (optionally with a warning). RELIABILITY.md documents the same table.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from medrag import errors as E

# ----------------------------------------------------------------------------- small helpers


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def cxr_like(size: int = 128, seed: int = 0) -> np.ndarray:
    """A synthetic chest radiograph (MedRAG's own phantom, no patient) as uint8 pixels."""
    from medrag.phantoms import generate_phantom

    pixels = np.round(generate_phantom(frozenset(), seed, size=max(size, 64)) * 255).astype(np.uint8)
    if size < 64:  # phantoms are drawn at 64 px or more
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
    return pixels


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bytes(size: int = 128, seed: int = 0) -> bytes:
    """A valid 8-bit grayscale PNG."""
    return _save(Image.fromarray(cxr_like(size, seed)), "PNG")


def jpeg_bytes(size: int = 128, seed: int = 0) -> bytes:
    """A valid 8-bit grayscale JPEG."""
    return _save(Image.fromarray(cxr_like(size, seed)), "JPEG", quality=90)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


# ----------------------------------------------------------------------------- images


def empty() -> bytes:
    """Zero bytes."""
    return b""


def text_as_png() -> bytes:
    """A plain-text note (what a .txt renamed to .png contains)."""
    return b"Patient notes: chest pain since Tuesday.\nThis is not an image.\n" * 20


def html_as_png() -> bytes:
    """An HTML page with script, saved under an image name."""
    return b"<html><body><script>alert('x')</script><img src=x onerror=alert(1)></body></html>"


def random_bytes() -> bytes:
    """4 KiB of noise with no known magic number."""
    data = bytearray(_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    data[0:4] = b"\x13\x37\x00\x01"
    return bytes(data)


def truncated_png() -> bytes:
    """The first half of a valid PNG."""
    data = png_bytes(256)
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    """The first half of a valid JPEG."""
    data = jpeg_bytes(256)
    return data[: len(data) // 2]


def png_header_only() -> bytes:
    """PNG signature and IHDR, then nothing."""
    return png_bytes(64)[:33]


def png_corrupt_idat() -> bytes:
    """A PNG whose image data is noise (valid chunk CRCs, invalid zlib stream)."""
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0)
    junk = _rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", junk) + _png_chunk(b"IEND", b"")


def one_pixel() -> bytes:
    """A 1x1 grayscale PNG."""
    return _save(Image.new("L", (1, 1), 128), "PNG")


def png_bomb() -> bytes:
    """A PNG whose IHDR (valid CRC) claims 100 000 x 100 000 pixels, with a tiny IDAT.

    Decoding it would need 10 GB; the header alone must be enough to refuse it.
    """
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    # A few rows of zeros compress to almost nothing: the classic decompression bomb.
    idat = zlib.compress(b"\x00" * (100_001 * 4), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bomb() -> bytes:
    """A JPEG whose SOF0 header claims 65 000 x 65 000 pixels."""
    data = bytearray(jpeg_bytes(64))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "baseline JPEG expected"
    struct.pack_into(">HH", data, sof + 5, 65_000, 65_000)
    return bytes(data)


def png_16bit() -> bytes:
    """A 16-bit grayscale PNG using most of the 0..65535 range."""
    arr = cxr_like(128).astype(np.uint16) * 257
    return _save(Image.fromarray(arr), "PNG")


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (Adobe style), as some scanners and print workflows write."""
    grey = cxr_like(128)
    cmyk = np.stack([np.zeros_like(grey), np.zeros_like(grey), np.zeros_like(grey), 255 - grey], axis=-1)
    return _save(Image.fromarray(cmyk, mode="CMYK"), "JPEG", quality=90)


def animated_gif() -> bytes:
    """A three-frame animated GIF."""
    frames = [Image.fromarray(cxr_like(96, seed)) for seed in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def multipage_tiff() -> bytes:
    """A two-page TIFF."""
    frames = [Image.fromarray(cxr_like(96, seed)) for seed in range(2)]
    return _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def tiff_float_nan() -> bytes:
    """A 32-bit float TIFF with a band of NaN and an infinite pixel."""
    arr = cxr_like(128).astype(np.float32) / 255.0
    arr[10:20, :] = np.nan
    arr[50, 50] = np.inf
    return _save(Image.fromarray(arr, mode="F"), "TIFF")


def tiff_all_nan() -> bytes:
    """A 32-bit float TIFF whose every pixel is NaN."""
    return _save(Image.fromarray(np.full((64, 64), np.nan, np.float32), mode="F"), "TIFF")


def rgb_photo() -> bytes:
    """A colourful RGB 'holiday photo' (sky, grass, a red blob)."""
    yy, xx = np.mgrid[0:160, 0:200]
    rgb = np.zeros((160, 200, 3), np.uint8)
    rgb[..., 2] = np.where(yy < 80, 230, 40)
    rgb[..., 1] = np.where(yy < 80, 150, 190)
    rgb[..., 0] = np.where(((xx - 100) ** 2 + (yy - 60) ** 2) < 400, 240, 30)
    return _save(Image.fromarray(rgb, mode="RGB"), "JPEG", quality=90)


def all_black() -> bytes:
    """A 256x256 PNG of zeros."""
    return _save(Image.new("L", (256, 256), 0), "PNG")


def all_white() -> bytes:
    """A 256x256 PNG of 255s."""
    return _save(Image.new("L", (256, 256), 255), "PNG")


def exif_rotated_jpeg() -> bytes:
    """A grayscale JPEG stored sideways with EXIF orientation 6: upright (128 x 112) once the tag is applied."""
    upright = cxr_like(128)[:, 8:120]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _save(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))), "JPEG", quality=92, exif=exif.tobytes())


def jpeg_12bit() -> bytes:
    """A real 12-bit JPEG (extended process, SOF1): the frame of pydicom's bundled ``JPGExtended.dcm``."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames

    ds = dcmread(get_testdata_file("JPGExtended.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame[:4] == b"\xff\xd8\xff\xc1" and frame[6] == 12, "a 12-bit SOF1 JPEG expected"
    return bytes(frame)


def big_gradient(side: int = 7000) -> np.ndarray:
    """``side`` x ``side`` 8-bit pixels with structure at every scale (not blank), made without float copies."""
    ramp = (np.arange(side, dtype=np.uint32) * 251 // side).astype(np.uint8)
    pixels = np.add.outer(ramp // 2, ramp // 2).astype(np.uint8)
    pixels[::7, ::5] ^= 0x2A
    return pixels


def big_png(side: int = 7000) -> bytes:
    """A ``side``-squared 8-bit grayscale PNG (7000 -> 49 megapixels, just under the 50-megapixel limit)."""
    return _save(Image.fromarray(big_gradient(side), mode="L"), "PNG", compress_level=1)


def big_jpeg(side: int = 7000) -> bytes:
    """The same picture as :func:`big_png`, as an 8-bit grayscale JPEG."""
    return _save(Image.fromarray(big_gradient(side), mode="L"), "JPEG", quality=85)


# ----------------------------------------------------------------------------- DICOM


def dicom_bytes(
    *,
    rows: int = 64,
    cols: int = 64,
    frames: int = 1,
    pixels: bool = True,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    encapsulated: bytes | None = None,
    attrs: dict[str, object] | None = None,
    raw_elements: list[tuple[int, str, object]] | None = None,
    seed: int = 0,
) -> bytes:
    """A DICOM Part 10 file (DX, MONOCHROME2, 16-bit) built with pydicom.

    ``attrs`` sets keywords (e.g. PHI), ``raw_elements`` adds (tag, VR, value) elements with any
    VR (to fake a wrong VR), ``encapsulated`` replaces the pixel data by one compressed fragment.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(seed), str(attrs)])
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in (attrs or {}).items():
        setattr(ds, key, value)
    if pixels:
        if encapsulated is not None:
            ds.PixelData = encapsulate([encapsulated])
            ds["PixelData"].VR = "OB"
        else:
            base = (cxr_like(max(rows, cols), seed)[:rows, :cols].astype(np.uint16) * 16)
            stack = np.stack([base] * frames) if frames > 1 else base
            ds.PixelData = stack.tobytes()
    from pydicom.dataelem import DataElement

    for tag, vr, value in raw_elements or []:
        ds[tag] = DataElement(tag, vr, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, little_endian=True, implicit_vr=False)
    return buf.getvalue()


def dicom_ok() -> bytes:
    """A plain single-frame DX DICOM."""
    return dicom_bytes()


def dicom_multiframe() -> bytes:
    """A three-frame DICOM (cine-like)."""
    return dicom_bytes(frames=3)


def dicom_no_pixels() -> bytes:
    """A DICOM header without any pixel data (like a structured report)."""
    return dicom_bytes(pixels=False)


def dicom_jpegls_no_decoder() -> bytes:
    """A DICOM with JPEG-LS compressed pixels (pydicom has no JPEG-LS decoder without plugins)."""
    frame = b"\xff\xd8\xff\xf7" + b"\x00" * 64 + b"\xff\xd9"
    return dicom_bytes(transfer_syntax="1.2.840.10008.1.2.4.80", encapsulated=frame)


def dicom_wrong_vr_rows() -> bytes:
    """A DICOM whose Rows element is written with VR LO holding text."""
    raw = dicom_bytes()
    # The writer would refuse a non-integer Rows, so the bytes are patched: (0028,0010) US 2 -> LO 2 "ab".
    tag = b"\x28\x00\x10\x00US\x02\x00"
    at = raw.find(tag)
    assert at > 0, "Rows element not found"
    return raw[:at] + b"\x28\x00\x10\x00LO\x02\x00ab" + raw[at + len(tag) + 2 :]


def dicom_wrong_vr_text() -> bytes:
    """A DICOM whose PatientAge (AS) and WindowCenter (DS) hold the wrong kind of value."""
    return dicom_bytes(
        raw_elements=[(0x00101010, "US", 45), (0x00281050, "LO", "not-a-number"), (0x00281051, "LO", "wide")]
    )


def dicom_truncated() -> bytes:
    """A valid DICOM cut inside its pixel data."""
    data = dicom_bytes(rows=128, cols=128)
    return data[: len(data) - 9000]


def dicom_header_garbage() -> bytes:
    """The DICM preamble followed by noise."""
    return b"\x00" * 128 + b"DICM" + _rng(5).integers(0, 256, 600, dtype=np.uint8).tobytes()


def dicom_window(center: str, width: str) -> bytes:
    """A valid DICOM whose WindowCenter/WindowWidth (DS) are written as given: "NaN", "inf", "1e308"..."""
    return dicom_bytes(raw_elements=[(0x00281050, "DS", center), (0x00281051, "DS", width)])


def dicom_window_nan() -> bytes:
    """A valid DICOM whose WindowWidth is NaN."""
    return dicom_window("2048", "NaN")


def dicom_window_huge() -> bytes:
    """A valid DICOM whose WindowWidth is 1e308 (finite, but it maps every pixel to one grey)."""
    return dicom_window("2048", "1e308")


def dicom_palette(lut_bytes: int = 512, *, entries: int = 256, depth: int = 16) -> bytes:
    """An 8-bit PALETTE COLOR DICOM whose three colour tables hold ``lut_bytes`` bytes each
    (512 = a complete 256-entry 16-bit table; fewer = a table cut short)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["palette", str(lut_bytes)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "OT", 64, 64, 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    table = (np.arange(256, dtype=np.uint16) * 257).astype("<u2").tobytes()[:lut_bytes]
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [entries, 0, depth])
        setattr(ds, f"{colour}PaletteColorLookupTableData", table)
    ds.PixelData = cxr_like(64, 1).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_palette_short() -> bytes:
    """A PALETTE COLOR DICOM whose tables declare 256 16-bit entries but hold 2 bytes."""
    return dicom_palette(2)


#: Distinctive PHI strings fed through ingest and analyze; none may appear anywhere afterwards.
PHI: dict[str, str] = {
    "PatientName": "Zqxwvut^Phiname",
    "PatientID": "PHIID-778899",
    "PatientBirthDate": "19230417",
    "AccessionNumber": "ACC-PHI-55123",
    "InstitutionName": "Phistitution General Hospital",
    "InstitutionAddress": "12 Phistreet Lane",
    "ReferringPhysicianName": "Refdoc^Phimarker",
    "PerformingPhysicianName": "Perfdoc^Phimarker",
    "OperatorsName": "Operphi^Tech",
    "StudyDate": "19991231",
    "StudyTime": "235959.987654",
    "StudyID": "STUDYPHI42",
    "StudyDescription": "PHI study description Qwertyphi",
    "OtherPatientIDs": "OTHERPHI-0001",
    "PatientAddress": "99 Phiaddress Road",
    "PatientTelephoneNumbers": "555-0199-PHI",
    "ImageComments": "Comment with phi Phicommentmark",
}


def dicom_with_phi(*, burned_in: bool = False, seed: int = 0) -> bytes:
    """A DICOM carrying every :data:`PHI` string (and optionally BurnedInAnnotation YES)."""
    attrs: dict[str, object] = dict(PHI)
    attrs["BurnedInAnnotation"] = "YES" if burned_in else "NO"
    attrs["PatientSex"] = "F"
    attrs["PatientAge"] = "093Y"
    return dicom_bytes(attrs=attrs, seed=seed, raw_elements=[(0x00091010, "LO", "PrivatePhiTagValue")])


# ----------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class BadInput:
    """One hostile input and what MedRAG must do with it.

    ``error`` is the MedRAGError subclass raised by :func:`medrag.imaging.load_image` (the
    pipeline's input stage reports its message), or None for a documented accept. ``fragment``
    must appear (case-insensitive) in the message, or, for an accept, in the warnings (may be "").
    """

    kind: str
    filename: str
    make: Callable[[], bytes]
    error: type[E.MedRAGError] | None
    fragment: str
    note: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


IMAGE_CASES: tuple[BadInput, ...] = (
    BadInput("empty file", "empty.png", empty, E.EmptyInputError, "empty"),
    BadInput("text renamed .png", "notes.png", text_as_png, E.NotAnImageError, "text file"),
    BadInput("html renamed .png", "page.png", html_as_png, E.NotAnImageError, "not an image"),
    BadInput("random bytes", "noise.png", random_bytes, E.NotAnImageError, "not an image"),
    BadInput("truncated PNG", "half.png", truncated_png, E.TruncatedImageError, "truncated"),
    BadInput("truncated JPEG", "half.jpg", truncated_jpeg, E.TruncatedImageError, "truncated"),
    BadInput("PNG header only", "head.png", png_header_only, E.TruncatedImageError, "png"),
    BadInput("PNG with corrupt IDAT", "idat.png", png_corrupt_idat, E.TruncatedImageError, "corrupt"),
    BadInput("1x1 image", "dot.png", one_pixel, E.UnsupportedImageError, "at least 32"),
    BadInput("PNG bomb 100k x 100k", "bomb.png", png_bomb, E.ImageTooLargeError, "megapixels"),
    BadInput("JPEG bomb 65k x 65k", "bomb.jpg", jpeg_bomb, E.ImageTooLargeError, "megapixels"),
    BadInput("animated GIF", "anim.gif", animated_gif, E.UnsupportedImageError, "frames"),
    BadInput("multi-page TIFF", "pages.tif", multipage_tiff, E.UnsupportedImageError, "frames"),
    BadInput("TIFF all NaN", "nan.tif", tiff_all_nan, E.UnsupportedImageError, "no finite"),
    BadInput("multi-frame DICOM", "cine.dcm", dicom_multiframe, E.UnsupportedImageError, "frames"),
    BadInput("DICOM without pixel data", "sr.dcm", dicom_no_pixels, E.UnsupportedImageError, "no pixel data"),
    BadInput("JPEG-LS DICOM, no decoder", "jls.dcm", dicom_jpegls_no_decoder, E.UnsupportedImageError, "decoder"),
    BadInput("DICOM Rows with wrong VR", "vr.dcm", dicom_wrong_vr_rows, E.TruncatedImageError, "rows/columns"),
    BadInput("DICOM cut in pixel data", "cut.dcm", dicom_truncated, E.TruncatedImageError, "truncated"),
    BadInput("DICM preamble then noise", "junk.dcm", dicom_header_garbage, E.ImageError, "dicom"),
    BadInput("12-bit JPEG", "deep12.jpg", jpeg_12bit, E.UnsupportedImageError, "12-bit jpeg"),
    BadInput("DICOM palette table cut short", "palette.dcm", dicom_palette_short, E.UnsupportedImageError,
             "palette colour table is damaged"),
    # Documented accepts: decoded, normalised, with a warning where something was lost.
    BadInput("16-bit PNG", "deep.png", png_16bit, None, "", "min-max normalised, bit_depth 16"),
    BadInput("CMYK JPEG", "cmyk.jpg", cmyk_jpeg, None, "grayscale", "converted to luma"),
    BadInput("TIFF float with NaN/inf", "nan-band.tif", tiff_float_nan, None, "non-finite", "NaN replaced"),
    BadInput("DICOM text tags with wrong VR", "vrtext.dcm", dicom_wrong_vr_text, None, "window", "bad window ignored"),
    BadInput("DICOM window width NaN", "nanwidth.dcm", dicom_window_nan, None, "window", "bad window ignored"),
    BadInput("DICOM window width 1e308", "hugewidth.dcm", dicom_window_huge, None, "window", "bad window ignored"),
    BadInput("EXIF-rotated JPEG", "rot.jpg", exif_rotated_jpeg, None, "", "orientation applied"),
    BadInput("RGB photo", "holiday.jpg", rgb_photo, None, "colour", "decoded; the image guard refuses it",
             tags=("guard",)),
    BadInput("all-black image", "black.png", all_black, None, "blank", "blank warning", tags=("blank",)),
    BadInput("all-white image", "white.png", all_white, None, "blank", "blank warning", tags=("blank",)),
)

#: File names with terminal escapes, BEL, and right-to-left override (a valid PNG inside).
HOSTILE_NAMES: tuple[str, ...] = (
    "scan\x1b[31mRED\x1b[0m\x07.png",
    "report\u202egnp.exe.png",
    "\u200f\u2067name\u2069\u200e.png",
)

# ----------------------------------------------------------------------------- queries


def huge_query() -> str:
    """About 1 MB of medical-sounding text."""
    return ("Is there a pleural effusion or cardiomegaly on this chest x-ray? " * 16_000)[:1_000_000]


QUERY_CASES: tuple[tuple[str, str], ...] = (
    ("1 MB query", "huge"),
    ("control characters", "Is there cardiomegaly\x00\x1b[2J\x07\x08 on this chest x-ray?"),
    ("right-to-left marks", "\u202eIs there a pneumothorax\u202c on this chest x-ray?\u200f"),
    ("whitespace only", " \t\n  "),
)


def query_text(value: str) -> str:
    """The query for a :data:`QUERY_CASES` entry."""
    return huge_query() if value == "huge" else value


# ----------------------------------------------------------------------------- CSV and parquet


@dataclass(frozen=True)
class BadCsv:
    """A labels CSV (raw bytes) for a folder holding a.png and b.png, and the expected outcome.

    ``error`` is a LibraryError fragment for a CSV refused as a whole; otherwise ``added`` cases
    are imported and every fragment in ``row_errors`` / ``notes`` appears in the report.
    """

    kind: str
    content: bytes
    added: int
    error: str = ""
    row_errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


def csv_long_field(chars: int) -> bytes:
    """A labels CSV for a.png and b.png whose first report cell is ``chars`` characters long."""
    return b"image,label,report\na.png,normal," + b"x" * chars + b"\nb.png,normal,short\n"


#: A quote opened in a label cell on line 2 and never closed.
CSV_UNBALANCED_QUOTE = b'image,label\na.png,"normal\nb.png,normal\n'

CSV_CASES: tuple[BadCsv, ...] = (
    BadCsv("no image column", b"label,report\nnormal,clear\n", 0, error="no image column"),
    BadCsv("empty CSV", b"", 0, error="no image column"),
    BadCsv("binary garbage CSV", b"\xff\xfe\x00\x01\x89PNG\x00\x00", 0, error="not utf-8"),
    BadCsv("latin-1 CSV", "image,label\na.png,épanchement\n".encode("latin-1"), 0, error="not utf-8"),
    BadCsv("missing label column", b"image,report\na.png,clear lungs\n", 1, labels=("unlabelled",)),
    BadCsv("duplicate rows", b"image,label\na.png,normal\na.png,normal\n", 1, notes=("duplicate row",)),
    BadCsv("unknown label", b"image,label\na.png,alien-disease-42\n", 1, labels=("alien-disease-42",)),
    BadCsv("path escaping the folder", b"image,label\n../../etc/passwd,normal\nb.png,normal\n", 1,
           row_errors=("escapes the library folder",)),
    BadCsv("absolute path", b"image,label\n/etc/passwd,normal\nb.png,normal\n", 1, row_errors=("absolute path",)),
    BadCsv("Windows absolute path", b"image,label\nC:\\Windows\\win.ini,normal\nb.png,normal\n", 1,
           row_errors=("absolute path",)),
    BadCsv("UTF-8 BOM", "\ufeffimage,label\na.png,normal\n".encode("utf-8"), 1, labels=("normal",)),
    BadCsv("missing image file", b"image,label\nnothere.png,normal\nb.png,normal\n", 1, row_errors=("not found",)),
    BadCsv("empty image cell", b"image,label\n,normal\nb.png,normal\n", 1, row_errors=("empty",)),
    BadCsv("ragged rows", b"image,label\na.png\nb.png,normal,extra,cells\n", 2),
    # The csv module's default cell limit is 131,072 characters; MedRAG reads reports up to 4 MiB.
    BadCsv("report cell of 200,000 characters", csv_long_field(200_000), 2),
    BadCsv("cell over the 4 MiB limit", csv_long_field(4 * 2**20 + 1), 0, error="line 2: a cell is longer than"),
    BadCsv("unbalanced quote", CSV_UNBALANCED_QUOTE, 0, error="line 2: a double quote opened there is never closed"),
)


def parquet_bytes(cells: list[object], labels: list[str] | None = None) -> bytes:
    """A Hugging Face-style parquet: ``image`` struct column {'bytes': ...} and a ``label`` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": c, "path": None} if not isinstance(c, dict) else c for c in cells]
    table = pa.table({"image": images, "label": labels or ["normal"] * len(cells)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def parquet_corrupt_cell() -> bytes:
    """Three rows: a good PNG, a corrupt image cell, an empty cell."""
    return parquet_bytes([png_bytes(64, 1), b"\x89PNG\r\n\x1a\n garbage", b""], ["normal", "effusion", "edema"])


def not_parquet() -> bytes:
    """Text saved with a .parquet name."""
    return b"PAR1 this is not really a parquet file"


def parquet_nested() -> bytes:
    """One row whose label and findings are lists and whose metadata is a struct holding a list, a NaN,
    a date and binary data (what Hugging Face datasets hold)."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "image": [{"bytes": png_bytes(64, 11), "path": None}, {"bytes": None, "path": "/etc/passwd"}],
        "label": [["effusion", "edema"], ["normal"]],
        "findings": [["Small left effusion.", "Interstitial edema."], None],
        "meta": [{"age": 61, "tags": ["portable", "ICU"], "score": float("nan")}, None],
        "acquired": [datetime.date(2020, 1, 2), None],
        "mask": [b"\x00\x01binary", None],
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------- Open-i reports and archives


def openi_xml(uid: str, image_ids: list[str], findings: str = "The heart is enlarged.") -> bytes:
    """One Open-i (ecgen-radiology) report naming ``image_ids`` as its parentImage ids."""
    images = "".join(f'<parentImage id="{i}"><url>/x/{i}.jpg</url></parentImage>' for i in image_ids)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="{uid}"/><MedlineCitation><Article><Abstract>'
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
        f'<AbstractText Label="IMPRESSION">Cardiomegaly.</AbstractText></Abstract></Article></MedlineCitation>'
        f"{images}</eCitation>"
    ).encode()


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, produced as they are read (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def tgz_with_members(path: Path, members: list[tuple[str, bytes | int]]) -> Path:
    """Write a gzip tar at ``path``: each member is (name, bytes) or (name, size) for ``size`` zero bytes
    streamed through gzip, so a member of gigabytes takes a few kilobytes on disk and no memory."""
    import tarfile

    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, int):
                info.size = content
                tar.addfile(info, _Zeros(content))
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


# ----------------------------------------------------------------------------- provider replies

#: JSON bodies a search provider might answer with that are not the object its client expects.
ODD_JSON_BODIES: tuple[tuple[str, object], ...] = (
    ("list", ["a", "list"]),
    ("string", "an error string"),
    ("number", 42),
    ("null", None),
    ("nested error", {"error": {"message": {"deep": ["x"]}}, "detail": [1, {"error": None}]}),
    ("error list", {"error": ["x"], "organic_results": None, "results": None}),
    ("deep nesting", [[[[[[[[[[{"error": "deep"}]]]]]]]]]]),
)
