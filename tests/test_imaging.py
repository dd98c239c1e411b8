"""Image input: every supported format and every error, built inside the tests."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLossless, generate_uid

from medrag.errors import (
    EmptyInputError,
    ImageTooLargeError,
    InputError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
)
from medrag.imaging import (
    MAX_PIXELS,
    MEASUREMENTS,
    apply_window,
    compute_pixel_hash,
    enhance_contrast,
    from_array,
    invert,
    load_image,
    looks_like_dicom,
    make_thumbnail,
    measure,
    save_thumbnail,
    store_original,
    store_upload,
    to_uint8,
)
from medrag.records import CXRImage

# --------------------------------------------------------------------------- builders


def _gradient(h: int = 64, w: int = 80) -> np.ndarray:
    """uint8 image with distinct values: a ramp plus a bright square."""
    img = (np.add.outer(np.arange(h), np.arange(w)) * 255 // (h + w - 2)).astype(np.uint8)
    img[10:20, 10:20] = 255
    return img


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with only a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _dicom(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **tags: object,
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = "Doe^Janet"
    ds.PatientID = "MRN-4471-XQ"
    ds.InstitutionName = "St Elsewhere General Hospital"
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def _dicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _dicom_ramp(h: int = 64, w: int = 64, low: int = 0, high: int = 4095) -> np.ndarray:
    return np.linspace(low, high, h * w).reshape(h, w).astype(np.uint16)


# --------------------------------------------------------------------------- 8-bit, 16-bit, colour


def test_png_8bit_gray_keeps_values_and_meta(tmp_path: Path) -> None:
    raw = _gradient()
    data = _encode(Image.fromarray(raw, mode="L"), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    image = load_image(path)
    assert isinstance(image, CXRImage)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (64, 80)
    np.testing.assert_allclose(image.pixels, raw / 255.0, atol=1e-6)  # no stretching for 8-bit
    meta = image.meta
    assert (meta["format"], meta["width"], meta["height"], meta["bit_depth"]) == ("png", 80, 64, 8)
    assert meta["converted_from_rgb"] is False and meta["colourfulness"] == 0.0
    assert meta["photometric"] == "MONOCHROME2" and meta["dicom"] == {}
    assert meta["burned_in_annotation"] is False and meta["warnings"] == []
    assert meta["name"] == "x.png"
    assert image.file_hash == hashlib.sha256(data).hexdigest()
    assert image.pixel_hash == compute_pixel_hash(image.pixels)
    # bytes and path give the same image
    same = load_image(data, name="upload.png")
    assert same.pixel_hash == image.pixel_hash and same.meta["name"] == "upload.png"


def test_pixel_hash_follows_pixels_not_file_bytes() -> None:
    raw = _gradient()
    png = load_image(_encode(Image.fromarray(raw), "PNG"))
    png_again = load_image(_encode(Image.fromarray(raw), "PNG", compress_level=0))
    assert png.file_hash != png_again.file_hash
    assert png.pixel_hash == png_again.pixel_hash
    other = raw.copy()
    other[0, 0] ^= 1
    assert load_image(_encode(Image.fromarray(other), "PNG")).pixel_hash != png.pixel_hash
    # Same bytes, other shape: different hash.
    assert compute_pixel_hash(np.zeros((32, 64))) != compute_pixel_hash(np.zeros((64, 32)))


def test_pixel_hash_is_stable_across_versions() -> None:
    """Case ids are pixel hashes: a change in to_uint8 or the hash would re-import every existing library."""
    pixels = np.random.default_rng(42).random((40, 56)).astype(np.float32)
    pixels[0, :4] = [np.nan, np.inf, -0.5, 1.5]
    pixels[1, :3] = [0.5 / 255, 1.5 / 255, 2.5 / 255]  # exact halves round to even
    # computed with the first released to_uint8 (nan_to_num, clip, *255, np.round)
    assert compute_pixel_hash(pixels) == "53884f57156a8051244e53a68365261c24be09bb96cf210dc7301405d9ee3047"
    assert to_uint8(pixels)[1, :3].tolist() == [0, 2, 2] and to_uint8(pixels)[0, :4].tolist() == [0, 255, 0, 255]


def test_uint8_pixels_are_the_files_own_for_8_bit_and_computed_once_otherwise() -> None:
    raw = _gradient()
    image = load_image(_encode(Image.fromarray(raw), "PNG"))
    assert image.uint8_pixels().dtype == np.uint8 and np.array_equal(image.uint8_pixels(), raw)
    assert np.array_equal(image.uint8_pixels(), to_uint8(image.pixels))
    assert image.pixels.dtype == np.float32 and np.array_equal(image.pixels, raw.astype(np.float32) / 255.0)
    wide = load_image(_encode(Image.fromarray(raw.astype(np.uint16) * 200), "PNG"))  # 16-bit: no 8-bit copy yet
    first = wide.uint8_pixels()
    assert first is wide.uint8_pixels() and np.array_equal(first, to_uint8(wide.pixels))
    assert wide.pixel_hash == compute_pixel_hash(wide.pixels)


def test_png_16bit_is_min_max_normalised() -> None:
    raw = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = load_image(_encode(Image.fromarray(raw), "PNG"))
    assert image.meta["bit_depth"] == 16
    assert image.pixels.min() == pytest.approx(0.0) and image.pixels.max() == pytest.approx(1.0)
    # monotonic: order of values is preserved
    flat = image.pixels.ravel()
    assert np.all(np.diff(flat) >= 0)


def test_jpeg_gray_loads() -> None:
    image = load_image(_encode(Image.fromarray(_gradient()), "JPEG", quality=95))
    assert image.meta["format"] == "jpeg"
    assert np.abs(image.pixels - _gradient() / 255.0).mean() < 0.02


def test_colour_jpeg_is_converted_with_warning_and_colourfulness() -> None:
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    rgb[..., 0] = 220
    rgb[:, 32:, 2] = 200
    image = load_image(_encode(Image.fromarray(rgb, "RGB"), "JPEG", quality=95))
    assert image.pixels.ndim == 2
    assert image.meta["converted_from_rgb"] is True
    assert image.meta["colourfulness"] > 20
    assert any("grayscale" in w for w in image.meta["warnings"])


def test_gray_stored_as_rgb_has_no_colour() -> None:
    gray = _gradient()
    rgb = np.stack([gray] * 3, axis=-1)
    image = load_image(_encode(Image.fromarray(rgb, "RGB"), "PNG"))
    assert image.meta["converted_from_rgb"] is True
    assert image.meta["colourfulness"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(image.pixels, gray / 255.0, atol=1 / 255)


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("LA", "PNG"), ("1", "PNG")])
def test_other_modes_become_grayscale(mode: str, fmt: str) -> None:
    base = Image.fromarray(_gradient()).convert("RGB")
    img = base.convert(mode)
    image = load_image(_encode(img, fmt))
    assert image.pixels.shape == (64, 80) and image.pixels.dtype == np.float32
    assert 0.0 <= image.pixels.min() <= image.pixels.max() <= 1.0
    if mode in ("RGBA", "CMYK", "P"):
        assert image.meta["converted_from_rgb"] is True
    if mode == "1":
        assert image.meta["bit_depth"] == 1
        assert set(np.unique(image.pixels)) <= {0.0, 1.0}


def test_exif_orientation_is_applied() -> None:
    img = Image.fromarray(_gradient())  # 80 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    image = load_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.shape == (80, 64)
    assert image.meta.get("orientation_corrected") is True


def test_float_tiff_with_nan_is_sanitised_with_warning() -> None:
    arr = np.linspace(-5.0, 5.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    arr[3, 3] = np.nan
    arr[4, 4] = np.inf
    image = load_image(_encode(Image.fromarray(arr, mode="F"), "TIFF"))
    assert np.isfinite(image.pixels).all()
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    assert any("non-finite" in w for w in image.meta["warnings"])
    assert image.meta["bit_depth"] == 32


def test_all_nan_float_tiff_is_rejected() -> None:
    arr = np.full((64, 64), np.nan, dtype=np.float32)
    with pytest.raises(UnsupportedImageError, match="no finite"):
        load_image(_encode(Image.fromarray(arr, mode="F"), "TIFF"))


@pytest.mark.parametrize("value,tone", [(0, "black"), (255, "white")])
def test_blank_images_load_with_warning(value: int, tone: str) -> None:
    image = load_image(_encode(Image.fromarray(np.full((64, 64), value, np.uint8)), "PNG"))
    assert any(w.startswith("blank image") and tone in w for w in image.meta["warnings"])
    assert float(image.pixels.mean()) == pytest.approx(value / 255)


# --------------------------------------------------------------------------- errors


def test_empty_input(tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError):
        load_image(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(EmptyInputError, match="0 bytes"):
        load_image(empty)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


def test_text_renamed_png_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("Patient notes: this is not an image at all.\n" * 20)
    with pytest.raises(NotAnImageError, match="text file"):
        load_image(path)


def test_random_bytes_are_not_an_image() -> None:
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(NotAnImageError):
        load_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(fmt: str) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), fmt)
    with pytest.raises(TruncatedImageError):
        load_image(data[: len(data) // 2])
    with pytest.raises(TruncatedImageError):
        load_image(data[:24])  # header cut short


def test_huge_header_fails_fast_before_decoding() -> None:
    data = _png_header_only(100_000, 100_000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(data)
    assert time.perf_counter() - start < 5  # generous: it must not decode 10^10 pixels


def test_just_over_the_limit_is_refused_from_the_header() -> None:
    width, height = 8_000, MAX_PIXELS // 8_000 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError):
            load_image(_png_header_only(width, height))


def test_huge_jpeg_header_is_refused() -> None:
    data = bytearray(_encode(Image.fromarray(_gradient()), "JPEG"))
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width
    with pytest.raises(ImageTooLargeError):
        load_image(bytes(data))


@pytest.mark.parametrize("size", [(1, 1), (31, 200), (200, 20)])
def test_too_small_images_are_rejected(size: tuple[int, int]) -> None:
    img = Image.fromarray(np.full(size, 128, np.uint8))
    with pytest.raises(UnsupportedImageError, match="at least 32x32"):
        load_image(_encode(img, "PNG"))


def test_smallest_accepted_size() -> None:
    assert load_image(_encode(Image.fromarray(np.full((32, 32), 9, np.uint8)), "PNG")).shape == (32, 32)


def test_animated_gif_is_rejected_single_frame_gif_loads() -> None:
    frames = [Image.fromarray(np.full((40, 40), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(UnsupportedImageError, match="2 frames"):
        load_image(buf.getvalue())
    single = load_image(_encode(Image.fromarray(_gradient()), "GIF"))
    assert single.meta["format"] == "gif"


def test_multipage_tiff_is_rejected() -> None:
    pages = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(UnsupportedImageError, match="frames"):
        load_image(buf.getvalue())


# --------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2_with_deidentified_meta() -> None:
    ds = _dicom(_dicom_ramp(), ViewPosition="PA", BodyPartExamined="CHEST")
    image = load_image(_dicom_bytes(ds), name="study.dcm")
    assert image.meta["format"] == "dicom"
    assert image.meta["photometric"] == "MONOCHROME2"
    assert image.meta["bit_depth"] == 12
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    assert image.pixels[0, 0] < image.pixels[-1, -1]  # low stored value stays dark
    shown = repr(image.meta)
    for phi in ("Doe", "Janet", "MRN-4471-XQ", "Elsewhere"):
        assert phi not in shown
    assert image.meta["dicom"]["View"] == "PA"
    assert image.meta["dicom"]["Modality"] == "DX"
    assert image.meta["burned_in_annotation"] is False


def test_dicom_monochrome1_is_inverted() -> None:
    ramp = _dicom_ramp()
    m2 = load_image(_dicom_bytes(_dicom(ramp, photometric="MONOCHROME2")))
    m1 = load_image(_dicom_bytes(_dicom(ramp, photometric="MONOCHROME1")))
    assert m1.meta["photometric"] == "MONOCHROME1"
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    assert m1.pixels[0, 0] > m1.pixels[-1, -1]  # low stored value is white in MONOCHROME1


def test_dicom_rescale_and_window_are_applied() -> None:
    # Stored 0..2047 with intercept -1024 -> HU -1024..1023; window 40/400 spans -160..240 HU.
    ramp = _dicom_ramp(low=0, high=2047)
    ds = _dicom(ramp, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    image = load_image(_dicom_bytes(ds))
    assert image.meta["window"] == [40.0, 400.0]
    hu = ramp.astype(float) - 1024
    assert image.pixels[hu < -200].max() == pytest.approx(0.0, abs=1e-6)  # below window: black
    assert image.pixels[hu > 300].min() == pytest.approx(1.0, abs=1e-6)  # above window: white
    near_centre = np.abs(hu - 40) < 2
    assert np.abs(image.pixels[near_centre] - 0.5).max() < 0.02
    # Without rescale the same window would clip nearly everything to white: the LUT mattered.
    no_rescale = load_image(_dicom_bytes(_dicom(ramp, WindowCenter=40, WindowWidth=400)))
    assert float((no_rescale.pixels >= 0.999).mean()) > 0.8


def test_dicom_slope_scales_values() -> None:
    ramp = _dicom_ramp(low=0, high=1000)
    # Window in output units 0..2000 only makes sense once slope 2 is applied.
    ds = _dicom(ramp, RescaleSlope=2, RescaleIntercept=0, WindowCenter=1000, WindowWidth=1000)
    image = load_image(_dicom_bytes(ds))
    out = ramp.astype(float) * 2
    assert image.pixels[out < 480].max() == pytest.approx(0.0, abs=1e-6)
    assert image.pixels[out > 1520].min() == pytest.approx(1.0, abs=1e-6)


def test_dicom_voi_lut_sequence_is_applied() -> None:
    ramp = _dicom_ramp(low=0, high=255, h=32, w=32)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", [255 - i for i in range(256)])  # LUTData: an inverting LUT
    ds = _dicom(ramp, bits_stored=8)
    ds.VOILUTSequence = [item]
    image = load_image(_dicom_bytes(ds))
    assert image.meta["window"] == "VOI LUT"
    assert image.pixels[0, 0] > image.pixels[-1, -1]


def test_dicom_burned_in_annotation_warns() -> None:
    image = load_image(_dicom_bytes(_dicom(_dicom_ramp(), BurnedInAnnotation="YES")))
    assert image.meta["burned_in_annotation"] is True
    assert any("burned-in" in w for w in image.meta["warnings"])


def test_dicom_multiframe_is_rejected() -> None:
    frames = np.stack([_dicom_ramp(), _dicom_ramp()])
    with pytest.raises(UnsupportedImageError, match="2 frames"):
        load_image(_dicom_bytes(_dicom(frames)))


def test_dicom_without_pixel_data_is_rejected() -> None:
    ds = _dicom(_dicom_ramp())
    del ds.PixelData
    with pytest.raises(UnsupportedImageError, match="no pixel data"):
        load_image(_dicom_bytes(ds))


def test_dicom_compressed_without_decoder_names_the_fix() -> None:
    ds = _dicom(_dicom_ramp())
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3not-really-jpeg\xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(UnsupportedImageError, match="pylibjpeg"):
        load_image(_dicom_bytes(ds))


def test_dicom_truncated_is_reported() -> None:
    data = _dicom_bytes(_dicom(_dicom_ramp()))
    with pytest.raises(TruncatedImageError):
        load_image(data[: len(data) // 2])


def test_dicom_huge_rows_columns_refused_before_decoding() -> None:
    ds = _dicom(_dicom_ramp())
    ds.Rows, ds.Columns = 20_000, 20_000
    with pytest.raises(ImageTooLargeError):
        load_image(_dicom_bytes(ds))


def test_dicom_without_preamble_is_detected_by_content() -> None:
    ds = _dicom(_dicom_ramp(), transfer_syntax=ImplicitVRLittleEndian)
    bare = Dataset()
    for elem in ds:
        bare.add(elem)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = buf.getvalue()
    assert data[128:132] != b"DICM"
    image = load_image(data)
    assert image.meta["format"] == "dicom" and image.shape == (64, 64)


def test_dicom_rgb_is_converted() -> None:
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    rgb[..., 1] = np.linspace(0, 255, 40, dtype=np.uint8)[None, :]
    ds = _dicom(rgb, photometric="RGB", bits_stored=8)
    image = load_image(_dicom_bytes(ds))
    assert image.pixels.shape == (40, 40)
    assert image.meta["converted_from_rgb"] is True


# --------------------------------------------------------------------------- viewer helpers


def test_to_uint8_rounds_and_clips() -> None:
    out = to_uint8(np.array([[-0.5, 0.0, 0.5, 1.0, 2.0, np.nan]]))
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 128, 255, 255, 0]]


@pytest.mark.parametrize("shape,expected", [((100, 300), (256, 85)), ((300, 100), (85, 256)), ((40, 50), (256, 205))])
def test_make_thumbnail_longer_side(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    thumb = make_thumbnail(np.random.default_rng(0).random(shape), 256)
    assert thumb.mode == "L"
    assert thumb.size == expected  # (width, height)


def test_save_thumbnail_is_content_addressed_atomic_and_idempotent(tmp_path: Path) -> None:
    image = from_array(np.random.default_rng(0).random((64, 96)).astype(np.float32))
    path = save_thumbnail(image, tmp_path)
    assert path == tmp_path / image.pixel_hash[:2] / f"{image.pixel_hash}.jpg"
    with Image.open(path) as thumb:
        assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "L", (256, 171))
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert save_thumbnail(image, tmp_path) == path
    assert path.stat().st_mtime_ns == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    small = save_thumbnail(image, tmp_path, size=64)
    assert small != path and Image.open(small).size == (64, 43)


def test_store_upload_is_a_content_addressed_16_bit_png_of_the_pixels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).random((48, 64)).astype(np.float32)
    image = from_array(pixels)
    path = store_upload(image, tmp_path)
    assert path == tmp_path / image.pixel_hash[:2] / f"{image.pixel_hash}.png"
    with Image.open(path) as png:
        stored = np.asarray(png)
    assert stored.dtype == np.uint16 and stored.shape == (48, 64)
    assert np.array_equal(stored, np.round(pixels * 65535).astype(np.uint16))  # 16-bit: finer than the hash
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert store_upload(image, tmp_path) == path and path.stat().st_mtime_ns == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_store_original_keeps_the_8_bit_pixels_the_case_id_hashes(tmp_path: Path) -> None:
    image = load_image(_encode(Image.fromarray(_gradient()), "PNG"))
    path = store_original(image, tmp_path)
    assert path == tmp_path / image.pixel_hash[:2] / f"{image.pixel_hash}.png"
    with Image.open(path) as png:
        assert png.mode == "L" and np.array_equal(np.asarray(png), _gradient())
    assert load_image(path).pixel_hash == image.pixel_hash
    assert store_original(image, tmp_path) == path


def test_one_dicom_sniffer_for_bytes_paths_and_library_folders(tmp_path: Path) -> None:
    from medrag.library import iter_folder

    data = _dicom_bytes(_dicom(_dicom_ramp()))
    assert data[128:132] == b"DICM" and looks_like_dicom(data) and looks_like_dicom(memoryview(data))
    assert looks_like_dicom(b"DICM" + bytes(200))  # magic at offset 0: no preamble
    assert not looks_like_dicom(_encode(Image.fromarray(_gradient()), "PNG")) and not looks_like_dicom(b"")
    folder = tmp_path / "archive"
    (folder / "normal").mkdir(parents=True)
    (folder / "normal" / "1.2.840.99").write_bytes(data)  # a bare UID name has a "suffix" too
    (folder / "normal" / "IM0001").write_bytes(data)
    (folder / "normal" / "README").write_text("not an image")
    (folder / "normal" / "notes.txt").write_bytes(data)  # a non-image suffix is never sniffed
    assert looks_like_dicom(folder / "normal" / "IM0001") and not looks_like_dicom(folder / "normal" / "README")
    assert not looks_like_dicom(folder / "missing")  # unreadable: not DICOM, no error
    assert [item.path.name for item in iter_folder(folder) if item.path is not None] == ["IM0001"]
    assert load_image(folder / "normal" / "IM0001").meta["format"] == "dicom"


def test_apply_window_invert_and_enhance() -> None:
    pixels = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, 101).repeat(40, axis=0)
    windowed = apply_window(pixels, center=0.5, width=0.2)
    assert windowed[0, 40] == 0.0 and windowed[0, 60] == 1.0
    assert windowed[0, 50] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(InputError):
        apply_window(pixels, 0.5, 0.0)
    np.testing.assert_allclose(invert(pixels), 1 - pixels)
    flat = 0.45 + 0.1 * np.random.default_rng(0).random((64, 64)).astype(np.float32)
    enhanced = enhance_contrast(flat)
    assert enhanced.shape == flat.shape and enhanced.dtype == np.float32
    assert enhanced.std() > flat.std() * 2
    assert 0.0 <= enhanced.min() and enhanced.max() <= 1.0


# --------------------------------------------------------------------------- measurements


def test_measure_keys_and_simple_values() -> None:
    pixels = np.zeros((128, 128), dtype=np.float32)
    pixels[:, 64:] = 1.0
    m = measure(from_array(pixels))
    assert set(m) == set(MEASUREMENTS)
    assert m["mean_intensity"] == pytest.approx(0.5)
    assert m["clipped_fraction"] == pytest.approx(1.0)
    assert m["contrast"] == pytest.approx(0.5)
    assert m["lung_asymmetry"] > 0.9  # the patient's left (image right) is white
    assert m["aspect_ratio"] == 1.0


def test_measure_sharpness_drops_with_blur() -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    sharp = rng.random((256, 256)).astype(np.float32)
    blurred = gaussian_filter(sharp, 3)
    assert measure(from_array(sharp))["sharpness"] > 10 * measure(from_array(blurred))["sharpness"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(32, 300),
    w=st.integers(32, 300),
    kind=st.sampled_from(["noise", "constant", "stripes", "checker"]),
    seed=st.integers(0, 10_000),
)
def test_measure_never_raises(h: int, w: int, kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        pixels = rng.random((h, w))
    elif kind == "constant":
        pixels = np.full((h, w), rng.random())
    elif kind == "stripes":
        pixels = (np.arange(w)[None, :] % 7 < 3).repeat(h, axis=0).astype(float)
    else:
        pixels = ((np.add.outer(np.arange(h), np.arange(w)) // 5) % 2).astype(float)
    m = measure(CXRImage(pixels=pixels.astype(np.float32)))
    assert set(m) == set(MEASUREMENTS)
    for key, value in m.items():
        assert isinstance(value, float)
        if key not in ("ctr", "heart_width", "thorax_width"):
            assert np.isfinite(value), key
    assert np.isnan(m["ctr"]) or 0.0 < m["ctr"] < 1.0
    assert -1.0 <= m["exposure"] <= 1.0


def test_measure_finds_a_wide_heart_in_a_drawn_chest() -> None:
    # A crude chest: grey body, two dark lungs, a white heart of known width.
    def chest(heart_half: int) -> np.ndarray:
        img = np.full((256, 256), 0.6, dtype=np.float32)
        yy, xx = np.mgrid[0:256, 0:256]
        lungs = (np.abs(xx - 128) > 12) & (np.abs(xx - 128) < 100) & (yy > 40) & (yy < 200)
        img[lungs] = 0.2
        heart = ((xx - 136) / heart_half) ** 2 + ((yy - 160) / 50.0) ** 2 <= 1
        img[heart] = 0.75
        return img

    normal, big = measure(from_array(chest(44))), measure(from_array(chest(66)))
    assert 0.35 < normal["ctr"] < 0.55
    assert big["ctr"] > normal["ctr"] + 0.15
    assert normal["thorax_width"] == pytest.approx(200 / 256, abs=0.05)


@pytest.mark.realdata
def test_real_cxrs_load_and_measure(real_data: Path) -> None:
    import csv

    with open(real_data / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "nih" and r["label"] == "normal"][:30]
    ctrs = []
    for row in rows:
        image = load_image(real_data / row["image"])
        assert image.meta["format"] == "png" and image.meta["warnings"] == []
        assert max(image.shape) <= 512
        ctrs.append(measure(image)["ctr"])
    ctrs_arr = np.array(ctrs)
    assert np.isfinite(ctrs_arr).mean() >= 0.9
    assert 0.35 < float(np.nanmedian(ctrs_arr)) < 0.65
